"""What "Training failed:" is followed by: no doubled prefix, no class name for an error that
explains itself, no command-line flag in the out-of-memory advice."""

from __future__ import annotations

from napari_synfoc.app.messages import message_problems
from napari_synfoc.core.checkpoint import CheckpointWriteError
from napari_synfoc.core.steps import TrainingError, failure_message


def test_an_error_that_explains_itself_is_shown_as_it_is():
    exc = CheckpointWriteError(28, "cannot write checkpoint '/x/last.pt': the disk is full")
    msg = failure_message(exc, 2)
    assert msg == "stopped at iteration 2: cannot write checkpoint '/x/last.pt': the disk is full"
    assert "training failed" not in msg.lower() and "CheckpointWriteError" not in msg
    assert failure_message(TrainingError("the loss became nan"), 5).endswith("the loss became nan")


def test_an_unexpected_error_keeps_its_type_and_out_of_memory_gives_the_lighter_settings():
    msg = failure_message(KeyError("fm_prob"), 7, "cpu")
    assert msg.startswith("stopped at iteration 7 by an unexpected error (KeyError)")
    oom = failure_message(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), 3, "cuda")
    assert oom.startswith("out of memory at iteration 3 on cuda") and "--" not in oom
    full = failure_message(OSError(28, "No space left on device"), 1)
    assert full == (
        "stopped at iteration 1: the disk is full; free some space or choose another folder"
    )
    for m in (msg, oom, full):
        assert message_problems("Training failed: " + m) == [], m
