"""The frozen image encoder's forward on the CPU: torch, ONNX Runtime or OpenVINO.

:class:`FrozenEncoder` sits under :meth:`FoundationSegmenter.encode` and the prompt
segmenter's encoder call, so every caller keeps calling the same function.  It is only used
for a frozen encoder (no LoRA, no gradient) on the CPU; anything else runs torch.

``requested`` (config ``encoder_runtime``):

- ``"torch"``: torch, always (the faithful and GPU profiles).
- ``"onnxruntime"`` / ``"openvino"``: that runtime, if it loads and matches torch.
- ``"auto"``: a probe on the first CPU call: the export's torch fp32 reference and each
  installed runtime on one fixed input; the fastest runtime whose output matches torch within
  :data:`EMBED_TOLERANCE` wins if it is faster than torch.  The result is cached per machine
  (CPU model, threads, library versions) beside the export, so later processes skip the probe.

Every failure (runtime not installed, export impossible, corrupt file, session creation,
shape mismatch, a call that raises) falls back to torch with the reason in the log and in
:attr:`FrozenEncoder.status`; nothing is silent and nothing crashes.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...config import ENCODER_RUNTIMES
from . import encoder_export as ex
from .encoder_runtimes import RUNTIME_LABELS, RUNTIMES, RuntimeUnavailable, open_session
from .encoder_runtimes import runtime_version as _runtime_version

log = logging.getLogger(__name__)

# Largest |runtime - torch| accepted on the probe input.  Embeddings are stored in fp16, whose
# rounding step near the largest LiteMedSAM values (~0.6) is 2**-11 ≈ 4.9e-4; 1e-4 is well
# below what the cache itself changes.  Measured: 2.6e-6 for both runtimes (opset 17).
EMBED_TOLERANCE = 1e-4
TIE_MARGIN = 1.10


@dataclass
class RuntimeProbe:
    """One runtime's probe: warm seconds per image, max |diff| to torch, or why it failed."""

    seconds: float | None = None
    max_abs_diff: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.seconds is not None


def choose_runtime(
    requested: str, torch_seconds: float, probes: dict[str, RuntimeProbe]
) -> tuple[str, str]:
    """``(runtime, reason)`` for ``requested`` given the probes (pure; see module doc)."""
    if requested == "torch":
        return "torch", "torch requested"
    if requested != "auto":
        p = probes.get(requested)
        if p is not None and p.ok:
            return requested, f"{RUNTIME_LABELS[requested]} requested"
        why = p.error if p is not None else "not probed"
        return "torch", f"{RUNTIME_LABELS[requested]} unusable: {why}"
    good = {n: p for n, p in probes.items() if p.ok}
    failed = "; ".join(f"{RUNTIME_LABELS[n]}: {p.error}" for n, p in probes.items() if not p.ok)
    if not good:
        return "torch", f"no runtime usable ({failed or 'none probed'})"
    fastest = min(p.seconds for p in good.values())
    # within TIE_MARGIN of the fastest, RUNTIMES' order decides: one best-of-2 probe on a busy
    # machine is that noisy, and interleaved rounds found OpenVINO ahead (encoder_runtime_cpu)
    best = next(n for n in RUNTIMES if n in good and good[n].seconds <= fastest * TIE_MARGIN)
    ratio = good[best].seconds / torch_seconds
    if ratio >= 1.0:
        return (
            "torch",
            f"no runtime faster than torch (best {RUNTIME_LABELS[best]}: {ratio:.2f} r)",
        )
    return best, "the fastest in this machine's probe" + (f" ({failed})" if failed else "")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_id(threads: int) -> str:
    """What a probe's outcome depends on: CPU, threads, torch and runtime versions."""
    versions = []
    for name in RUNTIMES:
        try:
            versions.append(f"{name}={_runtime_version(name)}")
        except RuntimeUnavailable:
            versions.append(f"{name}=missing")
    return "|".join([cpu_model(), f"threads={threads}", f"torch={torch.__version__}", *versions])


