"""Real-dataset loaders, image decoding and the decode cache, on tiny datasets in tmp_path."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinlib.data import Dataset, DatasetInfo, cache, imaging, sources
from skinlib.errors import SkinlibError
from skinlib.labels import CLASSES

REAL_HAM = Path("/work/shared/data/ham10000")

# (lesion_id, image_id, dx); deliberately not sorted by image_id.
HAM_ROWS = [
    ("HAM_0000003", "ISIC_0000005", "nv"),
    ("HAM_0000001", "ISIC_0000001", "mel"),
    ("HAM_0000001", "ISIC_0000002", "mel"),
    ("HAM_0000002", "ISIC_0000003", "akiec"),
    ("HAM_0000004", "ISIC_0000004", "vasc"),
]


def colour_of(image_id: str) -> tuple[int, int, int]:
    """A distinct flat colour per image, so tests can check which file landed where."""
    k = int(image_id.split("_")[-1])
    return (40 * k % 256, 255 - 30 * k % 256, 60)


def write_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, quality=95)


def write_csv(path: Path, header: list[str], rows: list[tuple]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def make_ham(root: Path, layout: str = "images", rows: list[tuple] = HAM_ROWS,
             csv_at: str = "") -> Path:
    """A HAM10000 folder: ``images/`` or Kaggle's ``HAM10000_images_part_1/_2``."""
    write_csv(root / csv_at / "HAM10000_metadata.csv", ["lesion_id", "image_id", "dx", "dx_type", "age"],
              [(les, img, dx, "histo", 50) for les, img, dx in rows])
    for i, (_, image_id, _) in enumerate(rows):
        folder = "images" if layout == "images" else f"HAM10000_images_part_{1 + i % 2}"
        write_image(root / folder / f"{image_id}.jpg", colour_of(image_id))
    return root


