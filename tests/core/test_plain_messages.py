"""Messages a user reads name no command-line flags (issue 23 item 13, core part)."""

from __future__ import annotations

import re

import torch

from napari_synfoc.core.checkpoint import CheckpointError, load_checkpoint
from napari_synfoc.core.steps import oom_message

FLAG = re.compile(r"(^|\s)--[a-z]")


def test_out_of_memory_message_names_settings_not_flags():
    text = oom_message("at iteration 3")
    assert not FLAG.search(text), text
    assert "a smaller U-Net input size" in text and "cpu-interactive" in text


def test_foreign_file_message_names_no_flags(tmp_path):
    foreign = tmp_path / "sam.pth"
    torch.save({"image_encoder.weight": torch.zeros(1)}, foreign)
    try:
        load_checkpoint(foreign)
    except CheckpointError as exc:
        text = str(exc)
    assert not FLAG.search(text), text
    assert "choose it as the foundation model's weights" in text


def test_constant_image_value_is_a_plain_number():
    """Was 'every pixel is np.float32(100.0)'."""
    import numpy as np

    from napari_synfoc.core.task import StackTask, validate_task

    img = np.full((3, 16, 16), 100.0, np.float32)
    lab = np.zeros((3, 16, 16), np.uint8)
    lab[0, 4:8, 4:8] = 1
    text = validate_task(StackTask(img, lab, [0]), "ct", "seg")
    assert "every pixel is 100)" in text and "np." not in text, text


def test_missing_vit_b_weights_message_names_no_flag():
    import pytest

    from napari_synfoc.config import SynFoCConfig

    with pytest.raises(ValueError) as info:
        SynFoCConfig(foundation="medsam-vitb", fm_size=512).validate()
    text = str(info.value)
    assert not FLAG.search(text), text
    assert "needs a checkpoint file" in text and "medsam_vit_b.pth" in text
