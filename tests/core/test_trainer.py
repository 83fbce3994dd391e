"""The training engine end to end with tiny models on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.common import FAZ_ROOT as FAZ
from napari_synfoc.config import make_config
from napari_synfoc.core.events import (
    Cancelled,
    CheckpointSaved,
    Done,
    Failed,
    Predictions,
    Started,
    Step,
)
from napari_synfoc.core.interactive import StackTask, train_on_stack


def _disc_stack(z=6, size=64, seed=0):
    """A stack of noisy discs of varying radius: learnable in a few iterations."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    imgs, labs = [], []
    for _ in range(z):
        cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
        r = rng.integers(size // 8, size // 4)
        lab = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.uint8)
        img = 0.3 + 0.5 * lab + 0.05 * rng.standard_normal((size, size))
        imgs.append(img.astype(np.float32))
        labs.append(lab)
    return np.stack(imgs), np.stack(labs)


def _events(gen):
    return list(gen)


def test_train_on_stack_runs_and_predicts(tmp_path):
    img, lab = _disc_stack()
    labels = np.zeros_like(lab)
    labels[[0, 2]] = lab[[0, 2]]
    task = StackTask(img, labels, [0, 2])
    cfg = make_config("tiny", iterations=6)
    ev = _events(train_on_stack(task, cfg, out_dir=tmp_path, predict_every=3))
    assert isinstance(ev[0], Started)
    steps = [e for e in ev if isinstance(e, Step)]
    assert [s.iteration for s in steps] == list(range(6))
    for s in steps:
        for key in ("loss", "sup_unet", "sup_fm", "unsup_unet", "unsup_fm", "l_c", "l_d"):
            assert np.isfinite(s.losses[key]), key
        assert 0.0 <= s.alpha <= 1.0
        assert 0.0 <= s.confident_fraction <= 1.0
    preds = [e for e in ev if isinstance(e, Predictions)]
    # every 3 iterations, the early overlay at cfg.first_predict_at (5), and the end
    assert [p.iteration for p in preds] == [3, 5, 6]
    for p in preds:
        assert p.fm_prob.shape == (6, 2, 64, 64) and p.unet_prob.shape == (6, 2, 64, 64)
        np.testing.assert_allclose(p.fm_prob.sum(1), 1.0, atol=1e-4)
    assert isinstance(ev[-1], Done)
    assert Path(ev[-1].checkpoint).is_file()


@pytest.mark.slow
def test_deterministic_for_a_seed(tmp_path):
    img, lab = _disc_stack()
    task = StackTask(img, lab, [0, 1])
    cfg = make_config("tiny", iterations=4, seed=7, device="cpu")  # bitwise: CPU kernels
    a = [
        e.losses["loss"]
        for e in train_on_stack(task, cfg, out_dir=tmp_path / "a")
        if isinstance(e, Step)
    ]
    b = [
        e.losses["loss"]
        for e in train_on_stack(task, cfg, out_dir=tmp_path / "b")
        if isinstance(e, Step)
    ]
    assert a == b
    c = [
        e.losses["loss"]
        for e in train_on_stack(task, cfg.replace(seed=8), out_dir=tmp_path / "c")
        if isinstance(e, Step)
    ]
    assert c != a


def test_cancel_stops_within_one_iteration(tmp_path):
    img, lab = _disc_stack()
    task = StackTask(img, lab, [0])
    n = {"steps": 0}

    def stop():
        return n["steps"] >= 2

    events = []
    for e in train_on_stack(
        task, make_config("tiny", iterations=50), should_stop=stop, out_dir=tmp_path
    ):
        events.append(e)
        if isinstance(e, Step):
            n["steps"] += 1
    assert n["steps"] == 2
    assert isinstance(events[-1], Cancelled)
    assert events[-1].iteration == 2 and Path(events[-1].checkpoint).is_file()