ISIC_HEADER = ["image", "MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]


def one_hot(cls: str) -> tuple:
    return tuple("1.0" if c == cls else "0.0" for c in ["mel", "nv", "bcc", "akiec", "bkl", "df", "vasc"])


def make_isic(root: Path, groupings: bool = True) -> Path:
    rows = [("ISIC_0000012", "bkl"), ("ISIC_0000010", "bcc"), ("ISIC_0000011", "df")]
    write_csv(root / sources.ISIC_GROUND_TRUTH, ISIC_HEADER, [(img, *one_hot(c)) for img, c in rows])
    for img, _ in rows:
        write_image(root / sources.ISIC_INPUT_DIR / f"{img}.jpg", colour_of(img))
    if groupings:
        write_csv(root / sources.ISIC_LESION_GROUPINGS, ["image", "lesion_id", "diagnosis_confirm_type"],
                  [("ISIC_0000010", "HAM_A", "histopathology"), ("ISIC_0000011", "HAM_A", "histopathology"),
                   ("ISIC_0000012", "HAM_B", "histopathology")])
    return root


def make_dermamnist(path: Path, side: int = 28) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for part, labels in (("train", [0, 1, 2, 3, 4, 5, 6]), ("val", [4, 5]), ("test", [6, 0, 5])):
        arrays[f"{part}_images"] = rng.integers(0, 256, (len(labels), side, side, 3), dtype=np.uint8)
        arrays[f"{part}_labels"] = np.asarray(labels, dtype=np.uint8)[:, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def assert_close(pixel: np.ndarray, colour: tuple[int, int, int], tol: int = 6) -> None:
    assert np.abs(pixel.astype(int) - np.asarray(colour)).max() <= tol, (pixel, colour)


def ham_info() -> DatasetInfo:
    return DatasetInfo("ham10000", "", "", "", "", True, sources.load_ham10000)


# ------------------------------------------------------------------ loaders

@pytest.mark.parametrize("layout,csv_at", [("images", ""), ("kaggle", ""), ("kaggle", "meta/sub")])
def test_ham10000_layouts(tmp_path: Path, layout: str, csv_at: str) -> None:
    ds = sources.load_ham10000(make_ham(tmp_path, layout, csv_at=csv_at), 16)
    assert isinstance(ds, Dataset) and ds.source == "ham10000"
    assert ds.images.shape == (5, 16, 16, 3) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int64
    assert list(ds.image_ids) == [f"ISIC_000000{k}" for k in range(1, 6)]  # sorted by id
    assert [CLASSES[k] for k in ds.labels] == ["mel", "mel", "akiec", "vasc", "nv"]
    assert list(ds.lesion_ids) == ["HAM_0000001", "HAM_0000001", "HAM_0000002", "HAM_0000004", "HAM_0000003"]
    assert ds.meta["n_lesions"] == 4
    for image, image_id in zip(ds.images, ds.image_ids):
        assert_close(image[8, 8], colour_of(str(image_id)))
    assert ds.lesion_ids.dtype.kind == "U" and ds.image_ids.dtype.kind == "U"


def test_ham10000_duplicate_image_folders_are_tolerated(tmp_path: Path) -> None:
    # Kaggle's copy ships each image folder twice (upper- and lower-case names).
    root = make_ham(tmp_path, "kaggle")
    for src in (root / "HAM10000_images_part_1").iterdir():
        write_image(root / "ham10000_images_part_1" / src.name, (0, 0, 0))
    ds = sources.load_ham10000(root, 8)
    assert len(ds) == 5


def test_isic2018_with_lesion_groupings(tmp_path: Path) -> None:
    ds = sources.load_isic2018(make_isic(tmp_path), 12)
    assert ds.images.shape == (3, 12, 12, 3)
    assert list(ds.image_ids) == ["ISIC_0000010", "ISIC_0000011", "ISIC_0000012"]
    assert [CLASSES[k] for k in ds.labels] == ["bcc", "df", "bkl"]
    assert list(ds.lesion_ids) == ["HAM_A", "HAM_A", "HAM_B"]
    assert ds.meta["lesion_ids"] == sources.ISIC_LESION_GROUPINGS
    assert_close(ds.images[1, 6, 6], colour_of("ISIC_0000011"))


def test_isic2018_without_groupings_is_per_image(tmp_path: Path) -> None:
    ds = sources.load_isic2018(make_isic(tmp_path, groupings=False), 12)
    assert ds.meta["lesion_ids"] == "per-image"
    assert list(ds.lesion_ids) == list(ds.image_ids)


def test_dermamnist_label_mapping_matches_medmnist() -> None:
    # medmnist.INFO["dermamnist"]["label"]: 0 actinic keratoses and intraepithelial carcinoma,
    # 1 basal cell carcinoma, 2 benign keratosis-like lesions, 3 dermatofibroma, 4 melanoma,
    # 5 melanocytic nevi, 6 vascular lesions.
    assert sources.DERMAMNIST_LABELS[0] == "akiec" and sources.DERMAMNIST_LABELS[4] == "mel"
    assert sources.DERMAMNIST_LABELS[5] == "nv" and sources.DERMAMNIST_LABELS[6] == "vasc"
    assert sorted(sources.DERMAMNIST_LABELS) == sorted(CLASSES)


@pytest.mark.parametrize("as_file", [False, True])
def test_dermamnist(tmp_path: Path, as_file: bool) -> None:
    npz = make_dermamnist(tmp_path / "dermamnist.npz")
    ds = sources.load_dermamnist(npz if as_file else tmp_path, 32)
    assert ds.images.shape == (12, 32, 32, 3) and ds.images.dtype == np.uint8
    assert [CLASSES[k] for k in ds.labels[7:]] == ["mel", "nv", "vasc", "akiec", "nv"]
    assert list(ds.predefined_split) == ["train"] * 7 + ["val"] * 2 + ["test"] * 3
    assert len(set(ds.lesion_ids)) == 12 and "per-image" in ds.meta["lesion_ids"]
    same = sources.load_dermamnist(npz, 28)  # stored size: the pixels are untouched
    with np.load(npz) as raw:
        np.testing.assert_array_equal(same.images[:7], raw["train_images"])


def test_dermamnist_picks_the_resolution_that_fits(tmp_path: Path) -> None:
    make_dermamnist(tmp_path / "dermamnist.npz", 28)
    make_dermamnist(tmp_path / "dermamnist_64.npz", 64)
    assert sources.dermamnist_path(tmp_path, 64).name == "dermamnist_64.npz"
    assert sources.dermamnist_path(tmp_path, 28).name == "dermamnist.npz"
    assert sources.dermamnist_path(tmp_path, 128).name == "dermamnist_64.npz"


# ------------------------------------------------------------------ decoding

def _save(img: Image.Image, path: Path, fmt: str) -> Path:
    img.save(path, fmt)
    return path


@pytest.mark.parametrize("mode,fmt,value,expected", [
    ("L", "PNG", 100, (100, 100, 100)),
    ("1", "PNG", 1, (255, 255, 255)),
    ("LA", "PNG", (100, 255), (100, 100, 100)),
    ("LA", "PNG", (100, 0), (255, 255, 255)),
    ("RGBA", "PNG", (200, 10, 10, 255), (200, 10, 10)),
    ("RGBA", "PNG", (200, 10, 10, 0), (255, 255, 255)),  # transparent -> white background
    ("RGBA", "PNG", (200, 0, 0, 128), (228, 127, 127)),  # half transparent: composited
    ("CMYK", "JPEG", (0, 255, 255, 0), (255, 0, 0)),
    ("CMYK", "TIFF", (0, 0, 255, 0), (255, 255, 0)),
    ("YCbCr", "JPEG", (128, 128, 128), (128, 128, 128)),
])
def test_modes_are_converted_to_rgb(tmp_path: Path, mode: str, fmt: str, value, expected) -> None:
    path = _save(Image.new(mode, (20, 16), value), tmp_path / f"x.{fmt.lower()}", fmt)
    arr = imaging.load_square_rgb(path, 8)
    assert arr.shape == (8, 8, 3) and arr.dtype == np.uint8
    assert_close(arr[4, 4], expected, tol=3 if fmt == "JPEG" else 1)


def test_palette_with_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (10, 10), 1)
    img.putpalette([0, 0, 255, 255, 0, 0] + [0] * 762)
    img.paste(0, (0, 0, 10, 5))
    img.info["transparency"] = 0
    path = tmp_path / "p.png"
    img.save(path, transparency=0)
    arr = imaging.load_square_rgb(path, 10)
    assert tuple(arr[0, 0]) == (255, 255, 255)  # transparent blue -> white
    assert tuple(arr[9, 9]) == (255, 0, 0)


@pytest.mark.parametrize("mode", ["I;16", "I"])
def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path: Path, mode: str) -> None:
    arr16 = np.zeros((8, 8), np.uint16)
    arr16[:, :4], arr16[:, 4:] = 65535, 32896  # white | mid grey (32896 / 257 = 128)
    img = Image.fromarray(arr16)
    if mode == "I":
        img = img.convert("I")
    path = _save(img, tmp_path / "x16.tif", "TIFF") if mode == "I" else _save(img, tmp_path / "x16.png", "PNG")
    assert Image.open(path).mode == mode
    out = imaging.load_square_rgb(path, 8)
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[0, 7]) == (128, 128, 128)


