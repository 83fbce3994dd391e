"""The robot annotator end to end (benchmarks.effort) with tiny random models on a small
synthetic volume: every policy runs through the controller and ends finished or capped, with
the counts adding up and the report written."""

import json
from dataclasses import replace

import numpy as np
import pytest

from benchmarks import effort as E
from benchmarks import effort_rules as R


def _volume() -> E.Volume:
    rng = np.random.default_rng(0)
    z, n = 10, 64
    yy, xx = np.mgrid[0:n, 0:n]
    img = rng.normal(0, 10, (z, n, n)).astype(np.float32) + 100
    ref = np.zeros((z, n, n), np.uint8)
    for k in range(2, 8):  # a disc on slices 2..7, growing then shrinking
        r = 8 + 3 * min(k - 2, 7 - k)
        disc = (yy - 30) ** 2 + (xx - 34) ** 2 <= r * r
        img[k][disc] += 120
        ref[k][disc] = 1
    return E.Volume("synthetic", img.astype(np.int16), ref, 2)


def _segmenter():
    from napari_synfoc.core.prompting import PromptSegmenter

    return PromptSegmenter("tiny", size=64, seed=0, precision="fp32")


def _settings(**kw) -> E.Settings:
    base = dict(
        profile="tiny", device="cpu", iterations=2, per_round=2, rounds=2, init_slices=2,
        key_every=3, clicks=0, max_minutes=5.0, backend="sync",
    )  # fmt: skip
    base.update(kw)
    return E.Settings(**base)


def _check(res: dict) -> dict:
    assert res["finished"], res["outcome"]
    assert res["failing_slices"] == 0
    counts = res["counts"]
    assert res["interactions"] == sum(counts.values())
    # the curve's running total never goes down and ends at the total
    totals = [r["interactions"] for r in res["records"]]
    assert totals == sorted(totals) and totals[-1] == res["interactions"]
    return counts


def test_robot_smoke_every_kind_of_policy(tmp_path):
    """boxes, propagate and the loop (ranking) on 10 slices with tiny random models."""
    vol = _volume()
    quiet = lambda *_: None  # noqa: E731
    counts = _check(E.run_policy(vol, "boxes", _settings(), _segmenter, log=quiet))
    # six slices hold the disc: one box each, no click (clicks=0), no accept
    assert counts["box"] == 6 and counts["click"] == 0
    assert counts["accept"] == counts["accept_many"] == 0
    counts = _check(E.run_policy(vol, "propagate", _settings(), _segmenter, log=quiet))
    # key slices 0, 3, 6, 9: the disc is on 3 and 6 -> two boxes, one accept of the proposals
    assert counts["box"] == 2 and counts["accept_many"] == 1
    res = E.run_policy(vol, "loop", _settings(state_dir=str(tmp_path)), _segmenter, log=quiet)
    counts = _check(res)
    # the state before the final sweep was saved: the labels then, and the ensemble's labels
    saved = np.load(tmp_path / "synthetic-loop-s0.npz")
    assert saved["labels"].shape == saved["ensemble"].shape == vol.ref.shape
    assert set(np.unique(saved["labels"])) <= {0, 1} and saved["labels"].any()
    before = set(saved["labeled_before_proposals"])  # the slices labelled before the proposals
    assert before and before < set(range(len(vol.ref)))
    # and what the quality estimate saw at the end of the first run
    q = np.load(tmp_path / "quality" / "synthetic-loop-s0.npz")
    assert q["agreement"].shape == (len(vol.ref), 1) and q["fm"].shape == vol.ref.shape
    assert len(q["labeled"]) >= 2 and set(q["trained"]) <= set(q["labeled"])
    # slices 3 and 7 (init_slices(10, 2)) hold the disc: boxed, then at most 2 runs
    assert counts["box"] == 2 and 1 <= res["training_runs"] <= 2
    q = res["notes"]["first_run_quality"]
    # measured when the first run has ended; with the sync backend the robot has by then also
    # fixed its per_round=2 ranked slices: 10 - 2 boxed - 2 visited unlabelled slices remain
    assert 0.0 <= q["mae_all"] <= 1.0 and q["n_unlabelled"] == 6
    assert 0 <= q["missed_class_slices"] <= q["n_unlabelled"]
    # the last step: the models' proposals on every unlabelled slice, one accept for the class
    events = [r["event"] for r in res["records"]]
    assert any(e.startswith("proposals from the models, class 1") for e in events)
    assert counts["accept_many"] >= 1
    # the slices accepted above q are checked before the proposals fill between labelled slices
    first = next(i for i, e in enumerate(events) if e.startswith("proposals from the models"))
    assert events.index("checked the accepted slices") < first
    assert len(res["notes"]["interpolated_slices"]) == 1  # how many the fill took, per class


def test_loop_with_the_ensemble_instead_of_proposals():
    res = E.run_policy(
        _volume(), "loop", _settings(rounds=1, proposals="ensemble"), _segmenter,
        log=lambda *_: None,
    )  # fmt: skip
    _check(res)
    events = [r["event"] for r in res["records"]]
    assert not any(e.startswith("proposals from the models") for e in events)
    assert res["training_runs"] == 1