@pytest.mark.slow
def test_warm_start_from_checkpoint(tmp_path):
    img, lab = _disc_stack()
    task = StackTask(img, lab, [0, 1])
    first = _events(
        train_on_stack(task, make_config("tiny", iterations=3), out_dir=tmp_path / "a")
    )
    ck = first[-1].checkpoint
    second = _events(
        train_on_stack(
            task, make_config("tiny", iterations=2), init_checkpoint=ck, out_dir=tmp_path / "b"
        )
    )
    assert isinstance(second[-1], Done)
    # the warm-started U-Net predicts like the saved one at the start of the new run
    p_first = [e for e in first if isinstance(e, Predictions)][-1]
    assert p_first.unet_prob.shape[0] == 6


def test_bad_input_gives_clear_failures(tmp_path):
    img, lab = _disc_stack()
    # no labelled slice
    ev = _events(train_on_stack(StackTask(img, lab, []), make_config("tiny", iterations=2)))
    assert isinstance(ev[-1], Failed) and "no labelled slice" in ev[-1].message
    # labels of another shape
    ev = _events(
        train_on_stack(StackTask(img, lab[:, :32], [0]), make_config("tiny", iterations=2))
    )
    assert isinstance(ev[-1], Failed) and "shape" in ev[-1].message
    # corrupt checkpoint
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    ev = _events(
        train_on_stack(
            StackTask(img, lab, [0]), make_config("tiny", iterations=2), init_checkpoint=bad
        )
    )
    assert isinstance(ev[-1], Failed) and "bad.pt" in ev[-1].message


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    img, lab = _disc_stack()
    cfg = make_config("tiny", iterations=40, unet_lr=1e12, checkpoint_every=1)
    ev = _events(train_on_stack(StackTask(img, lab, [0, 1]), cfg, out_dir=tmp_path))
    assert isinstance(ev[-1], Failed), ev[-1]
    assert "loss became" in ev[-1].message
    saved = [e for e in ev if isinstance(e, CheckpointSaved)]
    assert saved and ev[-1].checkpoint == saved[-1].path and Path(saved[-1].path).is_file()


def test_out_of_memory_message_suggests_lighter_setting(tmp_path, monkeypatch):
    from napari_synfoc.core import trainer as trainer_mod

    def boom(self, lab, unl):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainer_mod.SynFoCTrainer, "train_step", boom)
    img, lab = _disc_stack()
    ev = _events(
        train_on_stack(
            StackTask(img, lab, [0]), make_config("tiny", iterations=3), out_dir=tmp_path
        )
    )
    assert isinstance(ev[-1], Failed)
    assert "out of memory" in ev[-1].message and "lighter" in ev[-1].message


@pytest.mark.slow
def test_suponly_and_ablations_run(tmp_path):
    img, lab = _disc_stack()
    task = StackTask(img, lab, [0, 1])
    for over in ({"suponly": True}, {"use_smc": False}, {"use_cdcr": False}):
        ev = _events(
            train_on_stack(task, make_config("tiny", iterations=2, **over), out_dir=tmp_path)
        )
        assert isinstance(ev[-1], Done), (over, ev[-1])
        steps = [e for e in ev if isinstance(e, Step)]
        if over.get("suponly"):
            assert "unsup_unet" not in steps[0].losses
        if over.get("use_cdcr") is False:
            assert steps[0].losses["l_c"] == 0.0 and steps[0].losses["l_d"] == 0.0


@pytest.mark.slow
def test_losses_fall_on_real_faz_images(tmp_path):
    """A short end-to-end run on FAZ images (tiny models at 64 px): the supervised loss falls."""
    from napari_synfoc.core.layouts import discover, make_ssl_split
    from napari_synfoc.core.trainer import SynFoCTrainer

    split = discover(FAZ)
    labeled, unlabeled = make_ssl_split(split, "Domain1", 4)
    unlabeled = [s for s in unlabeled if s.domain in ("Domain2", "Domain5")][:8]
    cfg = make_config(
        "tiny", iterations=60, num_classes=2, in_channels=1, unet_lr=0.01, fm_lr=1e-3
    )
    tr = SynFoCTrainer(cfg, labeled, unlabeled, out_dir=tmp_path)
    sup = [e.losses["sup_unet"] + e.losses["sup_fm"] for e in tr.run() if isinstance(e, Step)]
    assert len(sup) == 60
    assert np.mean(sup[-10:]) < 0.8 * np.mean(sup[:10]), (np.mean(sup[:10]), np.mean(sup[-10:]))


