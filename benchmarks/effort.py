"""Effort benchmark: how many interactions, and how many minutes, until a whole volume is done.

``python -m benchmarks.effort --out DIR [--volumes CT,S200] [--policies boxes,propagate,loop]
[--seeds 0,1,2] [--max-minutes 30] [--image FILE --labels FILE]``

A robot annotator (benchmarks.md §6) drives the dock's Qt-free controller
(:class:`napari_synfoc.app.controller.AppController`) through the calls the buttons make: box
and click prompts (``controller.prompts.prompt``), box propagation and its accept
(``controller.prompts.propagation``), Train / Retrain (``controller.start_run``), the review
ranking (``controller.review.next_uncertain``), accept one slice (``controller.review.accept``)
and accept every slice estimated above q (``controller.review.accept_above``).  Brush strokes
are napari's own tool: the robot writes them into its labels array, as the dock's Labels layer
would hold them.  The rules (costs, corrections, stop rule) are in :mod:`.effort_rules`.

- The robot looks at the reference only on the slice in front of it (to draw a box, place a
  click, judge a proposal or paint a correction); the policy or the plugin's ranking chooses the
  slice.  Looking costs nothing.
- The clock counts the wall time of the plugin's work the robot waits for (training, encoding,
  prompts, propagation); the robot's own bookkeeping is paused out.  Training runs in the
  dock's default job backend (a child process) while the robot goes on working.
- Policies: ``boxes`` (a box per part and a click on every slice in order, corrections where
  still below target: the baseline), ``propagate`` (boxes every k slices, propagation, accept,
  a correction sweep), ``loop`` (the dock: box a few slices, Train, fix the ranking's top
  slices, accept those estimated above q, Retrain; after the last run check the accepted
  slices, take the proposals for the rest and check them in order), ``loop-random`` and
  ``loop-sequential`` (the loop with the next slice drawn at random or in order).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import effort_rules as R
from .common import SHARED_DATA, markdown_table

POLICIES = ("boxes", "propagate", "loop", "loop-random", "loop-sequential")
LOOP_ORDER = {"loop": "ranking", "loop-random": "random", "loop-sequential": "sequential"}
CT_SUBDIR = Path("ct_aorta_totalseg")


# ----------------------------------------------------------------------------- volumes
@dataclass
class Volume:
    """A volume to finish: image (Z, Y, X), reference labels, classes (K, background included)."""

    name: str
    image: np.ndarray
    ref: np.ndarray
    num_classes: int
    window: tuple[float, float] | None = None  # the intensity window the dock would use
    stack: bool = False  # separate 2-D images, not a volume: the robot unticks "fill between"


def file_volume(image: str | Path, labels: str | Path, name: str | None = None) -> Volume:
    """A volume from files the plugin reads (NIfTI, MHA, NRRD, a DICOM folder)."""
    from napari_synfoc.io.readers import read_volume

    img, _ = read_volume(image)
    ref, _ = read_volume(labels)
    img, ref = np.asarray(img), np.asarray(ref)
    if img.shape != ref.shape or img.ndim != 3:
        raise ValueError(
            f"image {img.shape} and labels {ref.shape} must be one (Z, Y, X) volume each"
        )
    if ref.min() < 0 or ref.max() > 254:
        raise ValueError(f"labels must hold class indices 0..254, got {ref.min()}..{ref.max()}")
    ref = ref.astype(np.uint8)
    return Volume(name or Path(image).name, img, ref, max(2, int(ref.max()) + 1))


def named_volume(name: str, data: str | Path = SHARED_DATA) -> Volume:
    """``CT`` (the shared aorta / T12 CT), ``S40`` or ``S200`` (FAZ stacks, benchmarks.md §5)."""
    if name == "CT":
        root = Path(data) / CT_SUBDIR
        return file_volume(root / "ct_aorta.nii.gz", root / "ct_aorta_label.nii.gz", "CT")
    if name in ("S40", "S200"):
        from .common import faz_root
        from .time_to_useful import faz_stack

        img, lab = faz_stack(8 if name == "S40" else 40, faz_root(data))
        return Volume(name, img, lab.astype(np.uint8), 2, stack=True)
    raise ValueError(f"unknown volume {name!r}: CT, S40, S200 (or --image/--labels)")


def fill_choice(flag: str | None, vol: Volume) -> bool | None:
    """``--fill-between``: "on" / "off", or None for the dock's box as the README says to set
    it: ticked (the config's default, None here) on a volume, unticked on a stack of images."""
    if flag is not None:
        return flag == "on"
    return False if vol.stack else None


# ----------------------------------------------------------------------------- plumbing
class Capped(Exception):
    """The run reached its interaction or time cap."""


class Clock:
    """Wall seconds since the start, minus the robot's own bookkeeping (:meth:`pause`)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.paused = 0.0

    def now(self) -> float:
        return time.perf_counter() - self.t0 - self.paused

    @contextmanager
    def pause(self):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.paused += time.perf_counter() - t


class Pump:
    """The robot's event loop: :meth:`threads` is a :class:`~napari_synfoc.app.jobs.JobRunner`
    thread hook whose jobs run in plain threads and whose callbacks wait in a queue until
    :meth:`pump` runs them in the robot's thread (as the dock's run in the GUI thread)."""

    def __init__(self) -> None:
        self.calls: queue.Queue = queue.Queue()

    def threads(self, fn, on_error, on_finished, yielded=None, returned=None):
        put = self.calls.put

        def work():
            try:
                if yielded is not None:
                    for event in fn():
                        put((yielded, event))
                else:
                    put((returned, fn()))
            except Exception as exc:  # noqa: BLE001 - handed to on_error in the robot's thread
                put((on_error, exc))
            finally:
                put((lambda _: on_finished(), None))

        thread = threading.Thread(target=work, daemon=True, name="effort-job")
        thread.start()
        return thread

    def pump(self, timeout: float = 0.0) -> int:
        """Run the queued callbacks, waiting up to ``timeout`` seconds for the first."""
        n = 0
        try:
            fn, arg = self.calls.get(timeout=timeout) if timeout > 0 else self.calls.get_nowait()
        except queue.Empty:
            return 0
        while True:
            if fn is not None:
                fn(arg)
            n += 1
            try:
                fn, arg = self.calls.get_nowait()
            except queue.Empty:
                return n


@dataclass
class Settings:
    """One run's choices (the dock's defaults unless a flag says otherwise)."""

    profile: str = "auto"
    device: str = "cpu"
    iterations: int | None = None  # None: the profile's run length, as the dock's spin box
    per_round: int = 10  # ranked slices the loop fixes after each training run
    rounds: int = 2  # training runs before the loop takes the models' proposals and checks them
    retrain_iterations: int | None = None  # a Retrain's run length (None: the dock's, 100)
    accept_q: float = 0.90  # "Accept all slices estimated above q" (between runs)
    init_slices: int = 5  # slices the loop labels before the first Train
    proposals: str = "models"  # the rest from: "models" (LiteMedSAM boxed by them), "ensemble"
    visit_after_run: bool = True  # fix ranked slices once a run has ended (else while it runs)
    extent: bool = True  # proposals within each class's labelled extent (the dock's default)
    state_dir: str | None = None  # save the labels (and predictions) before the final sweep
    redo_boxes: bool = False  # sweep: box a class again where boxing beats brushing it
    min_3d_part: float | None = None  # proposals: drop 3-D parts under this (None: the dock's)
    fill_between: bool | None = None  # proposals: interpolate between labelled slices (None: dock)
    z_spread: bool | None = None  # ranking: spread picks in z (None: as the fill, the dock's rule)
    continuity: bool | None = None  # quality estimate's continuity rule (None: the dock's)
    check_accepted_first: bool = True  # loop: check the slices accepted above q before proposals
    key_every: int = 7  # propagate: a box every k slices
    clicks: int = 1  # boxes: clicks tried after the box on a slice still below target
    max_minutes: float = 30.0
    max_interactions: int | None = None
    acquisition: str | None = None  # the review ranking (None: the dock's default)
    seed: int = 0
    backend: str = "process"


# ----------------------------------------------------------------------------- the robot
class Robot:
    """The annotator: a labels array (the dock's Labels layer), the controller, a ledger."""

    def __init__(self, vol: Volume, st: Settings, segmenter_factory=None):
        from napari_synfoc.app.controller import AppController
        from napari_synfoc.app.jobs import JobRunner

        self.vol, self.st = vol, st
        self.loop = Pump()
        self.ctl = AppController(jobs=JobRunner(st.backend, threads=self.loop.threads))
        if segmenter_factory is not None:
            self.ctl.prompts.segmenter_factory = segmenter_factory
        if st.acquisition:
            self.ctl.review.acquisition = st.acquisition
        self.ctl.prompts.window = vol.window  # prompts see the dock's intensity choice
        self.ctl.prompts.propagation.within_labelled_extent = st.extent
        if st.min_3d_part is not None:
            self.ctl.prompts.propagation.min_part_fraction = st.min_3d_part
        if st.fill_between is not None:
            self.ctl.prompts.propagation.fill_between = st.fill_between
        # the fill box unticked says "a stack" to the review too, as in the dock; then overrides
        self.ctl.review.set_volume(st.fill_between is not False)
        if st.z_spread is not None:
            self.ctl.review.z_spread = st.z_spread
        if st.continuity is not None:
            self.ctl.review.continuity = st.continuity
        self.labels = np.zeros(vol.ref.shape, np.uint8)
        self.marked: set[int] = set()
        self.verified: set[int] = set()  # slices the robot has looked at since they changed
        self.ledger = R.Ledger()
        self.clock = Clock()
        self.classes = list(range(1, vol.num_classes))
        self.rng = np.random.default_rng(st.seed)
        self.runs = 0
        self.notes: dict[str, Any] = {}
        self.policy = ""  # set by run_policy (the saved state's name)

    # -------------------------------------------------------------- state
    def labeled(self) -> list[int]:
        from napari_synfoc.core.review import labeled_slices

        return labeled_slices(self.labels, self.marked)

    def failing(self) -> list[int]:
        return R.failing_slices(self.labels, self.vol.ref, self.vol.num_classes)

    def record(self, event: str) -> None:
        """A point of the curves (paused: scoring is the benchmark's, not the plugin's)."""
        with self.clock.pause():
            dice = R.mean_class_dice(self.labels, self.vol.ref, self.vol.num_classes)
            fail = len(self.failing())
            by_class = {
                str(c): len(R.failing_slices(self.labels, self.vol.ref, self.vol.num_classes,
                                             classes=[c]))
                for c in self.classes
            }  # fmt: skip
        self.ledger.record(
            self.clock.now(), event=event, failing=fail, labeled=len(self.labeled()),
            dice={str(k): round(v, 4) for k, v in dice.items()}, failing_by_class=by_class,
        )  # fmt: skip

    def count(self, kind: str, n: int = 1) -> None:
        """Count interactions; :class:`Capped` past the interaction cap."""
        self.ledger.add(kind, n)
        cap = self.st.max_interactions
        if cap is not None and self.ledger.total > cap:
            raise Capped(f"interaction cap {cap}")

    def check_time(self) -> None:
        if self.clock.now() > 60.0 * self.st.max_minutes:
            raise Capped(f"time cap {self.st.max_minutes} min")

    def apply(self, se) -> None:
        """Apply a controller :class:`~napari_synfoc.app.slice_edit.SliceEdit` (one undo step)."""
        self.labels[se.edit.indices] = se.edit.new_values
        self.marked |= {int(z) for z in se.empty_slices}
        self.ctl.labels_edited()

    # -------------------------------------------------------------- actions on one slice
    def box_slice(self, z: int) -> None:
        """A box per part of each class on slice ``z`` (prompts), a click where one part still
        misses the target, then corrections.  An empty slice is marked empty."""
        with self.clock.pause():
            boxes = R.boxes_for_slice(self.vol.ref[z], self.classes)
        if not boxes:
            self.mark_empty(z)
            return
        self.prompt_boxes(z, boxes)
        seen = {c for c, _ in boxes}
        single = [c for c in seen if sum(1 for cc, _ in boxes if cc == c) == 1]
        for _ in range(self.st.clicks):
            self.click(z, single)
        self.correct(z)

    def prompt_boxes(self, z: int, boxes) -> None:
        """A box prompt per ``(cls, box)`` on slice ``z`` (1 each): a class's first box replaces
        it on the slice, its other parts are added."""
        seen: set[int] = set()
        for c, box in boxes:
            self.ctl.prompts.mode = "add" if c in seen else "replace"
            seen.add(c)
            se = self.ctl.prompts.prompt(
                self.vol.image, self.labels, z, box=R.box_vertices(z, box), cls=c
            )
            self.count("box")
            if se is not None:
                self.apply(se)
        self.ctl.prompts.mode = "replace"

    def click(self, z: int, classes: list[int]) -> None:
        """One click on the worst single-part class; undone (Ctrl-Z) when it made things worse."""
        with self.clock.pause():
            ref = self.vol.ref[z]
            if R.slice_ok(self.labels[z], ref, self.classes) or not classes:
                return
            c = min(classes, key=lambda k: R.class_dice(self.labels[z], ref, k))
            before = R.class_dice(self.labels[z], ref, c)
            spot = R.click_for(self.labels[z], ref, c)
        if spot is None:
            return
        (row, col), positive = spot
        se = self.ctl.prompts.prompt(
            self.vol.image, self.labels, z, points=np.array([[z, row, col]], float),
            point_labels=[int(positive)], cls=c,
        )  # fmt: skip
        self.count("click")
        if se is None:
            return
        self.apply(se)
        with self.clock.pause():
            if R.class_dice(self.labels[z], ref, c) < before:
                self.labels[se.edit.indices] = se.edit.old_values  # Ctrl-Z (free)

    def correct(self, z: int) -> None:
        """Brush corrections from the reference until the slice meets the target."""
        with self.clock.pause():
            new, painted = R.correction_plan(self.labels[z], self.vol.ref[z], self.classes)
        if painted:
            detail = self.notes.setdefault("brush_by_class", {})
            for g in painted:  # what each stroke did: paint class k, or erase class k
                k = g.value or int(np.bincount(self.labels[z][g.mask]).argmax())
                key = f"{'paint' if g.value else 'erase'} {k}"
                detail[key] = detail.get(key, 0) + 1
            self.labels[z] = new
            self.count("brush", len(painted))
            self.ctl.labels_edited()
        if not self.labels[z].any() and z not in self.marked:
            self.marked.add(z)  # painted back to background: it stays labelled
        self.verified.add(z)

    def redo_with_boxes(self, z: int) -> None:
        """A person's shortcut on a slice whose mask is far off: each class the reference holds
        whose errors need more brush strokes than boxing it again (one box per part, plus one
        stroke) is boxed again; undone (Ctrl-Z, free) where that did not reduce its strokes."""
        for c in self.classes:
            with self.clock.pause():
                ref = self.vol.ref[z]
                parts = R.boxes_for_slice(ref, [c])
                before = R.strokes(self.labels[z], ref, [c])
            if not parts or before < len(parts) + 1:
                continue
            old = self.labels[z].copy()
            self.prompt_boxes(z, parts)
            with self.clock.pause():
                after = R.strokes(self.labels[z], ref, [c])
                if after >= before:
                    self.labels[z] = old  # Ctrl-Z (free)

    def mark_empty(self, z: int) -> None:
        self.labels[z] = 0
        self.marked.add(z)
        self.count("mark_empty")
        self.verified.add(z)

    def visit(self, z: int) -> None:
        """Look at the proposal on slice ``z``: accept it when good; else the cheaper of accept +
        corrections and painting the slice (or marking it empty) from scratch."""
        maps = self.ctl.review.maps
        with self.clock.pause():
            ref = self.vol.ref[z]
            prop = maps.ensemble_label[z]
            action = R.visit_action(
                R.strokes(prop, ref, self.classes), R.strokes(self.labels[z], ref, self.classes)
            )
        if action == "accept":
            se = self.ctl.review.accept(self.labels, z, "ensemble")
            self.count("accept")
            if se is not None:
                self.apply(se)
            self.correct(z)
        elif action == "empty":
            self.mark_empty(z)
        else:
            self.correct(z)

    # -------------------------------------------------------------- training
    def train(self, warm: bool, iterations: int | None = None) -> bool:
        """Train / Retrain as the dock does: the labels copied now, the dock's parameters
        (``iterations``: the run length, None for the Settings')."""
        from napari_synfoc.app.run_request import RunRequest
        from napari_synfoc.config import SynFoCConfig, retrain_iterations, run_iterations
        from napari_synfoc.core.task import StackTask

        labeled = self.labeled()
        # the dock's Iterations spin box starts at the profile's run length (build_config's
        # None would be the config's 30000, the paper's T)
        # the dock's two spin boxes: Iterations (--iterations) and Retrain iterations
        prof, dev = self.st.profile, self.st.device
        if warm:
            iterations = iterations or retrain_iterations(prof, dev)
        else:
            iterations = iterations or self.st.iterations or run_iterations(prof, dev)
        task = StackTask(
            self.vol.image, self.labels.copy(), labeled, intensity_window=self.vol.window
        )
        params = {
            "profile": self.st.profile, "device": self.st.device, "foundation": "litemedsam",
            "checkpoint": None, "iterations": int(iterations),
            "overrides": {"seed": SynFoCConfig().seed + self.st.seed},  # seed 0: the dock's
        }  # fmt: skip
        view = labeled[len(labeled) // 2] if labeled else self.vol.image.shape[0] // 2
        ok = self.ctl.start_run(
            RunRequest(task, params, warm_start=warm, overlays_exist=True, view_slice=view)
        )
        if not ok:
            raise RuntimeError(f"training did not start: {self.ctl.last_message}")
        self.runs += 1
        self.notes.setdefault("run_iterations", []).append(int(iterations))
        return ok

    def wait(self, seconds: float = 0.5) -> None:
        """Wait for the plugin (the time counts), running its queued callbacks."""
        self.loop.pump(seconds)
        self.check_time()

    def finish_jobs(self, timeout: float = 120.0) -> None:
        """Stop training and propagation and let them end (their threads must not outlive the
        run); the wait is the benchmark's, not the plugin's."""
        with self.clock.pause():
            self.ctl.stop()
            self.ctl.prompts.propagation.stop()
            end = time.monotonic() + timeout
            while (self.ctl.busy or self.ctl.prompts.propagation.running) and (
                time.monotonic() < end
            ):
                self.loop.pump(0.2)
            self.ctl.detach()

    def wait_run(self) -> None:
        while self.ctl.running or self.ctl.busy:
            self.wait(0.5)
        if self.ctl.run.outcome == "failed":
            raise RuntimeError(f"training failed: {self.ctl.last_message}")


# ----------------------------------------------------------------------------- policies
def run_boxes(robot: Robot) -> None:
    """The baseline: a box per part (and a click) on every slice in order, then corrections."""
    for z in range(robot.vol.image.shape[0]):
        with robot.clock.pause():
            has = bool(robot.vol.ref[z].any())
        if has:  # an empty slice needs nothing: its labels are already background
            robot.box_slice(z)
            robot.record(f"box slice {z}")
        robot.check_time()


def run_propagate(robot: Robot) -> None:
    """Boxes every ``key_every`` slices (largest part of each class), propagation per class,
    accept its proposals (one action), then a correction sweep in slice order."""
    st, vol, prompts = robot.st, robot.vol, robot.ctl.prompts
    n = vol.image.shape[0]
    keys = sorted({*range(0, n, st.key_every), n - 1})
    for c in robot.classes:
        shapes = []
        for z in keys:
            with robot.clock.pause():
                parts = R.boxes_for_slice(vol.ref[z], [c])
            if parts:
                shapes.append(R.box_vertices(z, parts[0][1]))
                robot.count("box")
        if len(shapes) < 2:
            for v in shapes:  # a single key slice: a plain box prompt there
                se = prompts.prompt(vol.image, robot.labels, int(v[0, 0]), box=v, cls=c)
                if se is not None:
                    robot.apply(se)
            continue
        prompts.mode = "replace"
        if not prompts.propagation.start(vol.image, robot.labels.shape, shapes, cls=c):
            raise RuntimeError(f"propagation did not start: {prompts.last_message}")
        while prompts.propagation.running:
            robot.wait(0.2)
        se = prompts.propagation.accept(robot.labels)
        robot.count("accept_many")
        if se is not None:
            robot.apply(se)
        robot.record(f"propagated class {c}")
    sweep(robot, range(n))


def sweep(robot: Robot, slices) -> None:
    """Look at each slice in order and correct it where it misses the target."""
    save_state(robot)
    check(robot, slices)
    robot.record("sweep")


def check(robot: Robot, slices) -> None:
    """Look at each of ``slices`` in order and correct it where it misses the target."""
    for z in slices:
        if robot.st.redo_boxes:
            robot.redo_with_boxes(int(z))
        robot.correct(int(z))
        robot.check_time()


def save_state(robot: Robot) -> Path | None:
    """With ``state_dir``: the labels, the slices marked empty and the ensemble's labels as the
    final sweep finds them (``VOLUME-POLICY-sSEED.npz``), to study corrections offline."""
    if not robot.st.state_dir:
        return None
    maps = robot.ctl.review.maps
    path = Path(robot.st.state_dir) / f"{robot.vol.name}-{robot.policy}-s{robot.st.seed}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with robot.clock.pause():
        before = robot.notes.get("labeled_before_proposals", [])
        np.savez_compressed(
            path, labels=robot.labels, marked=np.array(sorted(robot.marked), int),
            ensemble=np.zeros(0) if maps is None else np.asarray(maps.ensemble_label),
            labeled_before_proposals=np.array(before, int),
        )  # fmt: skip
    return path


def save_quality_state(robot: Robot) -> Path | None:
    """With ``state_dir``: what the quality estimate sees when its error is measured (the end of
    the first run), in ``quality/VOLUME-POLICY-sSEED.npz``, to study estimators offline."""
    rv = robot.ctl.review
    if not robot.st.state_dir or rv.maps is None:
        return None
    m = rv.maps
    path = (
        Path(robot.st.state_dir)
        / "quality"
        / (f"{robot.vol.name}-{robot.policy}-s{robot.st.seed}.npz")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with robot.clock.pause():
        none = np.zeros(0)
        np.savez_compressed(
            path, labels=robot.labels, labeled=np.array(robot.labeled(), int),
            trained=np.array(sorted(robot.ctl.model.labeled or []), int),
            covered=np.array(sorted(rv.covered) if rv.covered is not None else [], int),
            agreement=none if m.agreement is None else np.asarray(m.agreement),
            ensemble=np.asarray(m.ensemble_label), fm=np.asarray(m.fm_label),
            unet=np.asarray(m.unet_label),
        )  # fmt: skip
    return path


def init_slices(n: int, k: int) -> list[int]:
    """``k`` evenly spaced slices (the loop's first labels): round((i + 1) n / (k + 1))."""
    return sorted({min(n - 1, round((i + 1) * n / (k + 1))) for i in range(k)})


def pick_next(robot: Robot, order: str, todo: list[int]) -> int:
    """The next slice to fix: the plugin's ranking, a random draw or slice order."""
    if order == "ranking":
        z = robot.ctl.review.next_uncertain(robot.labeled())
        if z is not None and z in todo:
            return z
        return todo[0]
    if order == "random":
        return int(robot.rng.choice(todo))
    return todo[0]


def run_loop(robot: Robot, order: str = "ranking") -> None:
    """The dock's loop: box a few slices, Train; when the run has ended (``visit_after_run``;
    else while it runs) fix the ``per_round`` slices the ranking shows, accept the slices
    estimated above q, Retrain (warm, ``retrain_iterations``) until ``rounds`` runs have ended;
    check the slices accepted above q (``check_accepted_first``: the proposals fill between
    labelled slices, so those should be right first); then take the models' proposals for every
    unlabelled slice (``proposals="models"``: LiteMedSAM
    boxed by the ensemble's parts, one accept per class; ``"ensemble"``: the ensemble itself,
    accepted above q = 0) and check every slice not yet seen, in order."""
    st = robot.st
    n = robot.vol.image.shape[0]
    for z in init_slices(n, st.init_slices):
        robot.box_slice(z)
    robot.record("initial slices")
    robot.train(warm=False)
    visits, seen = 0, 0
    while True:
        robot.wait(0.2 if robot.ctl.running else 0.0)
        maps = robot.ctl.review.maps
        if maps is not None and robot.ctl.review.updates != seen:  # new predictions
            seen = robot.ctl.review.updates
            q = {"seconds": round(robot.clock.now(), 1), "run": robot.runs, **quality_error(robot)}
            robot.notes.setdefault("quality_curve", []).append(q)
        todo = unlabelled_covered(robot) if maps is not None else []
        training = robot.ctl.running or robot.ctl.busy
        if (
            maps is not None
            and visits < st.per_round
            and todo
            and not (training and st.visit_after_run)
        ):
            robot.visit(pick_next(robot, order, todo))
            robot.record("visit")
            visits += 1
            continue
        if training:
            continue
        robot.wait_run()
        if robot.runs == 1 and "first_run_quality" not in robot.notes:
            robot.notes["first_run_quality"] = quality_error(robot)
            save_quality_state(robot)
        if st.visit_after_run and visits < st.per_round and unlabelled_covered(robot):
            continue  # the run has ended: fix the slices the ranking shows now
        if robot.runs >= st.rounds or not unlabelled_covered(robot):
            break
        accept_above(robot, st.accept_q)
        robot.train(warm=True, iterations=st.retrain_iterations)
        visits = 0
    if st.check_accepted_first:  # the proposals fill between labelled slices: fix those first
        check(robot, [z for z in robot.labeled() if z not in robot.verified])
        robot.record("checked the accepted slices")
    if st.proposals == "models":
        propose_from_models(robot)
    else:
        accept_above(robot, 0.0)
    sweep(robot, [z for z in range(n) if z not in robot.verified])


def propose_from_models(robot: Robot) -> None:
    """The models as prompters: for each class, proposals on every unlabelled predicted slice
    (``prompts.propagation.start_from_models``), accepted all at once (one action per class)."""
    prop, maps = robot.ctl.prompts.propagation, robot.ctl.review.maps
    todo = unlabelled_covered(robot)
    if maps is None or not todo:
        return
    robot.notes["labeled_before_proposals"] = robot.labeled()
    robot.ctl.prompts.mode = "replace"
    for c in robot.classes:
        ok = prop.start_from_models(
            robot.vol.image, robot.labels.shape, maps.ensemble_label, todo, cls=c,
            labels=robot.labels, labeled=robot.labeled(),
        )  # fmt: skip
        if not ok and todo and len(prop.skipped) == len(todo):
            continue  # every slice lies beyond the class's labelled extent: nothing to accept
        if not ok:
            raise RuntimeError(f"proposals did not start: {robot.ctl.prompts.last_message}")
        while prop.running:
            robot.wait(0.2)
        if prop.outcome != "done":
            raise RuntimeError(f"proposals {prop.outcome}: {robot.ctl.prompts.last_message}")
        se = prop.accept(robot.labels)
        robot.count("accept_many")
        if se is not None:
            robot.apply(se)
            robot.verified -= set(se.slices)
        n = len(todo) - len(prop.skipped)
        robot.notes.setdefault("dropped_3d_parts", []).append(prop.dropped_parts)
        robot.notes.setdefault("interpolated_slices", []).append(len(prop.interpolated))
        robot.record(f"proposals from the models, class {c} ({n} slices)")


def unlabelled_covered(robot: Robot) -> list[int]:
    """Unlabelled slices that hold predictions, in slice order."""
    done = set(robot.labeled())
    cov = robot.ctl.review.covered
    n = robot.vol.image.shape[0]
    return [z for z in range(n) if z not in done and (cov is None or z in cov)]


def accept_above(robot: Robot, q: float) -> None:
    """ "Accept all slices estimated above q" (one action, when it accepts anything)."""
    rv = robot.ctl.review
    se = rv.accept_above(robot.labels, q, robot.labeled(), robot.ctl.model.labeled)
    if se is None or not se.slices:
        return
    robot.apply(se)
    robot.count("accept_many")
    robot.verified -= set(se.slices)
    robot.record(f"accept above {q:.2f} ({len(se.slices)} slices)")


def quality_error(robot: Robot) -> dict[str, Any]:
    """How well the dock's quality estimate predicts each slice's true Dice now: mean absolute
    error over the unlabelled predicted slices (and over all predicted slices)."""
    from napari_synfoc.core.quality import slice_dice_true

    with robot.clock.pause():
        rv = robot.ctl.review
        est = rv.quality(robot.labels, robot.labeled(), robot.ctl.model.labeled)
        true = slice_dice_true(rv.maps.ensemble_label, robot.vol.ref, robot.vol.num_classes)
        cov = range(len(true)) if rv.covered is None else sorted(rv.covered)
        done = set(robot.labeled())
        unl = [z for z in cov if z not in done]
        err = np.abs(est.predicted - true)
        # slices where the reference holds a class the ensemble does not predict at all: no
        # agreement between the models can see a structure both miss
        ens, ref = rv.maps.ensemble_label, robot.vol.ref
        missed = [z for z in unl if any((ref[z] == c).any() and not (ens[z] == c).any()
                                        for c in robot.classes)]  # fmt: skip
        seen = [z for z in unl if z not in set(missed)]
        return {
            "mae_unlabelled": round(float(err[unl].mean()), 4) if unl else None,
            "missed_class_slices": len(missed),
            "mae_without_missed": round(float(err[seen].mean()), 4) if seen else None,
            "mae_all": round(float(err[list(cov)].mean()), 4),
            "n_unlabelled": len(unl),
            "true_mean": round(float(true[unl].mean()), 4) if unl else None,
            "predicted_mean": round(float(est.predicted[unl].mean()), 4) if unl else None,
        }


# ----------------------------------------------------------------------------- one run
def run_policy(vol: Volume, policy: str, st: Settings, segmenter_factory=None, log=print) -> dict:
    """One policy on one volume: the ledger, the curve, finished or capped, and the notes."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose from {POLICIES}")
    robot = Robot(vol, st, segmenter_factory)
    robot.policy = policy
    outcome = "finished"
    try:
        if policy == "boxes":
            run_boxes(robot)
        elif policy == "propagate":
            run_propagate(robot)
        else:
            run_loop(robot, LOOP_ORDER[policy])
    except Capped as exc:
        outcome = f"capped: {exc}"
    finally:
        robot.finish_jobs()
    robot.record("end")
    fail = robot.failing()
    if outcome == "finished" and fail:
        outcome = f"not finished: {len(fail)} slices below target"
    last = robot.ledger.records[-1]
    res = {
        "volume": vol.name, "policy": policy, "seed": st.seed, "outcome": outcome,
        "finished": not fail, "interactions": robot.ledger.total,
        "counts": dict(robot.ledger.counts), "minutes": round(robot.clock.now() / 60.0, 3),
        "training_runs": robot.runs, "failing_slices": len(fail), "final_dice": last["dice"],
        "notes": robot.notes, "records": robot.ledger.records,
    }  # fmt: skip
    robot.ctl.cleanup()
    log(
        f"[{vol.name} {policy} seed {st.seed}] {outcome}: {res['interactions']} interactions, "
        f"{res['minutes']:.1f} min, Dice {last['dice']}, {len(fail)} slices failing"
    )
    return res


# ----------------------------------------------------------------------------- report
def _fmt_dice(d: dict[str, float]) -> str:
    return ", ".join(f"{k}: {v:.3f}" for k, v in sorted(d.items())) or "-"


def _fmt_mae(q: dict[str, Any]) -> str:
    """The quality estimate's MAE, and without the slices where both models miss a class."""
    if not q:
        return "-"
    out = str(q.get("mae_unlabelled", "-"))
    if q.get("missed_class_slices"):
        out += f" ({q.get('mae_without_missed')} without {q['missed_class_slices']} missed-class)"
    return out


def markdown(data: dict[str, Any]) -> str:
    """The table: interactions, minutes (and in r), final Dice, per policy and volume."""
    r = data.get("reference_encoder_s")
    rows = []
    for res in data["runs"]:
        mins = res["minutes"]
        in_r = f"{60.0 * mins / r:.0f}" if r else "-"
        base = data["baseline_interactions"].get(res["volume"])
        share = f"{100.0 * res['interactions'] / base:.0f} %" if base else "-"
        q = res["notes"].get("first_run_quality") or {}
        curve = res["notes"].get("quality_curve") or []
        if not q and curve:  # the first run never ended: the last refresh's figure
            q = {"mae_unlabelled": f"{curve[-1]['mae_unlabelled']} (at {curve[-1]['seconds']} s)"}
        rows.append([
            res["volume"], res["policy"], res["seed"], res["interactions"], share,
            f"{mins:.1f}", in_r, _fmt_dice(res["final_dice"]), res["failing_slices"],
            res["outcome"], _fmt_mae(q),
        ])  # fmt: skip
    head = [
        "volume", "policy", "seed", "interactions", "of boxes", "minutes", "minutes in r",
        "final Dice per class", "slices failing", "outcome", "quality MAE (1st run)",
    ]  # fmt: skip
    lines = [
        "# Effort: interactions and minutes to finish a volume (benchmarks.md §6)",
        "",
        f"Command: `{data['command']}`",
        f"Machine: {data['machine']}; load average at start {data['loadavg_start']}, "
        f"at end {data.get('loadavg_end')}.",
        f"r = one torch fp32 LiteMedSAM encoder forward, measured in this run: {r} s.",
        "",
        markdown_table(head, rows),
        "",
        "Counts per run are in effort.json (`counts`); `records` hold the curves.",
    ]
    return "\n".join(lines) + "\n"


def plot(data: dict[str, Any], path: Path) -> None:
    """Mean Dice (over classes) against interactions and against minutes, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vols = sorted({r["volume"] for r in data["runs"]})
    fig, axes = plt.subplots(len(vols), 2, figsize=(11, 4 * len(vols)), squeeze=False)
    for row, v in zip(axes, vols, strict=True):
        for res in [r for r in data["runs"] if r["volume"] == v]:
            rec = res["records"]
            y = [np.mean(list(p["dice"].values())) if p["dice"] else 0.0 for p in rec]
            lab = f"{res['policy']} s{res['seed']}"
            row[0].plot([p["interactions"] for p in rec], y, label=lab)
            row[1].plot([p["seconds"] / 60.0 for p in rec], y, label=lab)
        row[0].set(title=f"{v}: Dice vs interactions", xlabel="interactions", ylabel="mean Dice")
        row[1].set(title=f"{v}: Dice vs minutes", xlabel="minutes (plugin wall time)")
        for ax in row:
            ax.axhline(R.TARGET_DICE, color="grey", lw=0.5)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_outputs(out: Path, data: dict[str, Any]) -> None:
    """effort.json (atomically), effort.md and effort.png in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "effort.json.tmp"
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, out / "effort.json")
    (out / "effort.md").write_text(markdown(data), encoding="utf-8")
    if data["runs"]:
        plot(data, out / "effort.png")


# ----------------------------------------------------------------------------- CLI
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.effort", description=__doc__)
    p.add_argument("--out", required=True, help="output folder (effort.json, .md, .png)")
    p.add_argument("--data", default=str(SHARED_DATA), help="the shared data folder")
    p.add_argument("--volumes", default="CT", help="comma list of CT, S40, S200")
    p.add_argument("--image", help="an image volume the plugin reads (with --labels)")
    p.add_argument("--labels", help="its reference labels")
    p.add_argument("--policies", default="boxes,propagate,loop", help=f"comma list of {POLICIES}")
    p.add_argument("--seeds", default="0", help="comma list of seeds (loop policies, training)")
    p.add_argument("--max-minutes", type=float, default=30.0, help="time cap per run")
    p.add_argument("--cap-factor", type=float, default=3.0, help="interaction cap x baseline")
    p.add_argument("--profile", default="auto")
    p.add_argument("--device", default="cpu")
    p.add_argument("--iterations", type=int, default=None, help="per training run")
    p.add_argument("--rounds", type=int, default=Settings.rounds)
    p.add_argument("--per-round", type=int, default=Settings.per_round)
    p.add_argument("--accept-q", type=float, default=Settings.accept_q)
    p.add_argument("--init-slices", type=int, default=Settings.init_slices)
    p.add_argument("--merge", nargs="+", help="only merge these runs' folders into --out")
    p.add_argument(
        "--visits", default="after", choices=("after", "during"),
        help="the loop fixes ranked slices once a run has ended, or while it runs",
    )  # fmt: skip
    p.add_argument("--save-state", default=None, help="folder: labels before the final sweep")
    p.add_argument(
        "--redo-boxes", action="store_true",
        help="sweep: box a class again where that beats brushing it (a person's shortcut)",
    )  # fmt: skip
    p.add_argument(
        "--min-3d-part", type=float, default=None,
        help="proposals drop 3-D parts under this fraction of the largest (default: the dock's)",
    )  # fmt: skip
    p.add_argument(
        "--fill-between", default=None, choices=("on", "off"),
        help="proposals interpolate between labelled slices holding the class (default: dock's)",
    )  # fmt: skip
    p.add_argument(
        "--z-spread", default=None, choices=("on", "off"),
        help="ranking: weigh slices by their distance in z to labelled ones (default: as fill)",
    )  # fmt: skip
    p.add_argument(
        "--continuity", default=None, choices=("on", "off"),
        help="the quality estimate's continuity rule (default: the dock's)",
    )  # fmt: skip
    p.add_argument(
        "--check-accepted-first", default="on", choices=("on", "off"),
        help="loop: check the slices accepted above q before asking for proposals",
    )  # fmt: skip
    p.add_argument(
        "--extent", default="on", choices=("on", "off"),
        help="proposals from the models within each class's labelled extent (the dock's: on)",
    )  # fmt: skip
    p.add_argument(
        "--retrain-iterations", type=int, default=Settings.retrain_iterations,
        help="a Retrain's run length (default: the dock's Retrain iterations)",
    )  # fmt: skip
    p.add_argument(
        "--proposals", default=Settings.proposals, choices=("models", "ensemble"),
        help="the loop's last step: proposals from the models, or the ensemble accepted",
    )  # fmt: skip
    p.add_argument("--acquisition", default=None, help="review ranking (default: the dock's)")
    p.add_argument("--window", default=None, help="intensity window lo,hi (default: the dock's)")
    return p


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"


def merge(out: Path, folders: list[str], command: str) -> dict[str, Any]:
    """One report from several runs' effort.json (e.g. one process and fresh cache per policy):
    the runs in order, the baseline from the ``boxes`` run of each volume, the largest r."""
    parts = [json.loads((Path(f) / "effort.json").read_text(encoding="utf-8")) for f in folders]
    if not parts:
        raise ValueError("--merge needs at least one folder holding an effort.json")
    runs = [r for d in parts for r in d["runs"]]
    base = {r["volume"]: r["interactions"] for r in runs if r["policy"] == "boxes"}
    data = {
        "command": command, "machine": parts[0]["machine"],
        "loadavg_start": parts[0]["loadavg_start"], "loadavg_end": parts[-1].get("loadavg_end"),
        "reference_encoder_s": max(d["reference_encoder_s"] for d in parts),
        "reference_encoder_s_each": [d["reference_encoder_s"] for d in parts],
        "merged_from": [d["command"] for d in parts], "baseline_interactions": base,
        "runs": runs,
    }  # fmt: skip
    write_outputs(out, data)
    return data


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.merge:
        cmd = "python -m benchmarks.effort " + " ".join(argv or sys.argv[1:])
        print(markdown(merge(Path(args.out), args.merge, cmd)))
        return 0
    from napari_synfoc.machine_check import reference_encoder_seconds

    out = Path(args.out)
    vols = [file_volume(args.image, args.labels)] if args.image else []
    if not args.image:
        vols = [named_volume(v.strip(), args.data) for v in args.volumes.split(",") if v.strip()]
    window = None if not args.window else tuple(float(v) for v in args.window.split(","))
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    data: dict[str, Any] = {
        "command": "python -m benchmarks.effort " + " ".join(argv or sys.argv[1:]),
        "machine": _machine(), "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "reference_encoder_s": round(reference_encoder_seconds("cpu", 3), 3),
        "settings": vars(args), "baseline_interactions": {}, "runs": [],
    }  # fmt: skip
    from napari_synfoc.core.intensity import CT_WINDOWS, suggested_window

    for vol in vols:
        # the dock's choice: a CT in HU starts from the soft-tissue window
        ct = suggested_window(vol.image)
        vol.window = window if window is not None else (CT_WINDOWS[ct] if ct else None)
        # in the given order: runs after the baseline (boxes) are capped at cap-factor x its
        # interactions; runs before it have the time cap only
        for policy in policies:
            for seed in [0] if policy in ("boxes", "propagate") else seeds:
                base = data["baseline_interactions"].get(vol.name)
                st = Settings(
                    profile=args.profile, device=args.device, iterations=args.iterations,
                    per_round=args.per_round, rounds=args.rounds, accept_q=args.accept_q,
                    init_slices=args.init_slices, retrain_iterations=args.retrain_iterations,
                    proposals=args.proposals, visit_after_run=args.visits == "after",
                    extent=args.extent == "on", state_dir=args.save_state,
                    redo_boxes=args.redo_boxes, min_3d_part=args.min_3d_part,
                    fill_between=fill_choice(args.fill_between, vol),
                    z_spread=None if args.z_spread is None else args.z_spread == "on",
                    continuity=None if args.continuity is None else args.continuity == "on",
                    check_accepted_first=args.check_accepted_first == "on",
                    max_minutes=args.max_minutes, acquisition=args.acquisition, seed=seed,
                    max_interactions=R.interaction_cap(base, args.cap_factor),
                )  # fmt: skip
                res = run_policy(vol, policy, st)
                res["settings"] = asdict(st)
                data["runs"].append(res)
                if policy == "boxes":
                    data["baseline_interactions"][vol.name] = res["interactions"]
                data["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
                write_outputs(out, data)
    write_outputs(out, data)
    print(markdown(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