def test_interaction_cap_stops_a_run():
    vol = _volume()
    res = E.run_policy(vol, "boxes", _settings(max_interactions=3), _segmenter, log=print)
    assert res["interactions"] == 4  # the action that crossed the cap is counted
    assert res["outcome"].startswith("capped: interaction cap 3")
    assert not res["finished"]


def test_report_files(tmp_path):
    vol = _volume()
    res = E.run_policy(vol, "boxes", _settings(), _segmenter, log=lambda *_: None)
    data = {
        "command": "test", "machine": "test", "loadavg_start": [0, 0, 0],
        "reference_encoder_s": 1.5, "baseline_interactions": {"synthetic": res["interactions"]},
        "runs": [res],
    }  # fmt: skip
    E.write_outputs(tmp_path, data)
    back = json.loads((tmp_path / "effort.json").read_text())
    assert back["runs"][0]["interactions"] == res["interactions"]
    md = (tmp_path / "effort.md").read_text()
    assert "| synthetic | boxes | 0 |" in md and "100 %" in md
    assert (tmp_path / "effort.png").stat().st_size > 0


def test_init_slices_and_volume_checks(tmp_path):
    assert E.init_slices(164, 3) == [41, 82, 123]
    assert E.init_slices(4, 3) == [1, 2, 3]
    assert R.interaction_cap(10, 3.0) == 30
    with pytest.raises(ValueError, match="unknown volume"):
        E.named_volume("XYZ")


def test_the_robot_trains_with_the_docks_run_length(monkeypatch):
    """Iterations left to the dock: the profile's run length (its spin box), never the config's
    30000-iteration default (the robot's loop once ran such runs and never finished one)."""
    from napari_synfoc import config

    robot = E.Robot(_volume(), _settings(iterations=None, seed=2), _segmenter)
    got = []
    monkeypatch.setattr(robot.ctl, "start_run", lambda req: got.append(req) or True)
    monkeypatch.setitem(  # a profile whose Retrain length differs from its run length
        config.PROFILES, "tiny", replace(config.PROFILES["tiny"], retrain_iterations=5)
    )
    robot.labels[3] = robot.vol.ref[3]
    robot.train(warm=False)
    robot.train(warm=True)
    robot.train(warm=True, iterations=7)
    assert [r.params["iterations"] for r in got] == [20, 5, 7]
    assert robot.notes["run_iterations"] == [20, 5, 7]
    # seed s trains with the dock's seed + s (seed 0: exactly the dock's run)
    assert {r.params["overrides"]["seed"] for r in got} == {config.SynFoCConfig().seed + 2}
    robot.ctl.cleanup()


def test_merge_joins_runs_and_takes_the_baseline_from_boxes(tmp_path):
    vol = _volume()
    quiet = lambda *_: None  # noqa: E731
    folders = []
    for policy, r in (("boxes", 1.5), ("propagate", 1.7)):
        res = E.run_policy(vol, policy, _settings(), _segmenter, log=quiet)
        data = {
            "command": policy, "machine": "test", "loadavg_start": [0, 0, 0],
            "reference_encoder_s": r, "baseline_interactions": {}, "runs": [res],
        }  # fmt: skip
        E.write_outputs(tmp_path / policy, data)
        folders.append(str(tmp_path / policy))
    merged = E.merge(tmp_path / "all", folders, "merge")
    assert [r["policy"] for r in merged["runs"]] == ["boxes", "propagate"]
    assert merged["baseline_interactions"] == {"synthetic": merged["runs"][0]["interactions"]}
    assert merged["reference_encoder_s"] == 1.7 and merged["reference_encoder_s_each"] == [
        1.5,
        1.7,
    ]
    assert "| synthetic | propagate |" in (tmp_path / "all" / "effort.md").read_text()
    with pytest.raises(ValueError, match="at least one folder"):
        E.merge(tmp_path / "none", [], "merge")


def test_fill_between_follows_the_flag_or_the_readme_for_stacks():
    vol = _volume()
    assert E.fill_choice(None, vol) is None  # a volume: the dock's default (ticked)
    assert E.fill_choice("off", vol) is False and E.fill_choice("on", vol) is True
    stack = replace(vol, stack=True)  # separate images (S40, S200): unticked
    assert E.fill_choice(None, stack) is False and E.fill_choice("on", stack) is True


def test_the_robots_ranking_spreads_in_z_as_the_fill_box_says():
    """The dock ranks with the z spread while the fill box is ticked; the robot does the same
    (a stack: both off), unless ``z_spread`` says otherwise."""
    vol = _volume()
    cases = ((None, None, True), (False, None, False), (None, False, False), (False, True, True))
    for fill, spread, want in cases:
        robot = E.Robot(vol, _settings(fill_between=fill, z_spread=spread), _segmenter)
        assert robot.ctl.review.z_spread is want, (fill, spread)
        robot.ctl.cleanup()
    cases = ((None, True, True), (None, None, None), (False, None, False), (False, True, True))
    for fill, cont, want in cases:  # the quality estimate's rule: passed on, off on a stack
        robot = E.Robot(vol, _settings(fill_between=fill, continuity=cont), _segmenter)
        assert robot.ctl.review.continuity is want, (fill, cont)
        robot.ctl.cleanup()
