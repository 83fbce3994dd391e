"""Issue 22: the U-Net everywhere first (``unet_first``), and encoding before training
(``encode_schedule="encode_first"``), in view-first cached runs with tiny models."""

from __future__ import annotations

import numpy as np
import pytest

from napari_synfoc.config import SynFoCConfig, make_config
from napari_synfoc.core import encoding_schedule
from napari_synfoc.core.events import Done, Encoding, Predictions, Step
from napari_synfoc.core.interactive import StackTask, train_on_stack

TINY = dict(
    foundation="tiny", fm_size=64, unet_size=64, unet_features=(4, 8, 16, 32, 64), device="cpu",
    precision="fp32", warmup_steps=1, warmup_unet_steps=1, first_predict_at=2,
)  # fmt: skip
if "encoder_runtime" in SynFoCConfig.__dataclass_fields__:  # issue 22's CPU runtime switch
    TINY["encoder_runtime"] = "torch"


def _task(z=12, size=40, seed=1):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    imgs, labs = [], []
    for _ in range(z):
        cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
        lab = ((yy - cy) ** 2 + (xx - cx) ** 2 < 64).astype(np.uint8)
        imgs.append((0.3 + 0.5 * lab + 0.05 * rng.standard_normal((size, size))).astype("f4"))
        labs.append(lab)
    labels = np.zeros((z, size, size), np.uint8)
    for i in (2, 9):
        labels[i] = labs[i]
    return StackTask(np.stack(imgs), labels, [2, 9])


def _run(cfg, view=6, **kw):
    return list(
        train_on_stack(
            _task(), cfg, view_slice=view, embed_cache_dir=None, encode_per_step=1, **kw
        )
    )


def test_scatter_into_writes_unet_rows_everywhere_and_fm_rows_where_ready():
    k, h = 2, 3
    un = np.stack([np.full((k, h, h), v, np.float32) for v in (0.1, 0.2, 0.3)])
    fm = np.stack([np.full((k, h, h), v, np.float32) for v in (0.5, 0.0, 0.7)])
    ev = Predictions(4, fm, un, slices=(1, 3, 4), n_slices=5, foundation_ready=(True, False, True))
    assert ev.covered() == [1, 3, 4]
    assert ev.foundation_slices() == [1, 4] and ev.unet_only_slices() == [3]
    fm_full = np.full((5, k, h, h), -1.0, np.float32)
    un_full = np.full((5, k, h, h), -1.0, np.float32)
    assert ev.scatter_into(fm_full, un_full) == [1, 4]  # the slices that now hold both
    assert un_full[:, 0, 0, 0].tolist() == pytest.approx([-1, 0.1, -1, 0.2, 0.3])
    assert fm_full[:, 0, 0, 0].tolist() == pytest.approx([-1, 0.5, -1, -1, 0.7])
    whole = Predictions(5, fm, un)  # no flags: every row holds both, as before
    assert whole.unet_only_slices() == [] and whole.foundation_slices() == [0, 1, 2]


