"""Evaluation metrics: hand-made cases and a brute-force medpy reference (spec §7.3)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import binary_erosion, generate_binary_structure

from napari_synfoc.core.metrics import aggregate, binary_metrics, domain_average, image_metrics


# --- brute-force medpy definitions (hd95, asd) --------------------------------------------------
def _border(m: np.ndarray) -> np.ndarray:
    return m ^ binary_erosion(m, structure=generate_binary_structure(m.ndim, 1), iterations=1)


def _directed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    pa, pb = np.argwhere(_border(a)), np.argwhere(_border(b))
    return np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1)).min(axis=1)


def medpy_hd95(a, b) -> float:
    return float(np.percentile(np.hstack([_directed(a, b), _directed(b, a)]), 95))


def medpy_asd(a, b) -> float:
    return float(_directed(a, b).mean())


def _squares(offset: int, size: int = 16):
    pred = np.zeros((size, size), bool)
    gt = np.zeros((size, size), bool)
    pred[4:8, 4:8] = True
    gt[4:8, 4 + offset : 8 + offset] = True
    return pred, gt


def test_offset_squares_by_hand():
    # 4×4 squares offset by 3 columns: directed distances of the 12 border pixels are
    # rows 4 and 7: 3,2,1,0 ; rows 5 and 6: 3 (left side) and 0 (right side on the other's edge)
    pred, gt = _squares(3)
    m = binary_metrics(pred, gt)
    assert m["dice"] == pytest.approx(2 * 4 / 32)
    assert m["jaccard"] == pytest.approx(4 / 28)
    assert m["asd"] == pytest.approx(18 / 12)
    assert m["hd95"] == pytest.approx(3.0)  # union: eight 0s, four 1s, four 2s, eight 3s
    assert m["hd95"] == pytest.approx(medpy_hd95(pred, gt))
    assert m["asd"] == pytest.approx(medpy_asd(pred, gt))


def test_random_shapes_match_brute_force_medpy():
    rng = np.random.default_rng(0)
    for _ in range(5):
        pred = rng.random((24, 20)) > 0.6  # ragged, touches the image edges
        gt = np.zeros((24, 20), bool)
        y, x = rng.integers(0, 12, 2)
        gt[y : y + 10, x : x + 7] = True
        gt[0:3, :] |= rng.random((3, 20)) > 0.5
        m = binary_metrics(pred, gt)
        assert m["hd95"] == pytest.approx(medpy_hd95(pred, gt), abs=1e-5)
        assert m["asd"] == pytest.approx(medpy_asd(pred, gt), abs=1e-5)
        assert m["asd"] != pytest.approx(medpy_asd(gt, pred), abs=1e-3)  # directed: pred → GT


def test_hd95_is_percentile_of_union_not_monai_max():
    import torch
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    gt = np.zeros((40, 40), bool)
    gt[2:22, 2:22] = True
    pred = gt.copy()
    pred[30:33, 30:33] = True  # a far blob: 8 of 84 pred-surface pixels, 8 of 160 overall
    m = binary_metrics(pred, gt)
    assert m["hd95"] == pytest.approx(medpy_hd95(pred, gt), abs=1e-5)

    def t(a):
        return torch.from_numpy(a[None, None].astype(np.float32))

    monai_hd = compute_hausdorff_distance(
        t(pred), t(gt), include_background=True, percentile=95
    ).item()
    assert monai_hd > m["hd95"] + 5  # max of directed percentiles: a different convention
    monai_asd = compute_average_surface_distance(t(pred), t(gt), include_background=True).item()
    assert m["asd"] == pytest.approx(monai_asd, abs=1e-5)


def test_empty_rules():
    pred, gt = _squares(0)
    empty = np.zeros_like(gt)
    for rule in ("error", "rule"):
        assert binary_metrics(empty, gt, rule) == {
            "dice": 0.0,
            "jaccard": 0.0,
            "hd95": 100.0,
            "asd": 100.0,
        }
    with pytest.raises(ValueError, match="ground-truth mask is empty"):
        binary_metrics(pred, empty)
    with pytest.raises(ValueError, match="ground-truth mask is empty"):
        binary_metrics(empty, empty)
    assert binary_metrics(pred, empty, "rule") == {
        "dice": 0.0,
        "jaccard": 0.0,
        "hd95": 100.0,
        "asd": 100.0,
    }
    assert binary_metrics(empty, empty, "rule") == {
        "dice": 1.0,
        "jaccard": 1.0,
        "hd95": 0.0,
        "asd": 0.0,
    }
    assert binary_metrics(pred, gt) == {"dice": 1.0, "jaccard": 1.0, "hd95": 0.0, "asd": 0.0}
    with pytest.raises(ValueError, match="shape"):
        binary_metrics(pred, gt[:4])


def test_image_metrics_fundus_and_aggregation():
    gt = np.zeros((12, 12), np.int64)
    gt[2:10, 2:10] = 2  # rim
    gt[4:8, 4:8] = 1  # cup
    pred = gt.copy()
    pred[4:8, 4:8] = 2
    pred[4:8, 5:9] = 1  # cup shifted one column: disc (label > 0) unchanged
    res = image_metrics(pred, gt, 3, "fundus")
    assert set(res) == {"cup", "disc", "mean"}
    # cup: overlap 12 of 16+16 → Dice .75, Jaccard 12/20; distances: half 0, half 1
    assert res["cup"] == pytest.approx({"dice": 0.75, "jaccard": 0.6, "hd95": 1.0, "asd": 0.5})
    assert res["disc"] == {"dice": 1.0, "jaccard": 1.0, "hd95": 0.0, "asd": 0.0}
    assert res["mean"] == pytest.approx({"dice": 0.875, "jaccard": 0.8, "hd95": 0.5, "asd": 0.25})
    perfect = image_metrics(gt, gt, 3, "fundus")
    dom_a = aggregate([res, perfect])
    assert dom_a == pytest.approx({"dice": 0.9375, "jaccard": 0.9, "hd95": 0.25, "asd": 0.125})
    assert aggregate([res, perfect], key="cup")["dice"] == pytest.approx(0.875)
    dom_b = aggregate([perfect])
    avg = domain_average({"A": dom_a, "B": dom_b})  # unweighted over domains
    assert avg == pytest.approx({"dice": 0.96875, "jaccard": 0.95, "hd95": 0.125, "asd": 0.0625})
    with pytest.raises(ValueError, match="nothing"):
        aggregate([])


def test_image_metrics_plain_classes_and_empty_gt_class():
    gt = np.zeros((10, 10), np.int64)
    gt[1:4, 1:4] = 1
    pred = gt.copy()
    pred[6:8, 6:8] = 2  # class 2 predicted but absent from the GT
    with pytest.raises(ValueError, match="class_2"):
        image_metrics(pred, gt, 3)
    res = image_metrics(pred, gt, 3, empty_gt="rule")
    assert res["class_1"]["dice"] == 1.0
    assert res["class_2"] == {"dice": 0.0, "jaccard": 0.0, "hd95": 100.0, "asd": 100.0}
    assert res["mean"] == pytest.approx({"dice": 0.5, "jaccard": 0.5, "hd95": 50.0, "asd": 50.0})


def test_foreground_dice_by_hand():
    from napari_synfoc.core.metrics import dice

    a = np.array([[1, 1, 0], [0, 0, 0]])
    b = np.array([[1, 0, 0], [1, 0, 0]])
    assert dice(a, b) == pytest.approx(2 * 1 / 4)  # one shared pixel, two in each
    assert dice(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0  # both empty
    assert dice(a, np.zeros_like(a)) == 0.0