def test_centre_crop_to_the_shorter_side(tmp_path: Path) -> None:
    img = Image.new("RGB", (30, 10), (255, 0, 0))
    img.paste((0, 255, 0), (10, 0, 20, 10))
    img.paste((0, 0, 255), (20, 0, 30, 10))
    out = imaging.load_square_rgb(_save(img, tmp_path / "wide.png", "PNG"), 5)
    assert (out == np.array([0, 255, 0], np.uint8)).all()  # only the green middle is kept


def test_large_jpeg_draft_still_gives_the_right_size_and_content(tmp_path: Path) -> None:
    img = Image.new("RGB", (600, 450), (20, 120, 220))
    out = imaging.load_square_rgb(_save(img, tmp_path / "big.jpg", "JPEG"), 64)
    assert out.shape == (64, 64, 3)
    assert_close(out[32, 32], (20, 120, 220), tol=4)


def test_decode_many_keeps_order_with_threads(tmp_path: Path) -> None:
    paths = []
    for k in range(12):
        write_image(tmp_path / f"ISIC_{k:07d}.png", colour_of(f"ISIC_{k:07d}"))
        paths.append(tmp_path / f"ISIC_{k:07d}.png")
    out = imaging.decode_many(paths, 4, workers=3, progress=False)
    assert out.shape == (12, 4, 4, 3)
    for k in range(12):
        assert tuple(out[k, 2, 2]) == colour_of(f"ISIC_{k:07d}")
    assert imaging.decode_many([], 4).shape == (0, 4, 4, 3)


