"""The frozen image encoder exported once to ONNX, cached on disk and keyed by its weights.

Folder layout (``folder`` is ``encoder_runtime/`` beside the embeddings cache)::

    encoder-<key>.onnx        the graph (fixed batch 1: TinyViT's reshapes break a dynamic one)
    encoder-<key>.ref.npy     torch fp32 output of the probe input (the accuracy reference)
    encoder-<key>.json        metadata, written LAST: the export counts only once it exists

``key`` hashes the weights' SHA-256, the input shape, the opset, the exporter and the torch
version, so new weights or a new torch export again.  Every file is written to a temp file and
renamed (atomic); a reader checks the ONNX file's SHA-256 against the metadata, so a truncated
or altered file is exported again instead of being run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .weights import file_sha256

log = logging.getLogger(__name__)

EXPORT_OPSET = 17
EXPORT_BATCH = 1
EXPORTER = "torchscript"  # torch.onnx.export(dynamo=False); the dynamo exporter needs onnxscript
PROBE_SEED = 1234


class EncoderExportError(RuntimeError):
    """The encoder could not be exported to ONNX (or its export could not be written)."""


@dataclass(frozen=True)
class ExportedEncoder:
    """A verified export: the ONNX file, its torch reference output and metadata."""

    onnx_path: Path
    reference_path: Path
    meta: dict[str, Any]

    @property
    def key(self) -> str:
        return str(self.meta["key"])

    def probe_input(self) -> np.ndarray:
        """The fixed input the reference output was computed from."""
        return probe_input(tuple(self.meta["input_shape"]))

    def reference(self) -> np.ndarray:
        """torch fp32 output of :meth:`probe_input`."""
        return np.load(self.reference_path)


def probe_input(shape: tuple[int, ...]) -> np.ndarray:
    """A deterministic float32 image batch in [0, 1] (seeded, independent of global RNGs)."""
    return np.random.default_rng(PROBE_SEED).random(shape, dtype=np.float32)


def weights_digest(encoder: nn.Module, base_sha256: str | None) -> str:
    """The weights' SHA-256: the base weights file's when known, else of the state dict."""
    if base_sha256:
        return str(base_sha256).lower()
    h = hashlib.sha256()
    for name, t in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def export_key(weights_sha256: str, input_shape: tuple[int, ...]) -> str:
    """Hash of everything an export depends on (weights, shape, opset, exporter, torch)."""
    spec = {
        "weights": weights_sha256,
        "input_shape": list(input_shape),
        "opset": EXPORT_OPSET,
        "exporter": EXPORTER,
        "torch": torch.__version__,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def _paths(folder: Path, key: str) -> tuple[Path, Path, Path]:
    stem = folder / f"encoder-{key}"
    return stem.with_suffix(".onnx"), stem.with_suffix(".ref.npy"), stem.with_suffix(".json")


def _atomic_write(path: Path, write) -> None:
    """``write(fh)`` into a temp file in ``path``'s folder, then rename it onto ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached_export(folder: str | Path, key: str) -> ExportedEncoder | None:
    """The export stored under ``key`` if complete and intact, else None (reason logged)."""
    onnx_path, ref_path, meta_path = _paths(Path(folder), key)
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("key") != key:
            raise ValueError(f"metadata is for key {meta.get('key')!r}")
        if not ref_path.is_file() or np.load(ref_path).shape[0] != meta["input_shape"][0]:
            raise ValueError("reference output missing or unreadable")
        if file_sha256(onnx_path) != meta["onnx_sha256"]:
            raise ValueError("the ONNX file's SHA-256 differs from the one recorded at export")
    except Exception as exc:  # noqa: BLE001 - any defect means: export again
        log.warning("encoder export %s is unusable (%s); exporting again", onnx_path.name, exc)
        return None
    return ExportedEncoder(onnx_path, ref_path, meta)


@contextmanager
def _no_autocast():
    """CPU autocast off: the export and its reference are plain fp32."""
    with torch.autocast("cpu", enabled=False):
        yield


@torch.no_grad()
def export_encoder(
    encoder: nn.Module, folder: str | Path, key: str, input_shape: tuple[int, ...]
) -> ExportedEncoder:
    """Export ``encoder`` (eval mode, fp32, CPU) to ONNX under ``key`` and return it.

    Also stores the torch fp32 output of :func:`probe_input` and the seconds of one warm torch
    forward (``torch_seconds``, with this process's thread count).  Raises
    :class:`EncoderExportError` when torch cannot export the module.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path, ref_path, meta_path = _paths(folder, key)
    x = torch.from_numpy(probe_input(input_shape))
    with _no_autocast():
        ref = encoder(x).float()
        t0 = time.perf_counter()
        encoder(x)
        torch_seconds = time.perf_counter() - t0
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=onnx_path.name, suffix=".tmp")
    os.close(fd)
    try:
        t0 = time.perf_counter()
        # the training step calls the encoder under autocast (bf16 on CPUs with AMX): traced
        # there, the graph would hold bf16 casts that no runtime loads and no fp32 check passes
        with warnings.catch_warnings(), _no_autocast():
            warnings.simplefilter("ignore")  # tracer warnings about Python-int shapes (fixed)
            torch.onnx.export(
                encoder, (x,), tmp, opset_version=EXPORT_OPSET, dynamo=False,
                input_names=["image"], output_names=["embedding"],
            )  # fmt: skip
        export_seconds = time.perf_counter() - t0
        os.replace(tmp, onnx_path)
    except Exception as exc:
        Path(tmp).unlink(missing_ok=True)
        raise EncoderExportError(f"{type(exc).__name__}: {exc}") from exc
    _atomic_write(ref_path, lambda fh: np.save(fh, ref.numpy()))
    meta = {
        "key": key,
        "input_shape": list(input_shape),
        "output_shape": list(ref.shape),
        "opset": EXPORT_OPSET,
        "exporter": EXPORTER,
        "torch": torch.__version__,
        "onnx_sha256": file_sha256(onnx_path),
        "torch_seconds": torch_seconds,
        "torch_threads": torch.get_num_threads(),
        "export_seconds": export_seconds,
    }
    _atomic_write(meta_path, lambda fh: fh.write(json.dumps(meta, indent=1).encode()))
    log.info("exported the frozen encoder to %s in %.1f s", onnx_path, export_seconds)
    return ExportedEncoder(onnx_path, ref_path, meta)


def load_or_export(
    encoder: nn.Module, folder: str | Path, key: str, input_shape: tuple[int, ...]
) -> ExportedEncoder:
    """The cached export under ``key``, exported now when missing or damaged."""
    found = cached_export(folder, key)
    return found if found is not None else export_encoder(encoder, folder, key, input_shape)
