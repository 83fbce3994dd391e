"""CPU inference runtimes for an exported encoder: ONNX Runtime and OpenVINO.

:func:`open_session` returns a callable ``f(x: float32 ndarray) -> float32 ndarray`` for one
runtime, using ``threads`` intra-op threads (the caller passes torch's, i.e. what the training
child was given).  Both are imported lazily; a missing package raises
:class:`RuntimeUnavailable` naming it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

RUNTIMES = ("openvino", "onnxruntime")
RUNTIME_LABELS = {"torch": "torch", "onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}

Session = Callable[[np.ndarray], np.ndarray]


class RuntimeUnavailable(RuntimeError):
    """The runtime's package is not installed (or cannot be imported)."""


def runtime_version(name: str) -> str:
    """The installed version of runtime ``name``; raises :class:`RuntimeUnavailable`."""
    try:
        if name == "onnxruntime":
            import onnxruntime

            return str(onnxruntime.__version__)
        if name == "openvino":
            import openvino

            return str(openvino.__version__)
    except ImportError as exc:
        raise RuntimeUnavailable(f"{RUNTIME_LABELS[name]} is not installed ({exc})") from exc
    raise ValueError(f"unknown encoder runtime {name!r}; choose from {RUNTIMES}")


def _onnxruntime_session(path: Path, threads: int) -> Session:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only; failures surface as exceptions
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return sess.run(None, {name: x})[0]

    return run


def _openvino_session(path: Path, threads: int) -> Session:
    import openvino as ov

    props = {
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
        # f32 everywhere: on CPUs with bf16/AMX OpenVINO would otherwise drop to bf16
        "INFERENCE_PRECISION_HINT": "f32",
    }
    compiled = ov.Core().compile_model(str(path), "CPU", props)
    request = compiled.create_infer_request()
    lock = threading.Lock()  # an infer request serves one call at a time

    def run(x: np.ndarray) -> np.ndarray:
        with lock:
            return np.array(request.infer([x])[0], copy=True)

    return run


def open_session(name: str, path: str | Path, threads: int) -> Session:
    """A callable running the ONNX file ``path`` through runtime ``name`` on the CPU.

    Raises :class:`RuntimeUnavailable` when the package is missing; any other exception
    (corrupt file, unsupported graph) propagates for the caller to report.
    """
    runtime_version(name)
    threads = max(1, int(threads))
    if name == "onnxruntime":
        return _onnxruntime_session(Path(path), threads)
    return _openvino_session(Path(path), threads)