def test_decode_many_stops_at_a_bad_file_and_names_it(tmp_path: Path) -> None:
    paths = []
    for k in range(10):
        write_image(tmp_path / f"{k}.png", (k, k, k))
        paths.append(tmp_path / f"{k}.png")
    paths[6].write_bytes(b"not an image")
    with pytest.raises(SkinlibError, match=r"6\.png"):
        imaging.decode_many(paths, 4, workers=2, progress=False)


# ------------------------------------------------------------------ bad input: one test per case

def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(SkinlibError, match="nowhere.*does not exist"):
        sources.load_ham10000(tmp_path / "nowhere", 8)


def test_missing_metadata_csv(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "ISIC_0000001.jpg", (1, 2, 3))
    with pytest.raises(SkinlibError, match="HAM10000_metadata.csv"):
        sources.load_ham10000(tmp_path, 8)


def test_missing_isic_ground_truth(tmp_path: Path) -> None:
    with pytest.raises(SkinlibError, match="ISIC2018_Task3_Training_GroundTruth.csv"):
        sources.load_isic2018(tmp_path, 8)


def test_unreadable_csv(tmp_path: Path) -> None:
    make_ham(tmp_path)
    (tmp_path / "HAM10000_metadata.csv").write_bytes(b"lesion_id,image_id,dx\n\xff\xfe\xfa,\x81,\xc3\n")
    with pytest.raises(SkinlibError, match=r"HAM10000_metadata\.csv: cannot read CSV"):
        sources.load_ham10000(tmp_path, 8)


@pytest.mark.parametrize("content", ["", "lesion_id,image_id,dx\n"])
def test_empty_csv(tmp_path: Path, content: str) -> None:
    make_ham(tmp_path)
    (tmp_path / "HAM10000_metadata.csv").write_text(content)
    with pytest.raises(SkinlibError, match=r"HAM10000_metadata\.csv: CSV file (is empty|has a header but no rows)"):
        sources.load_ham10000(tmp_path, 8)


def test_missing_columns_are_named(tmp_path: Path) -> None:
    write_csv(tmp_path / "HAM10000_metadata.csv", ["lesion_id", "image_id"], [("HAM_1", "ISIC_0000001")])
    with pytest.raises(SkinlibError, match=r"HAM10000_metadata\.csv: missing column\(s\) dx"):
        sources.load_ham10000(tmp_path, 8)


def test_missing_isic_columns_are_named(tmp_path: Path) -> None:
    write_csv(tmp_path / sources.ISIC_GROUND_TRUTH, ISIC_HEADER[:-2], [("ISIC_0000001", 1, 0, 0, 0, 0)])
    with pytest.raises(SkinlibError, match=r"missing column\(s\) DF, VASC"):
        sources.load_isic2018(tmp_path, 8)


def test_unknown_diagnosis_label(tmp_path: Path) -> None:
    make_ham(tmp_path, rows=HAM_ROWS[:2] + [("HAM_9", "ISIC_0000009", "scc")])
    with pytest.raises(SkinlibError, match=r"line 4: unknown diagnosis dx='scc' for image ISIC_0000009"):
        sources.load_ham10000(tmp_path, 8)


def test_listed_image_absent(tmp_path: Path) -> None:
    make_ham(tmp_path)
    (tmp_path / "images" / "ISIC_0000003.jpg").unlink()
    with pytest.raises(SkinlibError, match=r"HAM10000_metadata\.csv: line \d+: image 'ISIC_0000003' is listed"):
        sources.load_ham10000(tmp_path, 8)


def _truncate(path: Path) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "JPEG", quality=95)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


@pytest.mark.parametrize("damage", ["corrupt", "truncated", "zero-byte"])
def test_bad_image_file(tmp_path: Path, damage: str) -> None:
    make_ham(tmp_path)
    bad = tmp_path / "images" / "ISIC_0000004.jpg"
    if damage == "corrupt":
        bad.write_bytes(os.urandom(500))
    elif damage == "truncated":
        _truncate(bad)
    else:
        bad.write_bytes(b"")
    with pytest.raises(SkinlibError, match=r"ISIC_0000004\.jpg: cannot decode image") as err:
        sources.load_ham10000(tmp_path, 8)
    assert "\n" not in str(err.value)
    if damage == "zero-byte":
        assert "empty file" in str(err.value)