def test_validation_model_selection_keeps_best_states(tmp_path):
    """model_selection="val" holds out labelled slices and restores each student's best state."""
    from napari_synfoc.core.checkpoint import load_checkpoint

    img, lab = _disc_stack(z=6)
    task = StackTask(img, lab, [0, 1, 2, 3])
    cfg = make_config("tiny", iterations=4, model_selection="val", val_fraction=0.25, val_every=2)
    ev = _events(train_on_stack(task, cfg, out_dir=tmp_path))
    assert isinstance(ev[-1], Done), ev[-1]
    state = load_checkpoint(ev[-1].checkpoint)
    assert [v["iteration"] for v in state["validation"]] == [2, 4]
    best = max(state["validation"], key=lambda v: v["unet"])
    assert state["best_iteration"]["unet"] == best["iteration"]
    assert 0.0 <= best["unet"] <= 1.0 and 0.0 <= best["fm"] <= 1.0
    too_few = _events(train_on_stack(StackTask(img, lab, [0]), cfg, out_dir=tmp_path / "b"))
    assert isinstance(too_few[-1], Failed) and "at least 2 labelled" in too_few[-1].message


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_upstream_way_and_fast_way_train_alike(tmp_path):
    # fp16 + grad scaler eager (upstream) vs bf16 + channels-last + fused attention + loader
    # workers: same seed, same batches → the first loss agrees to mixed-precision tolerance,
    # and both keep training with finite losses
    from napari_synfoc.core.data import infinite_loader, samples_from_stack
    from napari_synfoc.core.trainer import SynFoCTrainer

    img, lab = _disc_stack(z=8)
    labels = np.zeros_like(lab)
    labels[[0, 2, 4]] = lab[[0, 2, 4]]
    lab_s, unl_s, _ = samples_from_stack(img, labels, [0, 2, 4])
    first = {}
    for name, over in {
        "upstream": dict(precision="fp16", num_workers=0),
        "fast": dict(precision="bf16", channels_last=True, fused_attention=True, num_workers=2),
    }.items():
        cfg = make_config("tiny", device="cuda", iterations=100, **over)
        tr = SynFoCTrainer(cfg, lab_s, unl_s)
        assert tr.device.type == "cuda"
        assert (tr.scaler is not None) == (name == "upstream")
        li = infinite_loader(
            tr.labeled_ds, cfg.batch_labeled, cfg.seed, cfg.num_workers, pin_memory=True
        )
        ui = infinite_loader(
            tr.unlabeled_ds, cfg.batch_unlabeled, cfg.seed + 7, cfg.num_workers, pin_memory=True
        )
        losses = [tr.train_step(next(li), next(ui))["loss"] for _ in range(4)]
        assert all(np.isfinite(losses)), (name, losses)
        first[name] = losses[0]
    assert first["fast"] == pytest.approx(first["upstream"], rel=0.05)


def test_compiled_trainer_builds_and_keeps_its_modules():
    # torch.compile wraps the passes, never the modules that are saved, EMA'd and predicted with
    import torch

    from napari_synfoc.core.data import samples_from_stack
    from napari_synfoc.core.trainer import SynFoCTrainer

    img, lab = _disc_stack(z=4)
    lab_s, unl_s, _ = samples_from_stack(img, lab, [0, 1])
    tr = SynFoCTrainer(make_config("tiny", compile=True, device="cpu"), lab_s, unl_s)
    for fn in (tr.unet_pair, tr.fm_pair, tr.unet_teacher_fn, tr.fm_teacher_fn, tr.unet_weak_fn):
        assert isinstance(fn, torch._dynamo.eval_frame.OptimizedModule)
    assert not isinstance(tr.unet, torch._dynamo.eval_frame.OptimizedModule)
    assert (
        tr.unet_teacher_fn._orig_mod is tr.unet_teacher
        and tr.fm_teacher_fn._orig_mod is tr.fm_teacher
    )


