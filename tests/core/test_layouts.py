"""Layout discovery on the shared real data, class encodings, the SSL split, bad-input errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.common import DRISHTI_ROOT as DRISHTI
from benchmarks.common import FAZ_ROOT as FAZ
from benchmarks.common import SHARED_DATA as DATA
from napari_synfoc.core.data import load_sample_arrays
from napari_synfoc.core.layouts import DataError, detect_layout, discover, make_ssl_split

SAMPLES = DATA / "synfoc_format_samples"

needs_data = pytest.mark.skipif(not FAZ.is_dir(), reason="shared data not present")


def raw(path):
    a = np.asarray(Image.open(path))
    return a.astype(np.uint8) * 255 if a.dtype == bool else a


# ------------------------------------------------------------------------- real data


@needs_data
def test_faz_generic_layout_counts_and_encoding():
    # the FAZ root resolves down the single-folder chain data/FAZ
    split = discover(DATA / "faz_octa_5sites")
    assert split.layout == "generic" and split.root == FAZ
    assert (split.num_classes, split.in_channels, split.phi_classes) == (2, 1, "plain")
    counts = {d: (len(split.train[d]), len(split.test[d])) for d in split.domains}
    assert counts == {
        "Domain1": (244, 60),
        "Domain2": (150, 50),
        "Domain3": (200, 100),
        "Domain4": (708, 304),
        "Domain5": (30, 9),
    }
    assert split.problems == []
    names = [s.name for s in split.train["Domain1"]]
    assert names == sorted(names)
    s = split.test["Domain3"][0]
    img, lab = load_sample_arrays(s, {"num_classes": 2})
    assert img.shape == (1, 256, 256) and img.dtype == np.float32
    np.testing.assert_array_equal(img[0], raw(s.image_path)[..., 0] / np.float32(255))
    np.testing.assert_array_equal(lab, (raw(s.mask_path)[..., 0] == 127).astype(np.int64))
    assert 0 < lab.mean() < 0.2


@needs_data
def test_make_ssl_split_faz_domain1():
    split = discover(FAZ)
    labeled, unlabeled = make_ssl_split(split, "Domain1", 20)
    assert len(labeled) == 20
    assert len(unlabeled) == 244 - 20 + 150 + 200 + 708 + 30
    d1 = sorted(p.name for p in (FAZ / "Domain1/train/imgs").iterdir())
    assert [s.name + ".png" for s in labeled] == d1[:20]
    assert {s.domain for s in labeled} == {"Domain1"}
    lab_keys = {(s.domain, s.name) for s in labeled}
    assert not lab_keys & {(s.domain, s.name) for s in unlabeled}
    assert sum(s.domain == "Domain1" for s in unlabeled) == 224
    with pytest.raises(DataError, match=r"unknown domain 'Domain9'.*Domain1, Domain2"):
        make_ssl_split(split, "Domain9", 20)
    with pytest.raises(DataError, match="no labelled images"):
        make_ssl_split(split, "Domain1", 0)
    with pytest.raises(DataError, match="only 30 train images"):
        make_ssl_split(split, "Domain5", 31)


@needs_data
def test_prostate_layout_encoding_and_unpaired_quirk():
    with pytest.warns(UserWarning, match="skipped 2 file"):
        split = discover(SAMPLES / "ProstateSlice")
    assert split.layout == "prostate" and (split.num_classes, split.in_channels) == (2, 1)
    assert split.domains == ["BIDMC", "BMC", "HK", "I2CVB", "RUNMC", "UCL"]
    assert split.train["I2CVB"] == [] and len(split.test["I2CVB"]) == 1
    assert any("I2CVB/train/image/00_01.png" in p for p in split.problems)
    assert any("I2CVB/train/mask/00_00.png" in p for p in split.problems)
    s = split.train["BIDMC"][0]
    img, lab = load_sample_arrays(s)
    m = raw(s.mask_path)
    np.testing.assert_array_equal(lab, (m == 0).astype(np.int64))  # prostate is black
    assert 0 < lab.mean() < 0.1 and img.shape == (1, 384, 384)
    with pytest.raises(DataError, match="no labelled images.*I2CVB"):
        make_ssl_split(split, "I2CVB", 1)


@needs_data
def test_fundus_layout_encoding():
    split = discover(SAMPLES / "Fundus")
    assert split.layout == "fundus"
    assert (split.num_classes, split.in_channels, split.phi_classes) == (3, 3, "fundus")
    assert {d: (len(split.train[d]), len(split.test[d])) for d in split.domains} == {
        f"Domain{k}": (1, 1) for k in range(1, 5)
    }
    s = split.train["Domain2"][0]
    img, lab = load_sample_arrays(s)
    m = raw(s.mask_path)[..., 0]
    assert img.shape == (3, 800, 800)
    np.testing.assert_array_equal(lab == 1, m == 0)  # cup
    np.testing.assert_array_equal(lab == 2, m == 128)  # rim
    np.testing.assert_array_equal(lab == 0, m == 255)  # background


@needs_data
def test_mnms_layout_encoding():
    split = discover(SAMPLES / "mnms")
    assert split.layout == "mnms" and (split.num_classes, split.in_channels) == (4, 1)
    assert {d: (len(split.train[d]), len(split.test[d])) for d in split.domains} == {
        f"vendor{v}": (3, 3) for v in "ABCD"
    }
    s = split.test["vendorD"][1]
    img, lab = load_sample_arrays(s)
    m = raw(s.mask_path)
    assert img.shape == (1, 496, 416) and lab.shape == (496, 416)
    for c, k in ((0, 1), (1, 2), (2, 3)):  # R = LV (1), G = MYO (2), B = RV (3)
        np.testing.assert_array_equal(lab == k, m[..., c] == 255)
    assert set(np.unique(lab)) == {0, 1, 2, 3}


@needs_data
def test_busi_layout_split_merge_and_grey():
    split = discover(SAMPLES / "Dataset_BUSI_with_GT")
    assert split.layout == "busi" and (split.num_classes, split.in_channels) == (2, 1)
    assert split.domains == ["benign", "malignant"]  # "normal" dropped
    # lexicographic order, last int(20 %) is test: 5 -> 4/1, 6 -> 5/1
    assert [s.name for s in split.train["benign"]] == [
        "benign (1)",
        "benign (2)",
        "benign (3)",
        "benign (4)",
    ]
    assert [s.name for s in split.test["benign"]] == ["benign (5)"]
    assert len(split.train["malignant"]) == 5 and len(split.test["malignant"]) == 1
    s = split.train["benign"][3]
    assert s.extra_mask_paths and s.extra_mask_paths[0].name == "benign (4)_mask_1.png"
    img, lab = load_sample_arrays(s)
    m1 = raw(s.mask_path) > 0
    m2 = raw(s.extra_mask_paths[0])[..., 0] > 0
    np.testing.assert_array_equal(lab, (m1 | m2).astype(np.int64))
    assert m2.sum() > 0 and (m2 & ~m1).sum() > 0  # the second lesion really adds pixels
    rgb = raw(s.image_path).astype(np.float32)
    luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    assert img.shape == (1, *rgb.shape[:2])
    if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
        np.testing.assert_allclose(img[0] * 255, luma, atol=1e-3)
    else:
        np.testing.assert_array_equal(img[0] * 255, rgb[..., 0])


@needs_data
def test_drishti_official_split_and_encoding():
    split = discover(DATA / "drishti_gs")
    assert split.layout == "drishti" and split.root == DRISHTI
    assert (split.num_classes, split.in_channels, split.phi_classes) == (3, 3, "fundus")
    assert len(split.train["Drishti-GS"]) == 50 and len(split.test["Drishti-GS"]) == 51
    assert split.test["Drishti-GS"][0].name == "drishtiGS_001"
    assert split.train["Drishti-GS"][0].name == "drishtiGS_002"
    s = split.train["Drishti-GS"][0]
    img, lab = load_sample_arrays(s)
    m = raw(s.mask_path)
    np.testing.assert_array_equal(lab == 1, m == 2)  # cup
    np.testing.assert_array_equal(lab == 2, m == 1)  # rim
    # the cup lies inside the disc: its bounding box is inside the rim's
    cy, cx = np.nonzero(lab == 1)
    ry, rx = np.nonzero(lab == 2)
    assert ry.min() < cy.min() and cy.max() < ry.max() and rx.min() < cx.min()
    assert img.shape[0] == 3


@needs_data
def test_detect_layout_names():
    assert detect_layout(FAZ) == "generic"
    assert detect_layout(SAMPLES / "ProstateSlice") == "prostate"
    assert detect_layout(SAMPLES / "Fundus") == "fundus"
    assert detect_layout(SAMPLES / "mnms") == "mnms"
    assert detect_layout(SAMPLES / "Dataset_BUSI_with_GT") == "busi"
    assert detect_layout(DRISHTI) == "drishti"


# ------------------------------------------------------------------------- tmp folders


def png(path: Path, array) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path)
    return path


def make_generic(root: Path, mask_values=(0, 127), size=(8, 8), domains=("A", "B")):
    for d in domains:
        for split in ("train", "test"):
            for i in range(3):
                img = np.full(size, 40 * i, np.uint8)
                m = np.full(size, mask_values[0], np.uint8)
                m[2:5, 2:5] = mask_values[1]
                png(root / d / split / "imgs" / f"{i:02d}.png", img)
                png(root / d / split / "mask" / f"{i:02d}.png", m)
    return root


def test_generic_tmp_binary_and_label_map(tmp_path):
    root = make_generic(tmp_path / "ds", mask_values=(0, 200))
    split = discover(root)
    assert split.layout == "generic" and split.num_classes == 2
    _, lab = load_sample_arrays(split.train["A"][1])
    assert lab.sum() == 9 and lab.max() == 1
    split = discover(root, label_map={0: 0, 200: 3})
    assert split.num_classes == 4
    _, lab = load_sample_arrays(split.train["B"][0])
    assert lab.sum() == 27 and set(np.unique(lab)) == {0, 3}
    split = discover(root, label_map={0: 0, 100: 1})
    with pytest.raises(DataError, match=r"does not cover mask values \[200\].*00\.png"):
        load_sample_arrays(split.train["A"][0])


def test_unpaired_files_are_reported_and_skipped(tmp_path):
    root = make_generic(tmp_path / "ds")
    png(root / "A" / "train" / "imgs" / "extra.png", np.zeros((8, 8)))
    png(root / "B" / "test" / "mask" / "orphan.png", np.zeros((8, 8)))
    with pytest.warns(UserWarning, match="skipped 2 file"):
        split = discover(root)
    assert len(split.train["A"]) == 3 and len(split.test["B"]) == 3
    assert any("image without mask" in p and "extra.png" in p for p in split.problems)
    assert any("mask without image" in p and "orphan.png" in p for p in split.problems)


def test_size_mismatch_names_both_files_and_sizes(tmp_path):
    root = make_generic(tmp_path / "ds")
    png(root / "A" / "train" / "mask" / "01.png", np.zeros((6, 10)))
    split = discover(root)
    with pytest.raises(DataError) as err:
        load_sample_arrays(split.train["A"][1])
    msg = str(err.value)
    assert "imgs/01.png" in msg and "mask/01.png" in msg and "8x8" in msg and "10x6" in msg


def test_prostate_unexpected_mask_values(tmp_path):
    root = tmp_path / "ProstateSlice"
    for site in ("BIDMC", "HK"):
        for split in ("train", "test"):
            png(root / site / split / "image" / "00_00.png", np.zeros((8, 8)))
            png(root / site / split / "mask" / "00_00.png", np.full((8, 8), 255))
    png(root / "HK" / "train" / "mask" / "00_00.png", [[0, 128, 255, 255]] * 4)
    png(root / "HK" / "train" / "image" / "00_00.png", np.zeros((4, 4)))
    split = discover(root)
    assert split.layout == "prostate"
    _, lab = load_sample_arrays(split.train["BIDMC"][0])
    assert lab.sum() == 0
    with pytest.raises(DataError, match=r"unexpected mask values \[128\] in .*HK/train/mask"):
        load_sample_arrays(split.train["HK"][0])


def test_missing_folders_and_unknown_layouts(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        discover(tmp_path / "nope")
    (tmp_path / "empty" / "x").mkdir(parents=True)
    (tmp_path / "empty" / "y").mkdir(parents=True)
    with pytest.raises(DataError, match="no known data layout"):
        discover(tmp_path / "empty")
    root = make_generic(tmp_path / "ds")
    for f in (root / "B" / "train" / "mask").iterdir():
        f.unlink()
    (root / "B" / "train" / "mask").rmdir()
    with pytest.raises(DataError, match=r"missing mask folder in .*B/train.*masks, mask"):
        discover(root)
    root2 = make_generic(tmp_path / "ds2")
    for f in (root2 / "A" / "train" / "imgs").iterdir():
        f.unlink()
    with pytest.warns(UserWarning, match="mask without image"):
        split = discover(root2)  # an empty folder is not fatal for discovery ...
    with pytest.raises(DataError, match="no labelled images.*'A'"):
        make_ssl_split(split, "A", 2)  # ... but there is nothing to label
    with pytest.raises(DataError, match="unknown layout"):
        discover(root2, layout="weird")
    with pytest.raises(DataError, match="generic layout only"):
        discover(root2, layout="prostate", label_map={0: 0})
