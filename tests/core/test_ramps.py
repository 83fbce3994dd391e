"""λ(t) ramp (spec §2.6) and the learning-rate factor."""

from __future__ import annotations

import math

import pytest

from napari_synfoc.core.ramps import consistency_weight, lr_factor


def test_lambda_at_fractions_of_the_run():
    T = 30000
    assert consistency_weight(0, T) == pytest.approx(math.exp(-5))
    assert consistency_weight(0, T) == pytest.approx(0.0067, abs=1e-4)
    assert consistency_weight(T // 4, T) == pytest.approx(0.060, abs=1e-3)
    assert consistency_weight(T // 2, T) == pytest.approx(math.exp(-1.25))
    assert consistency_weight(T // 2, T) == pytest.approx(0.287, abs=1e-3)
    assert consistency_weight(3 * T // 4, T) == pytest.approx(0.732, abs=1e-3)
    assert consistency_weight(T, T) == 1.0
    assert consistency_weight(T + 500, T) == 1.0
    # last 0-based iteration: s = 199
    assert consistency_weight(T - 1, T) == pytest.approx(math.exp(-5 * (1 / 200) ** 2))


def test_lambda_quantised_steps_and_scale():
    T = 30000  # step length 150 iterations
    assert consistency_weight(149, T) == consistency_weight(0, T)
    assert consistency_weight(150, T) == pytest.approx(math.exp(-5 * (1 - 1 / 200) ** 2))
    assert consistency_weight(T // 2, T, lam_max=2.0) == pytest.approx(2 * math.exp(-1.25))
    assert consistency_weight(10, T, steps=0) == 1.0
    # matches upstream's float expression for real run lengths
    for T in (30000, 60000, 1000, 500, 300):
        for t in range(0, T, 7):
            s = min(t // (T / 200), 200)
            assert consistency_weight(t, T) == pytest.approx(
                math.exp(-5 * (1 - s / 200) ** 2), abs=1e-12
            )


def test_lambda_short_runs():
    T = 100  # max_iter < steps
    assert consistency_weight(0, T) == pytest.approx(math.exp(-5))
    assert consistency_weight(50, T) == pytest.approx(math.exp(-1.25))
    assert consistency_weight(100, T) == 1.0
    assert consistency_weight(7, 10) == pytest.approx(math.exp(-5 * 0.3**2))  # s = 140
    with pytest.raises(ValueError, match="max_iter"):
        consistency_weight(0, 0)


def test_lr_factor():
    assert lr_factor(123, 1000) == 1.0
    assert lr_factor(0, 1000, "poly", warmup=250) == pytest.approx(1 / 250)
    assert lr_factor(249, 1000, "poly", warmup=250) == pytest.approx(1.0)
    assert lr_factor(250, 1000, "poly", warmup=250) == pytest.approx(0.75**0.9)
    assert lr_factor(500, 1000, "poly", warmup=0) == pytest.approx(0.5**0.9)
    assert lr_factor(1000, 1000, "poly") == 0.0
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(0, 10, "cosine")


@pytest.mark.slow
def test_ramp_length_sets_the_trainers_lambda_schedule(tmp_path):
    """``ramp_length`` (interactive lever): lambda reaches lam_max after that many iterations
    instead of at the end of the run; 0 keeps the paper's whole-run ramp."""
    import numpy as np

    from napari_synfoc.config import make_config
    from napari_synfoc.core.events import Step
    from napari_synfoc.core.interactive import StackTask, train_on_stack

    rng = np.random.default_rng(0)
    img = rng.random((4, 32, 32)).astype(np.float32)
    lab = (img > 0.5).astype(np.uint8)
    labels = np.zeros_like(lab)
    labels[0] = lab[0]
    task = StackTask(img, labels, [0])

    def lambdas(**over):
        cfg = make_config("tiny", iterations=4, fm_size=32, unet_size=32, **over)
        evs = train_on_stack(task, cfg, out_dir=tmp_path / str(over))
        return [e.lam for e in evs if isinstance(e, Step)]

    # ramp over 2 iterations, 200 steps: s = t*200//2 -> 0, 100, 200, 200
    e5, e125 = np.exp(-5.0), np.exp(-1.25)
    np.testing.assert_allclose(lambdas(ramp_length=2), [e5, e125, 1.0, 1.0], rtol=1e-6)
    # the paper's ramp over the whole run (4 iterations): s = 0, 50, 100, 150
    whole = [np.exp(-5 * (1 - s / 200) ** 2) for s in (0, 50, 100, 150)]
    np.testing.assert_allclose(lambdas(), whole, rtol=1e-6)
