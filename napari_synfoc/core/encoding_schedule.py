"""Which slices the frozen encoder embeds when, in a cached run that predicts a stack.

:class:`ViewFirstSchedule` (a slice in view is known): only the labelled slices, the slice in
view and one unlabelled batch near it are encoded before training; the rest is encoded
``encode_per_step`` slices per iteration, nearest to the view first, while unlabelled batches are
drawn from the encoded slices (unmirrored).  Predictions come as partial events
(``Predictions.slices``) as slices get encoded.  :func:`encode_whole_stack` embeds every slice
before training (no slice in view).

Two switches (issue 22): ``cfg.unet_first``: every full refresh (the first one right after the
warm-up) predicts every slice, nearest the view first, in batches of :data:`SWEEP_BATCH`: both
models where the slice is encoded, the U-Net alone elsewhere (``Predictions.foundation_ready``).
``cfg.encode_schedule="encode_first"``: the whole queue is encoded before iteration 0 (each
:data:`ENCODE_REFRESH` new slices shown with both models at once) instead of
``encode_per_step`` items per iteration (``"interleave"``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ..config import SynFoCConfig
from .events import Encoding, Event, Predictions, Progress
from .inference import resize_images
from .steps import TrainingError

# (kind, index): stack slice ``i`` ("slice"), unlabelled sample ``i`` ("unl") or the mirrored
# view of labelled sample ``i`` ("lab_flip")
QueueItem = tuple[str, int]
PredictFn = Callable[[Sequence[int]], tuple[np.ndarray, np.ndarray]]  # -> (fm, unet)
PredictUNetFn = Callable[[Sequence[int]], np.ndarray]
SWEEP_BATCH = 32  # slices per Predictions event of a unet_first sweep
ENCODE_REFRESH = 16  # encode_first: new slices between two both-model refreshes


def encode_whole_stack(bank, images: Sequence[np.ndarray], keys: Sequence[str], size: int):
    """Embed every prediction slice once (bilinear to ``size``), yielding ``Progress``."""
    n = len(images)
    for i, img in enumerate(images):
        x = torch.from_numpy(np.ascontiguousarray(img))[None].float()
        bank.compute((keys[i], False), resize_images(x, size, "bilinear")[0])
        yield Progress("embedding slices with the frozen encoder", i + 1, n)


class ViewFirstSchedule:
    """The view-first encoding queue of one run, and the partial prediction refreshes.

    ``refresh_stale``: at each partial refresh, this many already shown slices (the stalest,
    nearest the view first) are predicted again with the newly encoded ones.  ``predict``: both
    models on stack slices (encoded ones); ``predict_unet``: the U-Net alone (any slice).
    """

    def __init__(
        self,
        cfg: SynFoCConfig,
        bank,
        images: Sequence[np.ndarray],
        keys: Sequence[str],
        lab_keys: Sequence[str],
        unl_keys: Sequence[str],
        labeled_ds,
        unlabeled_ds,
        size: int,
        view_slice: int,
        encode_per_step: int,
        refresh_stale: int,
        predict: PredictFn,
        predict_unet: PredictUNetFn,
    ):
        self.cfg, self.bank, self.size = cfg, bank, size
        self.images, self.keys = list(images), list(keys)
        self.lab_keys, self.unl_keys = list(lab_keys), list(unl_keys)
        self.labeled_ds, self.unlabeled_ds = labeled_ds, unlabeled_ds
        self.view = min(max(int(view_slice), 0), len(self.images) - 1)
        self.encode_per_step = max(1, int(encode_per_step))
        self.refresh_stale = refresh_stale
        self.predict, self.predict_unet = predict, predict_unet
        self.first = self._first_items()
        self.pending = self._pending_items(set(self.first))
        self.total = len(self.first) + len(self.pending)
        self.done = 0
        self.fresh: list[int] = []  # encoded stack slices without a prediction yet
        self.covered: set[int] = set()  # stack slices shown with both models
        self.predicted_at: dict[int, int] = {}  # stack slice -> iteration of its prediction
        self.pool_rng = np.random.default_rng(cfg.seed + 7)
        self.pool_draw = 0

    # -- the queue -----------------------------------------------------------------------
    def _by_view(self) -> list[QueueItem]:
        """Stack slices nearest to the view first, then unlabelled samples of other images."""
        n, pred = len(self.images), set(self.keys)
        by_view = sorted(range(n), key=lambda i: (abs(i - self.view), i))
        return [("slice", i) for i in by_view] + [
            ("unl", j) for j, k in enumerate(self.unl_keys) if k not in pred
        ]

    def _first_items(self) -> list[QueueItem]:
        """Encoded before training: the labelled slices, the slice in view, and one unlabelled
        batch's worth nearest to the view."""
        lab, unl_keys = set(self.lab_keys), set(self.unl_keys)
        first = [("slice", i) for i in range(len(self.images)) if self.keys[i] in lab]
        need = self.cfg.batch_unlabeled if not self.cfg.suponly else 0
        if self.keys[self.view] in unl_keys:
            need -= 1
        first.append(("slice", self.view))
        for kind, i in self._by_view():
            if need <= 0:
                break
            key = self.keys[i] if kind == "slice" else self.unl_keys[i]
            if key in unl_keys and (kind, i) not in first:
                first.append((kind, i))
                need -= 1
        return list(dict.fromkeys(first))

    def _pending_items(self, chosen: set[QueueItem]) -> list[QueueItem]:
        """The rest, nearest to the view first; mirrored labelled views after the stack's
        slices (until then labelled draws are unmirrored), other images' samples last."""
        pending = [q for q in self._by_view() if q not in chosen]
        n_stack = sum(1 for q in pending if q[0] == "slice")
        pending[n_stack:n_stack] = [("lab_flip", j) for j in range(len(self.lab_keys))]
        return pending

    def _item(self, kind: str, i: int) -> tuple[tuple[str, bool], torch.Tensor]:
        """Bank key and S×S image of a queue item."""
        if kind == "slice":
            img = torch.from_numpy(np.ascontiguousarray(self.images[i]))[None].float()
            return (self.keys[i], False), resize_images(img, self.size, "bilinear")[0]
        if kind == "unl":
            img = torch.from_numpy(np.asarray(self.unlabeled_ds.images[i]))[None].float()
            return (self.unl_keys[i], False), resize_images(img, self.size, "nearest")[0]
        img = torch.from_numpy(np.asarray(self.labeled_ds.images[i]))[None].float()
        return (self.lab_keys[i], True), resize_images(img, self.size, "nearest")[0]

    # -- encoding ------------------------------------------------------------------------
    def prime(self) -> Iterator[Event]:
        """Encode what training needs first; ``Encoding`` events."""
        yield Encoding(0, self.total)
        yield from self._encode(self.first)

    def _encode(self, items: Sequence[QueueItem], batch: int = 4) -> Iterator[Event]:
        """Encode queue items, ``batch`` per encoder call; an Encoding event after each call."""
        for s in range(0, len(items), batch):
            chunk = items[s : s + batch]
            keys, images = zip(*(self._item(k, i) for k, i in chunk), strict=True)
            self.bank.compute_many(keys, images)
            self.fresh.extend(i for k, i in chunk if k == "slice")
            self.done += len(chunk)
            yield Encoding(self.done, self.total)

    def encode_pending(self, count: int | None = None) -> Iterator[Event]:
        """Encode the next ``count`` queue items (None: all that are left)."""
        count = len(self.pending) if count is None else count
        items, self.pending = self.pending[:count], self.pending[count:]
        yield from self._encode(items)

    def encode_all(self, should_stop: Callable[[], bool]) -> Iterator[Event]:
        """``encode_first``: encode the whole queue now (nearest the view first), showing each
        :data:`ENCODE_REFRESH` new stack slices with both models (iteration 0); stops early
        when ``should_stop()``."""
        while self.pending and not should_stop():
            yield from self.encode_pending(ENCODE_REFRESH)
            yield from self._show_both(0, sorted(self.fresh))

    # -- batches -------------------------------------------------------------------------
    def unmirror_unready(self, batch: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
        """Undo the mirror of batch items whose mirrored embedding is not encoded yet."""
        for b, (i, f) in enumerate(zip(batch["index"], batch["flip"], strict=True)):
            if bool(f) and (keys[int(i)], True) not in self.bank.store:
                for name in ("image", "strong", "label"):
                    if name in batch:
                        batch[name][b] = torch.flip(batch[name][b], dims=[-1])
                batch["flip"][b] = False
        return batch

    def ready_unlabeled_batch(self) -> dict[str, Any]:
        """An unlabelled batch drawn from the samples whose embedding is ready (unmirrored)."""
        ready = [j for j, k in enumerate(self.unl_keys) if (k, False) in self.bank.store]
        if not ready:
            raise TrainingError("no unlabelled slice has been encoded yet (internal error)")
        b = self.cfg.batch_unlabeled
        picks = self.pool_rng.choice(ready, size=b, replace=len(ready) < b)
        ds = self.unlabeled_ds
        items = [ds[(int(j), self.pool_draw + n)] for n, j in enumerate(picks)]
        self.pool_draw += b
        batch = torch.utils.data.default_collate(items)
        return self.unmirror_unready(batch, self.unl_keys)

    # -- predictions ---------------------------------------------------------------------
    def _full_due(self, it: int, full: bool) -> bool:
        """Every shown slice is refreshed at ``first_predict_at``, every ``predict_every``
        iterations, and when ``full`` (after the warm-up)."""
        cfg = self.cfg
        return bool(
            full
            or it == cfg.first_predict_at
            or (cfg.predict_every and it % cfg.predict_every == 0)
        )

    def _refresh_slices(self, it: int, full: bool) -> list[int]:
        """The slices a refresh after iteration ``it`` predicts (empty: none due)."""
        start = max(1, self.cfg.first_predict_at)
        if self._full_due(it, full):
            return sorted(self.covered | set(self.fresh))
        if it > start and (it - start) % start == 0:
            # the new slices, plus the stalest shown ones (nearest the view first), so no slice
            # keeps an early, empty prediction until the next full refresh
            stale = sorted(
                self.covered - set(self.fresh),
                key=lambda i: (self.predicted_at.get(i, -1), abs(i - self.view)),
            )[: self.refresh_stale]
            return sorted(set(self.fresh) | set(stale))
        return []

    def refresh(self, it: int, full: bool = False) -> Iterator[Event]:
        """Encode a few more slices (``interleave``); predict the new ones (every
        ``first_predict_at`` iterations) or every encoded one (at ``first_predict_at``, every
        ``predict_every`` and when ``full``: after the warm-up), with every other slice's U-Net
        prediction too when ``unet_first``."""
        cfg = self.cfg
        if self.pending and it > cfg.first_predict_at:
            yield from self.encode_pending(self.encode_per_step)
        if it >= cfg.iterations:
            return  # the run's end predicts every slice
        everywhere = cfg.unet_first and len(self.covered | set(self.fresh)) < len(self.images)
        if everywhere and self._full_due(it, full):
            yield from self.sweep(it)
            return
        yield from self._show_both(it, self._refresh_slices(it, full))

    def _view_chunks(self, idx: Sequence[int]) -> list[list[int]]:
        """``idx`` nearest the view first, cut into sorted chunks of :data:`SWEEP_BATCH`."""
        order = sorted((int(i) for i in idx), key=lambda i: (abs(i - self.view), i))
        return [sorted(order[s : s + SWEEP_BATCH]) for s in range(0, len(order), SWEEP_BATCH)]

    def _show_both(self, it: int, idx: list[int]) -> Iterator[Event]:
        """Both models on the encoded stack slices ``idx`` (nothing when empty), one partial
        event per :data:`SWEEP_BATCH` slices, nearest the view first: the probabilities in
        flight stay O(batch), never a whole-volume float array (issue 22, scale)."""
        if not idx:
            return
        shown = set(idx)
        self.fresh = [i for i in self.fresh if i not in shown]
        self.covered |= shown
        self.predicted_at.update(dict.fromkeys(idx, it))
        n = len(self.images)
        for chunk in self._view_chunks(idx):
            fm_p, un_p = self.predict(chunk)
            yield Predictions(it, fm_p, un_p, tuple(chunk), n)

    def final(self, it: int) -> Iterator[Event]:
        """The run's end: encode what is left, then both models on every slice, in
        :data:`SWEEP_BATCH`-slice events nearest the view first."""
        yield from self.encode_pending()
        yield from self._show_both(it, list(range(len(self.images))))

    def sweep(self, it: int) -> Iterator[Event]:
        """Every slice, nearest the view first, :data:`SWEEP_BATCH` per event: both models
        where encoded, the U-Net alone elsewhere (``foundation_ready`` False, zero fm rows)."""
        n = len(self.images)
        ready = self.covered | set(self.fresh)
        self.fresh = []
        self.covered |= ready
        self.predicted_at.update(dict.fromkeys(ready, it))
        for chunk in self._view_chunks(range(n)):
            both = [i for i in chunk if i in ready]
            only = [i for i in chunk if i not in ready]
            fm_b, un_b = self.predict(both) if both else (None, None)
            un_o = self.predict_unet(only) if only else None
            shape = (un_b if un_b is not None else un_o).shape[1:]
            un = np.empty((len(chunk), *shape), np.float32)
            fm = np.zeros((len(chunk), *shape), np.float32)
            row = {z: r for r, z in enumerate(chunk)}
            if both:
                rows = [row[z] for z in both]
                fm[rows], un[rows] = fm_b, un_b
            if only:
                un[[row[z] for z in only]] = un_o
            flags = tuple(z in ready for z in chunk)
            yield Predictions(it, fm, un, tuple(chunk), n, foundation_ready=flags)