class ProbeRecords:
    """Probe outcomes of one export, per machine id, in ``probe-<key>.json`` (atomic)."""

    def __init__(self, folder: Path, key: str):
        self.path = folder / f"probe-{key}.json"

    def read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def get(self, machine: str, onnx_sha256: str) -> dict[str, Any] | None:
        """The record of ``machine`` for the export with ``onnx_sha256``, else None."""
        rec = self.read().get(machine)
        try:
            if rec["onnx_sha256"] == onnx_sha256 and rec["choice"] in ENCODER_RUNTIMES:
                {n: RuntimeProbe(**p) for n, p in rec["probes"].items()}  # well-formed?
                float(rec["torch_seconds"])
                return rec
        except (KeyError, TypeError, ValueError):
            pass
        return None

    def put(self, machine: str, record: dict[str, Any]) -> None:
        data = self.read()
        data[machine] = record
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh, indent=1)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def probe_runtime(name: str, export: ex.ExportedEncoder, threads: int, timed: bool = True):
    """Open runtime ``name`` on ``export``, check its output against torch's and (``timed``)
    time two warm calls: ``(session or None, RuntimeProbe)``."""
    try:
        session = open_session(name, export.onnx_path, threads)
        x, ref = export.probe_input(), export.reference()
        out = session(x)  # the first call also warms the runtime up
        if out.shape != ref.shape:
            raise ValueError(f"output shape {out.shape}, torch gives {ref.shape}")
        diff = float(np.abs(out.astype(np.float32) - ref).max())
        if not diff <= EMBED_TOLERANCE:
            raise ValueError(f"output differs from torch by {diff:.2e} > {EMBED_TOLERANCE:.0e}")
        times = []
        for _ in range(2 if timed else 0):
            t0 = time.perf_counter()
            session(x)
            times.append(time.perf_counter() - t0)
        return session, RuntimeProbe(seconds=min(times) if times else None, max_abs_diff=diff)
    except Exception as exc:  # noqa: BLE001 - reported as the probe's error, torch stays
        return None, RuntimeProbe(error=f"{type(exc).__name__}: {exc}")


