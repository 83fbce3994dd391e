"""Frozen-encoder image embeddings: the in-memory bank of a run and the disk cache across runs.

Only valid for a frozen encoder (the cpu-interactive profile): a LoRA encoder changes as it
trains.  :func:`frozen_encoder_id` names what the stored embeddings depend on.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..config import SynFoCConfig
from .device import autocast


def default_cache_root() -> Path:
    """The user's napari-synfoc cache folder: ``$NAPARI_SYNFOC_CACHE_DIR`` or the platform's
    user cache (``~/.cache/napari-synfoc`` on Linux).  Embeddings and the exported encoder
    (``encoder_runtime/``) live side by side in it."""
    root = os.environ.get("NAPARI_SYNFOC_CACHE_DIR")
    if not root:
        import platformdirs

        root = platformdirs.user_cache_dir("napari-synfoc")
    return Path(root)


def frozen_encoder_id(fm, cfg: SynFoCConfig) -> str:
    """Identity of a frozen encoder's outputs: model, input size and base weights."""
    bw = getattr(fm, "base_weights", {}) or {}
    sha = bw.get("sha256") or f"random-seed{cfg.seed}"
    return f"{cfg.foundation}-{fm.input_size}-{sha}"


class EmbeddingDiskCache:
    """Frozen-encoder embeddings of images, stored as fp16 ``.npy`` keyed by content and model."""

    def __init__(self, folder: str | Path, model_id: str):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.model_id = model_id

    def key(self, image: np.ndarray) -> str:
        """The file stem of ``image``'s embedding (SHA-1 of the model id and the pixels)."""
        h = hashlib.sha1(self.model_id.encode())
        h.update(np.ascontiguousarray(image, dtype=np.float32).tobytes())
        return h.hexdigest()

    def get(self, image: np.ndarray) -> np.ndarray | None:
        """The stored embedding of ``image`` or None (an unreadable file is removed)."""
        p = self.folder / f"{self.key(image)}.npy"
        if p.is_file():
            try:
                return np.load(p)
            except (OSError, ValueError):
                p.unlink(missing_ok=True)
        return None

    def fetch(self, image: np.ndarray, encode: Callable[[], np.ndarray]) -> np.ndarray:
        """The stored embedding of ``image``, or ``encode()`` stored now.

        Always the stored fp16 values, so a first run and a later one read the same numbers.
        """
        emb = self.get(image)
        if emb is None:
            emb = np.asarray(encode()).astype(np.float16)
            self.put(image, emb)
        return emb

    def put(self, image: np.ndarray, emb: np.ndarray) -> None:
        """Store ``emb`` for ``image`` (fp16, written through a temp file and a rename)."""
        p = self.folder / f"{self.key(image)}.npy"
        # a temp name of its own per writer: two threads or processes storing the same slice
        # at once (a prompt and a propagation, or the dock and its training child) never collide
        fd, tmp_name = tempfile.mkstemp(dir=self.folder, prefix=p.stem, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, emb.astype(np.float16))
            os.replace(tmp_name, p)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise


class EmbeddingBank:
    """Frozen-encoder image embeddings of one run, computed once per (key, flip) and reused.

    ``disk`` (an :class:`EmbeddingDiskCache`, or None) shares them across runs.
    """

    def __init__(self, fm, device, precision: str, disk: EmbeddingDiskCache | None = None):
        self.fm = fm
        self.device = device
        self.precision = precision
        self.disk = disk
        self.store: dict[tuple[str, bool], torch.Tensor] = {}

    @torch.no_grad()
    def compute(self, key: tuple[str, bool], image: torch.Tensor) -> torch.Tensor:
        """Embedding of one C×S×S image (stored in fp16 on the CPU); ``key[1]``: mirrored."""
        if key not in self.store:
            x = image[None]
            if key[1]:
                x = torch.flip(x, dims=[-1])

            def encode() -> np.ndarray:
                with autocast(self.device, self.precision):
                    emb = self.fm.encode(self.fm.normalize(x.to(self.device)))
                return emb[0].to("cpu", torch.float16).numpy()

            emb = self.disk.fetch(x[0].numpy(), encode) if self.disk is not None else encode()
            self.store[key] = torch.from_numpy(np.asarray(emb)).to(torch.float16)
        return self.store[key]

    @torch.no_grad()
    def compute_many(
        self, keys: Sequence[tuple[str, bool]], images: Sequence[torch.Tensor]
    ) -> int:
        """Store the embeddings of several C×S×S images with ONE encoder call for those neither
        in memory nor on disk (batched encoding is cheaper per image on a CPU); returns how many
        were encoded."""
        todo = []
        for key, image in zip(keys, images, strict=True):
            if key in self.store:
                continue
            x = torch.flip(image, dims=[-1]) if key[1] else image
            emb = self.disk.get(x.numpy()) if self.disk is not None else None
            if emb is None:
                todo.append((key, x))
            else:
                self.store[key] = torch.from_numpy(np.asarray(emb)).to(torch.float16)
        if todo:
            x = torch.stack([t for _, t in todo]).to(self.device)
            with autocast(self.device, self.precision):
                embs = self.fm.encode(self.fm.normalize(x)).to("cpu", torch.float16)
            for (key, img), emb in zip(todo, embs, strict=True):
                if self.disk is not None:
                    self.disk.put(img.numpy(), emb.numpy())
                self.store[key] = emb.clone()
        return len(todo)

    def batch(self, keys: Sequence[tuple[str, bool]], images: torch.Tensor) -> torch.Tensor:
        """Embeddings of a batch of C×S×S images, stacked on the bank's device (fp32)."""
        # fp32 before stacking: torch.stack of fp16 tensors fails under CPU autocast
        embs = [self.compute(k, images[i]).float() for i, k in enumerate(keys)]
        return torch.stack(embs).to(self.device)