@pytest.mark.slow
def test_supervised_warm_up_before_iteration_zero(tmp_path):
    """warmup_steps (interactive departure): N supervised steps before iteration 0, reported as
    Progress, that leave the iteration count and schedule alone and hand the students to the
    teachers; none on a warm start or for a strategy with its own step."""
    import torch

    from napari_synfoc.core.data import samples_from_stack
    from napari_synfoc.core.events import Progress
    from napari_synfoc.core.trainer import SynFoCTrainer

    img, lab = _disc_stack(z=4)
    lab_s, unl_s, _ = samples_from_stack(img, lab, [0, 1])
    cfg = make_config("tiny", iterations=2, warmup_steps=3, warmup_unet_steps=2, device="cpu")
    tr = SynFoCTrainer(cfg, lab_s, unl_s, out_dir=tmp_path / "a")
    init = {k: v.clone() for k, v in tr.unet.state_dict().items()}
    calls = {"both": 0, "unet": 0}
    step, unet_step = tr.train_step, tr._unet_warm_step

    def count_step(*a, **kw):
        calls["both"] += 1
        return step(*a, **kw)

    def count_unet(*a, **kw):
        calls["unet"] += 1
        return unet_step(*a, **kw)

    tr.train_step, tr._unet_warm_step = count_step, count_unet
    from napari_synfoc.core.data import infinite_loader

    warm = list(tr._warm_up(infinite_loader(tr.labeled_ds, 2, 0, 0), False, lambda: False))
    assert [(e.done, e.total) for e in warm] == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert calls == {"both": 3, "unet": 2}  # both students first, then the U-Net alone
    assert all(isinstance(e, Progress) and "Warming up" in e.message for e in warm)
    assert tr.iteration == 0  # the schedule (lr, lambda, EMA decay) starts after the warm-up
    trained = tr.unet.state_dict()
    assert any(not torch.equal(init[k], trained[k]) for k in init if init[k].is_floating_point())
    for (_, tp), (_, sp) in zip(
        tr.unet_teacher.named_parameters(), tr.unet.named_parameters(), strict=True
    ):
        assert torch.equal(tp, sp)  # EMA at t = 0 copies the student
    for (_, tb), (_, sb) in zip(tr.unet_teacher.named_buffers(), tr.unet.named_buffers()):
        assert torch.equal(tb, sb)  # and the BatchNorm statistics follow
    assert any(
        not torch.equal(b, init[n]) for n, b in tr.unet.named_buffers() if "running_mean" in n
    )
    for (_, tp), (_, sp) in zip(
        tr.fm_teacher.named_parameters(), tr.fm_student.named_parameters(), strict=True
    ):
        assert torch.equal(tp, sp)
    # through a run: warm-up events first, then iterations 0..1 as without it
    task = StackTask(img, lab, [0, 1])
    ev = _events(train_on_stack(task, cfg, out_dir=tmp_path / "b"))
    kinds = [type(e).__name__ for e in ev]
    first_step = kinds.index("Step")
    warm_ev = [e for e in ev[:first_step] if isinstance(e, Progress) and "Warming" in e.message]
    assert len(warm_ev) == 5 and [e.iteration for e in ev if isinstance(e, Step)] == [0, 1]
    assert isinstance(ev[-1], Done) and ev[-1].iteration == 2
    # the dock's view-first path shows the warmed-up models before iteration 1
    cached = cfg.replace(freeze_encoder=True, cache_embeddings=True, lora_targets="none")
    view = _events(train_on_stack(task, cached, view_slice=2, out_dir=tmp_path / "v"))
    kinds = [type(e).__name__ for e in view]
    early = view[kinds.index("Predictions")]
    assert early.iteration == 0 and kinds.index("Predictions") < kinds.index("Step")
    assert 2 in early.covered() and {0, 1} <= set(early.covered())
    # a warm start and a prompted strategy do not warm up
    again = _events(
        train_on_stack(task, cfg, init_checkpoint=ev[-1].checkpoint, out_dir=tmp_path / "c")
    )
    prompted = cfg.replace(
        strategy="uncol", freeze_encoder=True, cache_embeddings=True, lora_targets="none"
    )
    uncol = _events(train_on_stack(task, prompted, out_dir=tmp_path / "d"))
    for run in (again, uncol):
        assert isinstance(run[-1], Done), run[-1]
        assert not [e for e in run if isinstance(e, Progress) and "Warming" in e.message]