class FrozenEncoder:
    """The frozen encoder's forward through the chosen runtime (see the module doc).

    ``requested``: one of :data:`ENCODER_RUNTIMES`; ``cache_dir``: the export folder (None:
    ``encoder_runtime/`` in the user cache, beside the embeddings); ``weights_sha256``: the
    base weights' digest (None: hashed from the encoder's state dict).  Thread-safe.
    :attr:`active` is the runtime in use once prepared, :attr:`status` says why.
    """

    def __init__(
        self,
        requested: str = "torch",
        cache_dir: str | Path | None = None,
        weights_sha256: str | None = None,
    ):
        if requested not in ENCODER_RUNTIMES:
            raise ValueError(
                f"encoder_runtime must be one of {ENCODER_RUNTIMES}, not {requested!r}"
            )
        self.requested = requested
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.weights_sha256 = weights_sha256
        self.active = "torch"
        self.status = "Encoder: torch" + (
            " (runtime not probed yet)" if requested != "torch" else ""
        )
        self._session = None
        self._shape: tuple[int, ...] | None = None
        self._prepared = requested == "torch"
        self._lock = threading.Lock()

    # copies (an EMA teacher is a deepcopy of its student) share the one session
    def __deepcopy__(self, memo):
        return self

    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(_session=None, _lock=None, _prepared=self.requested == "torch")
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _fall_back(self, reason: str) -> None:
        self._session, self.active = None, "torch"
        self.status = f"Encoder: torch ({reason})"
        log.warning("frozen encoder runs on torch: %s", reason)

    def __call__(self, encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``encoder(x)`` for a ``B×3×S×S`` batch, through the runtime when one is active."""
        if self.requested == "torch" or x.device.type != "cpu":
            return encoder(x)
        if not self._prepared:
            with self._lock:
                if not self._prepared:
                    try:
                        self._prepare(encoder, tuple(x.shape[1:]))
                    except Exception as exc:  # noqa: BLE001 - never crash a run over this
                        self._fall_back(f"runtime setup failed: {type(exc).__name__}: {exc}")
                    self._prepared = True
        session = self._session
        if session is None:
            return encoder(x)
        if tuple(x.shape[1:]) != self._shape:
            log.warning("frozen encoder: input %s is not the exported %s; torch for this call",
                        tuple(x.shape), self._shape)  # fmt: skip
            return encoder(x)
        try:
            xs = np.ascontiguousarray(x.detach().float().numpy())
            out = np.concatenate([session(xs[i : i + 1]) for i in range(xs.shape[0])])
            if out.shape[0] != xs.shape[0]:
                raise ValueError(f"runtime gave {out.shape[0]} embeddings for {xs.shape[0]}")
            return torch.from_numpy(out)
        except Exception as exc:  # noqa: BLE001 - fall back for good, with the reason
            with self._lock:
                self._fall_back(
                    f"{RUNTIME_LABELS[self.active]} failed: {type(exc).__name__}: {exc}"
                )
            return encoder(x)

    def _folder(self) -> Path:
        if self.cache_dir is not None:
            return self.cache_dir
        from ..embeddings import default_cache_root

        return default_cache_root() / "encoder_runtime"

    def _prepare(self, encoder: nn.Module, chw: tuple[int, ...]) -> None:
        """Export (or reuse the export), probe (or reuse this machine's probe), open the
        runtime the request and the probe pick."""
        threads = torch.get_num_threads()
        try:
            folder = self._folder()
            shape = (ex.EXPORT_BATCH, *chw)
            key = ex.export_key(ex.weights_digest(encoder, self.weights_sha256), shape)
            export = ex.load_or_export(encoder, folder, key, shape)
        except Exception as exc:  # noqa: BLE001
            self._fall_back(f"export failed: {type(exc).__name__}: {exc}")
            return
        records, machine = ProbeRecords(folder, key), machine_id(threads)
        rec, sessions = records.get(machine, export.meta["onnx_sha256"]), {}
        if rec is None:
            rec, sessions = _probe_all(encoder, export, threads)
            try:
                records.put(machine, rec)
            except OSError as exc:
                log.warning("could not store the encoder probe (%s); it runs again next time", exc)
        probes = {n: RuntimeProbe(**p) for n, p in rec["probes"].items()}
        if self.requested == "auto":
            name, reason = rec["choice"], rec["reason"]
        else:
            name, reason = choose_runtime(self.requested, rec["torch_seconds"], probes)
        if name == "torch":
            self._fall_back(reason)
            return
        session = sessions.get(name)
        if session is None:  # a stored probe: open and check the runtime again, untimed
            session, check = probe_runtime(name, export, threads, timed=False)
            if session is None:
                self._fall_back(f"{RUNTIME_LABELS[name]} failed: {check.error}")
                return
        self._session, self._shape, self.active = session, chw, name
        ratio = probes[name].seconds / rec["torch_seconds"]
        self.status = (
            f"Encoder: {RUNTIME_LABELS[name]} ({reason}: {ratio:.2f} r, {threads} threads)"
        )
        log.info("frozen encoder runs on %s: %s", RUNTIME_LABELS[name], reason)


def _probe_all(encoder: nn.Module, export: ex.ExportedEncoder, threads: int):
    """Probe every runtime and torch: ``(record, {runtime: session})``."""
    sessions, probes = {}, {}
    for name in RUNTIMES:
        session, probes[name] = probe_runtime(name, export, threads)
        if session is not None:
            sessions[name] = session
    torch_s = _torch_seconds(encoder, export, threads)
    choice, reason = choose_runtime("auto", torch_s, probes)
    record = {
        "choice": choice,
        "reason": reason,
        "onnx_sha256": export.meta["onnx_sha256"],
        "torch_seconds": torch_s,
        "probes": {n: vars(p) for n, p in probes.items()},
    }
    return record, sessions


def _torch_seconds(encoder: nn.Module, export: ex.ExportedEncoder, threads: int) -> float:
    """One warm torch fp32 forward of the probe input: the export's timing when it was taken
    with these threads, else measured now."""
    if export.meta.get("torch_threads") == threads and export.meta.get("torch_seconds"):
        return float(export.meta["torch_seconds"])
    x = torch.from_numpy(export.probe_input())
    with torch.no_grad(), torch.autocast("cpu", enabled=False):
        encoder(x)
        t0 = time.perf_counter()
        encoder(x)
        return time.perf_counter() - t0