def test_unet_first_predicts_every_slice_after_the_warm_up_nearest_the_view_first(monkeypatch):
    monkeypatch.setattr(encoding_schedule, "SWEEP_BATCH", 5)
    cfg = make_config("cpu-interactive", iterations=4, unet_first=True, **TINY)
    ev = _run(cfg.replace(encode_schedule="interleave"))
    assert isinstance(ev[-1], Done), ev[-1]
    first_step = next(i for i, e in enumerate(ev) if isinstance(e, Step))
    sweep = [e for e in ev[:first_step] if isinstance(e, Predictions)]
    encoded = max(e.done for e in ev[:first_step] if isinstance(e, Encoding))
    # 12 slices in batches of 5 around slice 6: {4..8}, {2, 3, 9, 10, 1}... every slice once
    assert [e.covered() for e in sweep] == [[4, 5, 6, 7, 8], [1, 2, 3, 9, 10], [0, 11]]
    assert all(e.iteration == 0 for e in sweep)
    ready = {z for e in sweep for z in e.foundation_slices()}
    only = {z for e in sweep for z in e.unet_only_slices()}
    assert ready | only == set(range(12)) and not ready & only
    assert {2, 6, 9} <= ready  # the labelled slices and the one in view are encoded first
    assert len(ready) <= encoded and only  # the rest waits for the encoder
    for e in sweep:
        np.testing.assert_allclose(e.unet_prob.sum(1), 1.0, atol=1e-5)
        for r, ok in enumerate(e.foundation_ready):
            if ok:
                np.testing.assert_allclose(e.fm_prob[r].sum(0), 1.0, atol=1e-5)
            else:
                assert not e.fm_prob[r].any()  # zeros: not a prediction
    # later events hand the foundation's slices over; the run's end holds both everywhere
    both = set(ready)
    for e in ev[first_step:]:
        if isinstance(e, Predictions):
            both |= set(e.foundation_slices())
    assert both == set(range(12))
    # the run's end: both models on every slice, SWEEP_BATCH slices per event, nearest the view
    # first (never one whole-volume array: issue 22, memory at scale)
    end = []
    for e in reversed(ev[:-1]):  # the events before Done
        if not isinstance(e, Predictions) or e.iteration != 4:
            break
        end.insert(0, e)
    assert [e.covered() for e in end] == [[4, 5, 6, 7, 8], [1, 2, 3, 9, 10], [0, 11]]
    assert all(e.foundation_ready is None and e.n_slices == 12 for e in end)
    assert all(len(e.fm_prob) == len(e.slices) <= 5 for e in end)


def test_unet_only_rows_are_the_displayed_unets_prediction(tmp_path):
    """The U-Net-only path gives what the both-model prediction gives for the U-Net."""
    from napari_synfoc.core.data import samples_from_stack
    from napari_synfoc.core.trainer import SynFoCTrainer

    task = _task()
    lab, unl, _ = samples_from_stack(task.image, task.labels, task.labeled_slices)
    slices = [s.image for s in sorted(lab + unl, key=lambda s: int(s.name.split("_")[1]))]
    for teachers in (False, True):
        cfg = make_config("cpu-interactive", iterations=2, display_teachers=teachers, **TINY)
        tr = SynFoCTrainer(cfg, lab, unl, out_dir=tmp_path, predict_images=slices)
        _, un = tr.predict(slices)
        np.testing.assert_allclose(tr.predict_unet_slices(range(12)), un, atol=1e-6)


@pytest.mark.slow
def test_encode_first_covers_the_volume_before_iteration_zero():
    cfg = make_config("cpu-interactive", iterations=3, unet_first=True, **TINY)
    ev = _run(cfg.replace(encode_schedule="encode_first"))
    assert isinstance(ev[-1], Done), ev[-1]
    first_step = next(i for i, e in enumerate(ev) if isinstance(e, Step))
    enc = [e for e in ev if isinstance(e, Encoding)]
    assert enc[-1].done == enc[-1].total and ev.index(enc[-1]) < first_step
    both: set[int] = set()
    for e in ev[:first_step]:
        if isinstance(e, Predictions):
            both |= set(e.foundation_slices())
    assert both == set(range(12))  # every slice shown with both models before training
    # interleave: after the warm-up only part of the volume is encoded
    inter = _run(cfg.replace(encode_schedule="interleave"))
    first = next(i for i, e in enumerate(inter) if isinstance(e, Step))
    enc0 = [e for e in inter[:first] if isinstance(e, Encoding)]
    assert enc0[-1].done < enc0[-1].total


def test_cancel_during_encode_first_stops_before_training(monkeypatch):
    monkeypatch.setattr(encoding_schedule, "ENCODE_REFRESH", 2)
    cfg = make_config("cpu-interactive", iterations=3, **TINY)
    seen = {"enc": 0}

    def stop():
        return seen["enc"] >= 3

    events = []
    gen = train_on_stack(
        _task(), cfg.replace(encode_schedule="encode_first"), should_stop=stop, view_slice=6,
        embed_cache_dir=None, encode_per_step=1,
    )  # fmt: skip
    for e in gen:
        events.append(e)
        if isinstance(e, Encoding):
            seen["enc"] += 1
    assert type(events[-1]).__name__ == "Cancelled" and events[-1].iteration == 0
    assert not [e for e in events if isinstance(e, Step)]
    enc = [e for e in events if isinstance(e, Encoding)]
    assert enc[-1].done < enc[-1].total  # the encoder stopped with the volume half done
