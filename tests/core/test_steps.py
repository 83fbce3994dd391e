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


def test_backward_and_step_steps_each_optimiser_in_order():
    import torch

    from napari_synfoc.core.steps import backward_and_step

    w1, w2 = torch.nn.Parameter(torch.tensor(1.0)), torch.nn.Parameter(torch.tensor(2.0))
    o1, o2 = torch.optim.SGD([w1], lr=0.5), torch.optim.SGD([w2], lr=0.25)
    loss = 3.0 * w1 + 4.0 * w2  # d/dw1 = 3, d/dw2 = 4
    backward_and_step(loss, None, o1, o2)
    assert w1.item() == 1.0 - 0.5 * 3.0 and w2.item() == 2.0 - 0.25 * 4.0

    class Scaler:  # records the grad scaler protocol: scale, step per optimiser, update
        def __init__(self):
            self.calls = []

        def scale(self, t):
            self.calls.append("scale")
            return t * 2.0

        def step(self, opt):
            self.calls.append(opt)

        def update(self):
            self.calls.append("update")

    sc = Scaler()
    w1.grad = None
    backward_and_step(2.0 * w1, sc, o2, o1)
    assert sc.calls == ["scale", o2, o1, "update"] and w1.grad.item() == 4.0
