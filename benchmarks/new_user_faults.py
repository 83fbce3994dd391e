"""Faults the new-user pass (:mod:`benchmarks.new_user_pass`) provokes inside the training
process.  They live in their own module so the ``spawn`` child can import them by name (the
pass itself runs as ``__main__``, which the child cannot see).
"""

from __future__ import annotations

import errno


def memory_error(event) -> None:
    """The second iteration asks for more memory than there is."""
    from napari_synfoc.core.events import Step

    if isinstance(event, Step) and event.iteration == 1:
        raise MemoryError("Unable to allocate 41.2 GiB for an array")


def disk_full(event) -> None:
    """From the start on, every checkpoint write finds the disk full."""
    from napari_synfoc.core.events import Started

    if isinstance(event, Started):
        import torch

        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        torch.save = full