@pytest.mark.parametrize("bad_id", ["../ISIC_0000001", "/etc/passwd", "images/ISIC_0000001",
                                    "..\\ISIC_0000001", "..", ".hidden"])
def test_image_id_escaping_the_data_folder(tmp_path: Path, bad_id: str) -> None:
    make_ham(tmp_path)
    write_csv(tmp_path / "HAM10000_metadata.csv", ["lesion_id", "image_id", "dx"],
              [("HAM_1", "ISIC_0000001", "nv"), ("HAM_2", bad_id, "nv")])
    with pytest.raises(SkinlibError, match=r"HAM10000_metadata\.csv: line 3: image_id .* is not a plain file name"):
        sources.load_ham10000(tmp_path, 8)


def test_duplicate_image_ids(tmp_path: Path) -> None:
    make_ham(tmp_path, rows=HAM_ROWS + [("HAM_0000009", "ISIC_0000002", "nv")])
    with pytest.raises(SkinlibError, match=r"duplicate image_id 'ISIC_0000002' \(lines 4 and 7\)"):
        sources.load_ham10000(tmp_path, 8)


@pytest.mark.parametrize("row,what", [(("0.0",) * 7, "no class"),
                                      (("1.0", "1.0") + ("0.0",) * 5, r"2 classes \(MEL, NV\)")])
def test_one_hot_row_without_exactly_one_class(tmp_path: Path, row: tuple, what: str) -> None:
    make_isic(tmp_path)
    write_csv(tmp_path / sources.ISIC_GROUND_TRUTH, ISIC_HEADER,
              [("ISIC_0000010", *one_hot("bcc")), ("ISIC_0000011", *row)])
    with pytest.raises(SkinlibError, match=rf"GroundTruth\.csv: line 3: image ISIC_0000011 has {what}"):
        sources.load_isic2018(tmp_path, 8)


def test_lesion_groupings_missing_an_image(tmp_path: Path) -> None:
    make_isic(tmp_path)
    write_csv(tmp_path / sources.ISIC_LESION_GROUPINGS, ["image", "lesion_id"], [("ISIC_0000010", "HAM_A")])
    with pytest.raises(SkinlibError, match=r"LesionGroupings\.csv: image ISIC_0000012 .* has no lesion_id \(2 image\(s\) missing\)"):
        sources.load_isic2018(tmp_path, 8)


def test_npz_missing_keys(tmp_path: Path) -> None:
    np.savez(tmp_path / "dermamnist.npz", train_images=np.zeros((1, 28, 28, 3), np.uint8),
             train_labels=np.zeros((1, 1), np.uint8))
    with pytest.raises(SkinlibError, match=r"dermamnist\.npz: missing key\(s\) val_images, val_labels, "
                                           r"test_images, test_labels"):
        sources.load_dermamnist(tmp_path, 28)


def test_npz_object_array_is_refused(tmp_path: Path) -> None:
    path = make_dermamnist(tmp_path / "dermamnist.npz")
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["val_labels"] = np.array([[4], "x"], dtype=object)
    np.savez(path, **arrays)
    with pytest.raises(SkinlibError, match=r"dermamnist\.npz: key val_labels holds an object array"):
        sources.load_dermamnist(path, 28)


def test_npz_not_a_zip(tmp_path: Path) -> None:
    (tmp_path / "dermamnist.npz").write_bytes(b"garbage, not a zip file")
    with pytest.raises(SkinlibError, match=r"dermamnist\.npz: not a readable \.npz"):
        sources.load_dermamnist(tmp_path, 28)


def test_missing_dermamnist_npz(tmp_path: Path) -> None:
    with pytest.raises(SkinlibError, match=r"no dermamnist\*\.npz"):
        sources.load_dermamnist(tmp_path, 28)


# ------------------------------------------------------------------ cache

