"""Device, precision and memory helpers (CUDA, then MPS, then CPU)."""

from __future__ import annotations

import contextlib
import gc
import resource
import sys

import torch


def pick_device(requested: str = "auto") -> torch.device:
    """The device to train on: ``requested`` if given, else CUDA, then MPS, then CPU."""
    if requested and requested != "auto":
        dev = torch.device(requested)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"device {requested!r} was asked for but CUDA is not available here"
            )
        if dev.type == "mps" and not (
            getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
        ):
            raise RuntimeError(f"device {requested!r} was asked for but MPS is not available here")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 arithmetic (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(requested: str, device: torch.device) -> str:
    """Concrete precision for ``requested`` ("auto", "fp32", "bf16", "fp16") on ``device``.

    auto: bf16 on GPUs that support it, fp16 (with a grad scaler) on older GPUs, bf16 on CPUs with
    native bf16 support, otherwise fp32.
    """
    if requested != "auto":
        if requested == "fp16" and device.type == "cpu":
            return "fp32"
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu":
        return "bf16" if cpu_supports_bf16() else "fp32"
    return "fp32"


def autocast(device: torch.device, precision: str):
    """An autocast context for ``precision`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_grad_scaler(device: torch.device, precision: str):
    """A GradScaler for fp16 on CUDA, else None (bf16 and fp32 need none)."""
    if precision == "fp16" and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / (1024.0 * 1024.0)


def memory_mb(device: torch.device) -> float:
    """Peak VRAM on CUDA, otherwise peak RSS, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_mb()


def lower_thread_priority(niceness: int = 10) -> bool:
    """Lower this thread's CPU priority (Linux: threads are tasks with their own nice value).

    Called by a background training thread before torch starts its compute threads, which
    inherit it: the GUI thread then keeps a core when it needs one, even on a 2-core laptop.
    Returns False where unsupported.
    """
    import os
    import threading

    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), niceness))
        return True
    except (AttributeError, OSError):
        return False


def release_memory(device: torch.device | None = None, collect: bool = True) -> None:
    """Give cached GPU memory back to the driver (after a full garbage collection if ``collect``;
    inside a GUI process pass False: a full collection of napari's heap holds the GIL ~0.3 s)."""
    if collect:
        gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        with contextlib.suppress(Exception):
            torch.mps.empty_cache()


def is_oom(exc: BaseException) -> bool:
    """True for an out-of-memory error on any backend."""
    if isinstance(exc, torch.cuda.OutOfMemoryError | MemoryError):
        return True
    msg = str(exc).lower()
    return "out of memory" in msg or "can't allocate memory" in msg


def usable_cores() -> int:
    """How many CPU cores this process may run on (its affinity mask, else the CPU count)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def cpu_policy(cores: int | None = None) -> tuple[int, int]:
    """(intra-op threads, niceness) for a training process on ``cores`` usable cores.

    From 3 cores on, one core stays free for the UI and the machine's other work; on 2 cores both
    are used (measured with ``benchmarks/speed.py --foreign-load`` on the 2-core CPU: 1 thread
    trains 1.5x slower on an idle machine, and with a second CPU-bound torch process both policies
    reach the same 1.55 s/it). The child's OpenMP threads wait passively, so two torch processes
    share the cores instead of spinning against each other. Priority: nice 10 on a single core (the
    UI must preempt training), else 0 (nice 5 made a foreign torch process take 3/4 of the CPU:
    3.8x slower iterations). ``NAPARI_SYNFOC_TRAIN_THREADS`` / ``NAPARI_SYNFOC_TRAIN_NICE``
    override both.
    """
    import os

    cores = usable_cores() if cores is None else max(1, int(cores))
    threads = cores if cores <= 2 else cores - 1
    niceness = 10 if cores == 1 else 0
    # named overrides for measuring other policies (benchmarks/speed.py --foreign-load) or a
    # user's machine
    threads = int(os.environ.get("NAPARI_SYNFOC_TRAIN_THREADS", threads))
    niceness = int(os.environ.get("NAPARI_SYNFOC_TRAIN_NICE", niceness))
    return max(1, threads), max(0, niceness)


def apply_child_cpu_policy(cores: int | None = None) -> tuple[int, int]:
    """Set this process's torch intra-op threads and OS priority from :func:`cpu_policy`.

    For a dedicated training process (it lowers the priority of the whole process; the process
    runner also sets ``OMP_WAIT_POLICY=PASSIVE`` before torch loads). Returns (threads,
    niceness).
    """
    import os

    threads, niceness = cpu_policy(cores)
    torch.set_num_threads(threads)
    with contextlib.suppress(OSError, AttributeError):
        current = os.getpriority(os.PRIO_PROCESS, 0)
        if niceness > current:
            os.nice(niceness - current)
    return threads, niceness
