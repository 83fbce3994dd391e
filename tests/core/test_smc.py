"""Hard Dice, Φ, α and the ensemble pseudo-labels (spec §3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_synfoc.core.smc import (
    ensemble_pseudo_labels,
    hard_dice,
    phi,
    smc_alpha,
    smc_alpha_tensor,
)


def test_hard_dice_smoothing_and_empty_rule():
    a = np.array([1, 1, 0, 0], bool)
    b = np.array([1, 0, 0, 0], bool)
    assert hard_dice(a, b) == pytest.approx(3 / 4.001)
    assert hard_dice(a, a) == pytest.approx(5 / 5.001)
    assert hard_dice(a, np.zeros(4, bool)) == pytest.approx(1 / 3.001)
    assert hard_dice(np.zeros(4, bool), np.zeros(4, bool)) == 1.0
    with pytest.raises(ValueError, match="shapes differ"):
        hard_dice(a, a[:3])


def test_phi_plain_and_fundus():
    q1 = np.array([[[1, 2], [0, 0]]])
    q2 = np.array([[[1, 1], [0, 2]]])
    # plain K=3: class 1 {(0,0)} vs {(0,0),(0,1)} → 3/4.001; class 2 {(0,1)} vs {(1,1)} → 1/3.001
    assert phi(q1, q2, 3).tolist() == pytest.approx([(3 / 4.001 + 1 / 3.001) / 2])
    # fundus: cup (==1) 3/4.001; disc (>0) {(0,0),(0,1)} vs {(0,0),(0,1),(1,1)} → 5/6.001
    assert phi(q1, q2, 3, "fundus").tolist() == pytest.approx([(3 / 4.001 + 5 / 6.001) / 2])
    with pytest.raises(ValueError, match="phi_classes"):
        phi(q1, q2, 3, "retina")


def _alpha_case():
    qt = np.zeros((2, 4, 4), np.int64)
    qt[0, :2, :2] = 1  # 4 pixels; nearest 4→2 keeps pixel (0,0) → [[1,0],[0,0]]
    qs = qt.copy()
    qf = np.zeros((2, 2, 2), np.int64)
    qf[0, 0, :] = 1  # [[1,1],[0,0]]
    return qs, qt, qf


def test_smc_alpha_hand_case_and_modes():
    qs, qt, qf = _alpha_case()
    phi_self0 = 9 / 9.001  # (2·4+1)/(4+4+1.001)
    phi_mut0 = 3 / 4.001  # (2·1+1)/(1+2+1.001)
    got = smc_alpha(qs, qt, qf, 2)
    assert got.dtype == np.float64
    assert got.tolist() == pytest.approx([phi_self0 * phi_mut0, 1.0])  # image 1: all empty → 1
    assert smc_alpha(qs, qt, qf, 2, mode="self").tolist() == pytest.approx([phi_self0, 1.0])
    assert smc_alpha(qs, qt, qf, 2, mode="mutual").tolist() == pytest.approx([phi_mut0, 1.0])
    assert smc_alpha(qs, qt, qf, 2, mode="constant", constant=0.3).tolist() == [0.3, 0.3]
    assert smc_alpha(qs, qt, qf, 2, mode="linear", progress=0.25).tolist() == [0.25, 0.25]
    # torch inputs work too
    assert smc_alpha(*(torch.from_numpy(x) for x in (qs, qt, qf)), 2).tolist() == pytest.approx(
        got.tolist()
    )
    with pytest.raises(ValueError, match="mode"):
        smc_alpha(qs, qt, qf, 2, mode="cps")


def test_smc_alpha_resolutions():
    qs, qt, qf = _alpha_case()
    # equal sizes: Φ_mut is the plain Φ
    qf4 = np.zeros_like(qt)
    qf4[0, 1:3, 1:3] = 1
    assert smc_alpha(qs, qt, qf4, 2, mode="mutual").tolist() == pytest.approx(
        phi(qt, qf4, 2).tolist()
    )
    # fm larger (8): the U-Net labels are nearest-upsampled (each pixel → 2×2 block)
    qf8 = np.zeros((2, 8, 8), np.int64)
    qf8[0, 2:6, 2:6] = 1
    up = np.stack([np.kron(q, np.ones((2, 2), np.int64)) for q in qt])
    assert smc_alpha(qs, qt, qf8, 2, mode="mutual").tolist() == pytest.approx(
        phi(up, qf8, 2).tolist()
    )
    # (2·4+1)/(16+16+1.001) for image 0: overlap of [0:4,0:4] and [2:6,2:6] is 4 pixels
    assert smc_alpha(qs, qt, qf8, 2, mode="mutual")[0] == pytest.approx(9 / 33.001)


@pytest.mark.parametrize("mode", ["smc", "self", "mutual", "constant", "linear"])
@pytest.mark.parametrize("phi_classes,k", [("plain", 2), ("plain", 4), ("fundus", 3)])
def test_smc_alpha_tensor_matches_numpy(mode, phi_classes, k):
    # the trainer's on-device α must equal the numpy reference, hand case and random maps,
    # at U-Net/foundation sizes that differ both ways
    qs, qt, qf = _alpha_case()
    t = [torch.from_numpy(x) for x in (qs, qt, qf)]
    got = smc_alpha_tensor(*t, 2, mode=mode, constant=0.3, progress=0.25)
    assert got.dtype == torch.float64
    assert got.tolist() == pytest.approx(
        smc_alpha(qs, qt, qf, 2, mode=mode, constant=0.3, progress=0.25).tolist(), abs=1e-12
    )
    gen = np.random.default_rng(k)
    for fm_size in (6, 12, 24):
        qs, qt = gen.integers(0, k, (3, 12, 12)), gen.integers(0, k, (3, 12, 12))
        qf = gen.integers(0, k, (3, fm_size, fm_size))
        qs[1] = 0  # an image with one empty map
        qt[2] = 0
        qf[2] = 0  # and one where both teachers are empty (Φ_mut = 1)
        ref = smc_alpha(qs, qt, qf, k, phi_classes, mode, 0.3, 0.25)
        got = smc_alpha_tensor(
            *(torch.from_numpy(x) for x in (qs, qt, qf)), k, phi_classes, mode, 0.3, 0.25
        )
        assert got.tolist() == pytest.approx(ref.tolist(), abs=1e-12)
    with pytest.raises(ValueError, match="mode"):
        smc_alpha_tensor(*t, 2, mode="cps")


def test_ensemble_thresholds_strict_equal_sizes():
    p_ut = torch.tensor([[1.0, 0.75], [0.0, 0.5]])
    p_fm = torch.tensor([[0.75, 0.75], [0.25, 0.25]])

    def two(fg):
        return torch.stack([1 - fg, fg])[None]

    out = ensemble_pseudo_labels(two(p_ut), two(p_fm), np.array([0.5]), tau=0.75)
    # P_EN fg = [[.875,.75],[.125,.375]]; max = [[.875,.75],[.875,.625]]
    assert torch.equal(out["p_en"][0, 1], torch.tensor([[0.875, 0.75], [0.125, 0.375]]))
    assert out["pl_unet"].tolist() == [[[1, 1], [0, 0]]]
    assert out["w_unet"].tolist() == [[[1.0, 0.0], [1.0, 0.0]]]  # 0.75 is not > 0.75
    assert out["pl_fm"].tolist() == out["pl_unet"].tolist()
    assert out["w_fm"].tolist() == out["w_unet"].tolist()
    assert out["pl_unet"].dtype == torch.long and out["w_unet"].dtype == torch.float32


def test_ensemble_alpha_weights_and_resizing():
    # P = 4, R = 2, per-image α = [1, 0]
    p_ut = torch.zeros(2, 2, 4, 4)
    p_ut[:, 0] = 1.0  # U-Net teacher: all background, fully confident
    fm_fg = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    p_fm = torch.stack([1 - fm_fg, fm_fg])[None].repeat(2, 1, 1, 1)
    out = ensemble_pseudo_labels(p_ut, p_fm, torch.tensor([1.0, 0.0]), tau=0.8)
    assert torch.equal(out["p_en"][0], p_ut[0])  # α = 1 trusts the U-Net
    # α = 0: bilinear (align_corners=False) 2→4 of row [0, 1] is [0, .25, .75, 1]
    assert torch.allclose(out["p_en"][1, 1], torch.tensor([0.0, 0.25, 0.75, 1.0]).expand(4, 4))
    assert out["pl_unet"][1].tolist() == [[0, 0, 1, 1]] * 4
    assert out["w_unet"][1].tolist() == [[1.0, 0.0, 0.0, 1.0]] * 4
    # at R: bilinear 4→2 averages pixel pairs → fg [.125, .875]
    assert out["pl_fm"].shape == (2, 2, 2)
    assert out["pl_fm"][1].tolist() == [[0, 1], [0, 1]]
    assert out["w_fm"][1].tolist() == [[1.0, 1.0], [1.0, 1.0]]
    strict = ensemble_pseudo_labels(p_ut, p_fm, torch.tensor([1.0, 0.0]), tau=0.875)
    assert strict["w_fm"][1].tolist() == [[0.0, 0.0], [0.0, 0.0]]
    with pytest.raises(ValueError, match="alpha"):
        ensemble_pseudo_labels(p_ut, p_fm, [0.5], tau=0.8)
