"""pyproject.toml and environment.yml list the same pinned dependencies."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _normalise(spec: str) -> tuple[str, str]:
    name, rest = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", spec).groups()
    return name.lower().replace("_", "-"), rest.replace(" ", "")


def _pyproject() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + project["optional-dependencies"]["test"]
    return dict(_normalise(s) for s in specs)


def _environment() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return dict(_normalise(s) for s in pip)


def test_environment_yml_matches_pyproject():
    assert _environment() == _pyproject()


def test_every_dependency_is_pinned_at_both_ends():
    for name, spec in _pyproject().items():
        assert ">=" in spec and "<" in spec.replace("<=", ""), f"{name} is not pinned at both ends: {spec!r}"


def test_jupyter_book_stays_on_1x():
    assert _pyproject()["jupyter-book"].endswith("<2")