def test_display_teachers_shows_and_saves_the_ema_teachers(tmp_path):
    """display_teachers: overlays (trainer.predict) and a saved run's Predict (load_trained) use
    the EMA teachers; off (the paper's way), the students."""
    import torch

    from napari_synfoc.core.data import samples_from_stack
    from napari_synfoc.core.inference import predict_probabilities
    from napari_synfoc.core.interactive import load_trained
    from napari_synfoc.core.trainer import SynFoCTrainer

    img, lab = _disc_stack(z=4)
    lab_s, unl_s, _ = samples_from_stack(img, lab, [0, 1])
    images = [img[i][None] for i in range(4)]
    for teachers in (False, True):
        cfg = make_config("tiny", iterations=2, device="cpu", display_teachers=teachers)
        tr = SynFoCTrainer(cfg, lab_s, unl_s, out_dir=tmp_path / str(teachers))
        with torch.no_grad():  # make the pairs differ
            for p in tr.unet_teacher.parameters():
                p.add_(0.05)
        fm_p, un_p = tr.predict(images)
        want_u = tr.unet_teacher if teachers else tr.unet
        want_f = tr.fm_teacher if teachers else tr.fm_student
        exp_f, exp_u = predict_probabilities(want_u, want_f, images, tr.P, tr.device, "fp32")
        np.testing.assert_allclose(un_p, exp_u, atol=1e-6)
        np.testing.assert_allclose(fm_p, exp_f, atol=1e-6)
        other_u = tr.unet if teachers else tr.unet_teacher
        _, wrong_u = predict_probabilities(other_u, want_f, images, tr.P, tr.device, "fp32")
        assert not np.allclose(un_p, wrong_u, atol=1e-4)
        _, unet, _, _, _ = load_trained(tr.save(tmp_path / f"{teachers}.pt"), "cpu")
        src = tr.unet_teacher if teachers else tr.unet
        for a, b in zip(unet.parameters(), src.parameters(), strict=True):
            assert torch.equal(a, b.cpu())


def test_display_teachers_leaves_the_other_strategies_on_their_students(tmp_path):
    """IFL keeps no EMA teacher (and the other strategies were measured on their students):
    with display_teachers they still show and save-predict the U-Net student."""
    import torch

    from napari_synfoc.core.data import samples_from_stack
    from napari_synfoc.core.inference import predict_probabilities
    from napari_synfoc.core.interactive import load_trained
    from napari_synfoc.core.trainer import SynFoCTrainer

    img, lab = _disc_stack(z=4)
    lab_s, unl_s, _ = samples_from_stack(img, lab, [0, 1])
    images = [img[i][None] for i in range(4)]
    cfg = make_config(
        "tiny", iterations=2, device="cpu", display_teachers=True, strategy="ifl",
        freeze_encoder=True, cache_embeddings=True, lora_targets="none",
    )  # fmt: skip
    tr = SynFoCTrainer(cfg, lab_s, unl_s, out_dir=tmp_path)
    with torch.no_grad():
        for p in tr.unet_teacher.parameters():
            p.add_(0.05)
    _, un_p = tr.predict(images)
    _, exp_u = predict_probabilities(tr.unet, tr.fm_student, images, tr.P, tr.device, "fp32")
    np.testing.assert_allclose(un_p, exp_u, atol=1e-6)
    _, unet, _, _, _ = load_trained(tr.save(tmp_path / "ifl.pt"), "cpu")
    for a, b in zip(unet.parameters(), tr.unet.parameters(), strict=True):
        assert torch.equal(a, b.cpu())
