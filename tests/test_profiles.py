"""Profiles load, validate, and refuse bad keys, types and paths with one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from skinlib.errors import SkinlibError
from skinlib.profiles import PROFILES_DIR, apply_overrides, load_profile

NAMES = ["smoke", "default", "ham10000", "thesis"]


@pytest.mark.parametrize("name", NAMES)
def test_shipped_profiles_load(name):
    profile = load_profile(name, data_dir="/tmp")
    assert profile.name == name
    assert len(profile.models) == 2


def test_thesis_profile_is_the_thesis_setting():
    p = load_profile("thesis", data_dir="/tmp")
    assert p.models == ["resnet50", "inceptionv3"]
    assert (p.train.batch_size, p.train.epochs, p.train.weights) == (32, 50, "imagenet")
    assert (p.retraining.rounds, p.retraining.epochs_per_round, p.retraining.fraction) == (5, 5, 0.5)
    assert p.fgsm.eps == pytest.approx(2 / 255)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yml"
    path.write_text(text)
    return path


def test_unknown_key_names_key_and_valid_ones(tmp_path):
    with pytest.raises(SkinlibError) as err:
        load_profile(_write(tmp_path, "name: x\ntrain:\n  epoch: 3\n"))
    msg = str(err.value)
    assert "train.epoch" in msg and "epochs" in msg and "\n" not in msg


def test_wrong_type_names_key(tmp_path):
    with pytest.raises(SkinlibError, match=r"train\.epochs: expected an integer"):
        load_profile(_write(tmp_path, "name: x\ntrain:\n  epochs: three\n"))


def test_python_object_tag_is_refused(tmp_path):
    path = _write(tmp_path, "name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(SkinlibError, match="not valid YAML"):
        load_profile(path)


def test_profile_name_cannot_escape_results(tmp_path):
    from skinlib.paths import results_dir

    with pytest.raises(SkinlibError, match="not a plain name"):
        results_dir("../../etc")
    with pytest.raises(SkinlibError, match="not a profile name"):
        load_profile("../secret")


def test_data_dir_from_environment(monkeypatch):
    monkeypatch.setenv("SKINLIB_DATA_DIR", "/data/ham")
    assert load_profile("ham10000").data.data_dir == "/data/ham"
    assert load_profile("ham10000", data_dir="/other").data.data_dir == "/other"


def test_overrides_are_type_checked():
    p = load_profile("smoke")
    assert apply_overrides(p, {"fgsm.eps": 0.0156}).fgsm.eps == 0.0156
    with pytest.raises(SkinlibError, match="fgsm.epsilon"):
        apply_overrides(p, {"fgsm.epsilon": 0.1})
    with pytest.raises(SkinlibError, match="expected a number"):
        apply_overrides(p, {"fgsm.eps": "big"})


def test_every_profile_file_is_tested():
    assert sorted(p.stem for p in PROFILES_DIR.glob("*.yml")) == sorted(NAMES)


def test_cli_bad_profile_is_one_line_exit_2(tmp_path):
    path = _write(tmp_path, "name: x\nbogus: 1\n")
    proc = subprocess.run([sys.executable, "-m", "skinlib", "run", "--profile", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "bogus" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("key,value,allowed", [("fast_loss", "hinge", "ce or clipped"),
                                               ("fast_labels", "guessed", "true or predicted"),
                                               ("fast_beta", 0, "must be positive"),
                                               ("fast_warmup_steps", -1, "must be 0 or more")])
def test_fast_uap_settings_are_checked(tmp_path, key, value, allowed):
    with pytest.raises(SkinlibError) as err:
        load_profile(_write(tmp_path, f"name: x\nuap:\n  {key}: {value}\n"))
    msg = str(err.value)
    assert f"uap.{key}" in msg and allowed in msg and "p.yml" in msg and "\n" not in msg


def test_empty_profile_is_an_error_naming_the_file(tmp_path):
    for text in ("", "# only a comment\n", "{}\n"):
        with pytest.raises(SkinlibError, match=r"p\.yml: empty profile"):
            load_profile(_write(tmp_path, text))


def test_profile_without_name_is_named_after_its_file(tmp_path):
    path = tmp_path / "my-trial.yml"
    path.write_text("models: [resnet_tiny]\n")
    assert load_profile(path).name == "my-trial"


@pytest.mark.parametrize("text, key", [
    ("fgsm:\n  eps: 0\n", "fgsm.eps"),
    ("fgsm:\n  eps: 1.5\n", "fgsm.eps"),
    ("fgsm:\n  eps_sweep: [0.01, -0.1]\n", "fgsm.eps_sweep"),
    ("uap:\n  eps: 2\n", "uap.eps"),
    ("poisoning:\n  fractions: [0.1, 1.2]\n", "poisoning.fractions"),
    ("retraining:\n  fraction: -0.5\n", "retraining.fraction"),
    ("data:\n  fractions: [1.2, -0.1, -0.1]\n", "data.fractions"),
    ("seeds: [0, 1.5]\n", "seeds[1]"),
    ("seeds: [0, x]\n", "seeds[1]"),
    ("seeds: 3\n", "seeds"),
    ("seeds: [0, 0]\n", "seeds"),
    ("seeds: [0, -1]\n", "seeds"),
    ("seed: 1\nseeds: [0, 1]\n", "seed"),
    ("seed: 1.5\n", "seed"),
    ("seed: true\n", "seed"),
    ("adaptive:\n  eps: 0\n", "adaptive.eps"),
    ("adaptive:\n  eps_curve: [0.0, 1.5]\n", "adaptive.eps_curve"),
    ("uap:\n  zeta: 0\n", "uap.zeta"),
    ("train:\n  distribute: horovod\n", "train.distribute"),
    ("train:\n  distribute: 2\n", "train.distribute"),
])
def test_values_out_of_range_name_the_key(tmp_path, text, key):
    with pytest.raises(SkinlibError) as err:
        load_profile(_write(tmp_path, "name: x\n" + text))
    msg = str(err.value)
    assert key in msg and "p.yml" in msg and "\n" not in msg


def test_seeds_default_to_seed_and_the_first_is_primary(tmp_path):
    assert load_profile(_write(tmp_path, "name: x\nseed: 3\n")).seeds == [3]
    p = load_profile(_write(tmp_path, "name: x\nseeds: [2, 5]\n"))
    assert (p.seed, p.primary_seed) == (2, 2)
    assert apply_overrides(p, {"seed": 5}).primary_seed == 2  # a notebook run for seed 5


@pytest.mark.parametrize("text, needle", [("", "empty profile"), ("name: x\nfgsm:\n  eps: 3\n", "fgsm.eps")])
def test_cli_bad_profile_writes_nothing(tmp_path, text, needle):
    import os

    path = _write(tmp_path, text)
    env = dict(os.environ, SKINLIB_RESULTS_DIR=str(tmp_path / "results"), SKINLIB_CACHE_DIR=str(tmp_path / "c"))
    proc = subprocess.run([sys.executable, "-m", "skinlib", "run", "--profile", str(path)],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and needle in proc.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "c").exists()


def test_distribute_is_mirrored_or_none(tmp_path):
    assert load_profile(_write(tmp_path, "name: x\n")).train.distribute is None
    assert load_profile(_write(tmp_path, "name: x\ntrain:\n  distribute: mirrored\n")).train.distribute == "mirrored"
    with pytest.raises(SkinlibError) as err:
        load_profile(_write(tmp_path, "name: x\ntrain:\n  distribute: horovod\n"))
    assert "train.distribute must be mirrored or null" in str(err.value) and "'horovod'" in str(err.value)