@pytest.fixture
def decode_counter(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Records every file the decoder opens."""
    calls: list[Path] = []
    real = imaging.load_square_rgb

    def counting(path: Path, size: int) -> np.ndarray:
        calls.append(Path(path))
        return real(path, size)

    monkeypatch.setattr(imaging, "load_square_rgb", counting)
    return calls


def test_second_load_reads_the_cache_without_decoding(tmp_path: Path, decode_counter: list[Path]) -> None:
    data = make_ham(tmp_path / "data")
    first = cache.cached_load(ham_info(), data, 16, tmp_path / "cache")
    assert len(decode_counter) == 5 and first.meta["from_cache"] is False
    second = cache.cached_load(ham_info(), data, 16, tmp_path / "cache")
    assert len(decode_counter) == 5 and second.meta["from_cache"] is True
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert list(first.lesion_ids) == list(second.lesion_ids) and list(first.image_ids) == list(second.image_ids)
    assert second.meta["n_lesions"] == 4 and second.predefined_split is None
    files = list((tmp_path / "cache" / "datasets").iterdir())
    assert [f.suffix for f in files] == [".npz"]  # no temporary file left behind
    with np.load(files[0], allow_pickle=False) as npz:  # no object arrays inside
        assert all(npz[k].dtype != object for k in npz.files)
        assert npz["lesion_ids"].dtype.kind == "U"
    cache.cached_load(ham_info(), data, 8, tmp_path / "cache")  # another size decodes again
    assert len(decode_counter) == 10


def test_cache_follows_metadata_and_image_changes(tmp_path: Path, decode_counter: list[Path]) -> None:
    data = make_ham(tmp_path / "data")
    cache.cached_load(ham_info(), data, 8, tmp_path / "cache")
    csv = data / "HAM10000_metadata.csv"
    csv.write_text(csv.read_text().replace(",nv,", ",bkl,"))
    os.utime(csv, ns=(time.time_ns(), time.time_ns() + 10**9))
    ds = cache.cached_load(ham_info(), data, 8, tmp_path / "cache")
    assert len(decode_counter) == 10 and ds.class_counts()["bkl"] == 1
    write_image(data / "images" / "extra.jpg", (0, 0, 0))  # one more image file
    cache.cached_load(ham_info(), data, 8, tmp_path / "cache")
    assert len(decode_counter) == 15


def test_damaged_cache_is_rebuilt(tmp_path: Path, decode_counter: list[Path]) -> None:
    data = make_ham(tmp_path / "data")
    ds = cache.cached_load(ham_info(), data, 8, tmp_path / "cache")
    Path(ds.meta["cache_file"]).write_bytes(b"PK\x03\x04 broken")
    with pytest.warns(UserWarning, match="unreadable decode cache"):
        again = cache.cached_load(ham_info(), data, 8, tmp_path / "cache")
    assert len(decode_counter) == 10 and again.meta["from_cache"] is False
    assert cache.cached_load(ham_info(), data, 8, tmp_path / "cache").meta["from_cache"] is True


def test_cache_keeps_the_predefined_split(tmp_path: Path) -> None:
    npz = make_dermamnist(tmp_path / "dermamnist.npz")
    info = DatasetInfo("dermamnist", "", "", "", "", True, sources.load_dermamnist)
    first = cache.cached_load(info, npz, 16, tmp_path / "cache")
    second = cache.cached_load(info, npz, 16, tmp_path / "cache")
    assert second.meta["from_cache"] is True
    assert list(second.predefined_split) == list(first.predefined_split)
    np.testing.assert_array_equal(second.images, first.images)


def test_cache_dir_default_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKINLIB_CACHE_DIR", str(tmp_path / "envcache"))
    data = make_ham(tmp_path / "data")
    ds = cache.cached_load(ham_info(), data, 8, None)
    assert Path(ds.meta["cache_file"]).parent == tmp_path / "envcache" / "datasets"


def test_cached_load_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(SkinlibError, match=r"absent.*does not exist"):
        cache.cached_load(ham_info(), tmp_path / "absent", 8, tmp_path / "cache")


# ------------------------------------------------------------------ the real copy

@pytest.mark.skipif(not (REAL_HAM / "HAM10000_metadata.csv").is_file(), reason="real HAM10000 copy absent")
def test_real_ham10000(tmp_path: Path) -> None:
    ds = cache.cached_load(ham_info(), REAL_HAM, 32, tmp_path / "cache")
    assert ds.images.shape == (10015, 32, 32, 3)
    assert ds.class_counts() == {"akiec": 327, "bcc": 514, "bkl": 1099, "df": 115, "mel": 1113,
                                 "nv": 6705, "vasc": 142}
    assert len(np.unique(ds.lesion_ids)) == 7470 and len(np.unique(ds.image_ids)) == 10015
    assert 40 < ds.images.mean() < 230  # real pictures, not blank
