"""Image channels vs the model's (issue 23 item 3): one message, used by Predict and scripts."""

from __future__ import annotations

import numpy as np
import pytest

from napari_synfoc.config import SynFoCConfig
from napari_synfoc.core.task import channel_problem


def test_channel_problem_cases():
    # matching: no problem
    assert channel_problem((4, 32, 32), rgb=False, model_channels=1) is None
    assert channel_problem((32, 32, 3), rgb=True, model_channels=3) is None
    assert channel_problem((4, 32, 32, 3), rgb=True, model_channels=3) is None
    # a grey stack of 3 slices is not colour (the channel axis is last)
    assert channel_problem((3, 32, 32), rgb=False, model_channels=1) is None
    # RGB layer, grey model
    msg = channel_problem((32, 32, 3), rgb=True, model_channels=1, image_name="us")
    assert msg.startswith("Image 'us' is a colour (RGB) image but the model was trained on grey")
    # grey layer, colour model
    msg = channel_problem((2, 32, 32), rgb=False, model_channels=3)
    assert "the image is a grey image but the model was trained on colour (RGB)" in msg
    # a (Y, X, 3) array not marked RGB: named as colour, whatever the model
    for channels in (1, 3):
        msg = channel_problem((96, 96, 3), rgb=False, model_channels=channels)
        assert "shape (96, 96, 3)" in msg and "looks like a colour (RGB) image" in msg
        assert "96 slices" in msg


def test_predict_stack_refuses_rgb_array_with_grey_model(monkeypatch):
    """Was: a (96, 96, 3) image predicted as 96 slices of 96 x 3 without a word."""
    from napari_synfoc.core import interactive

    cfg = SynFoCConfig().replace(in_channels=1)
    monkeypatch.setattr(
        interactive, "load_trained", lambda *a, **k: (cfg, None, None, "cpu", None)
    )
    img = np.random.default_rng(0).random((96, 96, 3)).astype(np.float32)
    with pytest.raises(ValueError) as info:
        interactive.predict_stack("model.synfoc", img, rgb=False)
    assert str(info.value) == channel_problem(img.shape, rgb=False, model_channels=1)
    with pytest.raises(ValueError, match="colour .RGB. image but the model was trained on grey"):
        interactive.predict_stack("model.synfoc", img, rgb=True)
