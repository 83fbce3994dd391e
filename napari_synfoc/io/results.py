"""Benchmark and run results on disk: atomic JSON, where caches live, what machine ran it.

Used by the CLI, the machine check and the benchmarks (``benchmarks/``, outside the package).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any


def json_default(o: Any):
    """JSON for numpy scalars/arrays and paths (``TypeError`` for anything else)."""
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write JSON to ``path`` through a temp file in the same folder and ``os.replace``.

    A reader never sees a half-written file; on an error the temp file is removed and the old
    file (if any) is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, default=json_default)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def default_cache_dir() -> Path:
    """Where caches go: ``$SYNFOC_CACHE`` or ``~/.cache/napari-synfoc``."""
    return Path(os.environ.get("SYNFOC_CACHE", Path.home() / ".cache" / "napari-synfoc"))


def device_name(dev) -> str:
    """A readable name of a torch device: the GPU's name, or the CPU model and core count."""
    import platform

    import torch

    if getattr(dev, "type", str(dev)) == "cuda":
        return f"cuda: {torch.cuda.get_device_name(dev)}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"cpu: {cpu} ({os.cpu_count()} cores)"


def git_commit() -> str:
    """The short commit of the package's checkout, or "unknown" outside a git tree."""
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                cwd=Path(__file__).resolve().parents[2],
                timeout=10,
            ).stdout.strip()
            or "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
