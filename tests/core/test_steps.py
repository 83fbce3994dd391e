"""core.steps: the one-transfer step log with its NaN check, and the rank-0 broadcast."""

from __future__ import annotations

import math

import pytest
import torch

from napari_synfoc.core.steps import TrainingError, from_rank0, step_logs
from napari_synfoc.core.trainer import TrainingError as TrainerTrainingError


def test_step_logs_floats_with_nan_defaults():
    dev = torch.device("cpu")
    logs = step_logs(
        {"sup_unet": torch.tensor(0.25), "lam": 0.5, "loss": torch.tensor([1.5])}, dev, 3
    )
    assert logs["sup_unet"] == 0.25 and logs["lam"] == 0.5 and logs["loss"] == 1.5
    assert math.isnan(logs["alpha"]) and math.isnan(logs["confident_fraction"])
    # a logged alpha replaces the default
    assert (
        step_logs({"alpha": torch.tensor(0.75), "loss": torch.tensor(1.0)}, dev, 0)["alpha"]
        == 0.75
    )
    assert all(isinstance(v, float) for v in logs.values())


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_step_logs_refuses_a_non_finite_loss(bad):
    dev = torch.device("cpu")
    with pytest.raises(TrainingError, match=r"loss became .* at iteration 7 \(strategy ifl\)"):
        step_logs({"loss": torch.tensor(bad)}, dev, 7, "ifl")
    with pytest.raises(TrainingError, match="at iteration 7; training stopped"):
        step_logs({"loss": torch.tensor(bad)}, dev, 7)
    assert TrainingError is TrainerTrainingError  # the trainer's error, one class


def test_from_rank0_is_identity_outside_torch_distributed():
    x = torch.tensor([True, False, True])
    assert from_rank0(x, torch.device("cpu")) is x
