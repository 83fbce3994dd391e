"""Mean-Teacher EMA with warm start (spec §6.3)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from napari_synfoc.core.ema import ema_decay, ema_update, ema_update_modules, param_pairs


def test_decay_schedule():
    assert ema_decay(0) == 0.0
    assert ema_decay(1) == 0.5
    assert ema_decay(50) == pytest.approx(1 - 1 / 51)
    assert ema_decay(98) == pytest.approx(1 - 1 / 99)
    assert ema_decay(98) < 0.99
    assert ema_decay(99) == pytest.approx(0.99)
    assert ema_decay(10_000) == 0.99
    assert ema_decay(10_000, decay=0.9) == 0.9


def _net():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def test_warm_start_and_half_step():
    torch.manual_seed(0)
    student, teacher = _net(), _net()
    ema_update(teacher.parameters(), student.parameters(), t=0)
    for tp, sp in zip(teacher.parameters(), student.parameters()):
        assert torch.equal(tp, sp)
    before = [p.detach().clone() for p in teacher.parameters()]
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    ema_update(teacher.parameters(), student.parameters(), t=1)
    for tp, b, sp in zip(teacher.parameters(), before, student.parameters()):
        assert torch.allclose(tp, 0.5 * b + 0.5 * sp)
    ema_update(teacher.parameters(), student.parameters(), t=200)
    t0 = [p.detach().clone() for p in teacher.parameters()]
    ema_update(teacher.parameters(), student.parameters(), t=300)
    for tp, b, sp in zip(teacher.parameters(), t0, student.parameters()):
        assert torch.allclose(tp, 0.99 * b + 0.01 * sp)
    with pytest.raises(ValueError, match="teacher tensors"):
        ema_update(list(teacher.parameters())[:1], student.parameters(), t=1)


def test_buffers_untouched_and_name_subset():
    torch.manual_seed(0)
    student = _net()
    teacher = copy.deepcopy(student)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(2.0)
    student[1].running_mean.fill_(5.0)
    ema_update_modules(teacher, student, t=1, names={"0.weight"})
    assert torch.allclose(teacher[0].weight, student[0].weight - 1.0)
    assert torch.allclose(teacher[0].bias, student[0].bias - 2.0)  # not in names: unchanged
    assert torch.equal(teacher[1].running_mean, torch.zeros(4))  # buffers never averaged
    ema_update_modules(teacher, student, t=0)
    for (n, tp), sp in zip(teacher.named_parameters(), student.parameters()):
        assert torch.equal(tp, sp), n
    assert torch.equal(teacher[1].running_mean, torch.zeros(4))
    with pytest.raises(ValueError, match="missing"):
        ema_update_modules(teacher, student, t=1, names={"nope.weight"})


def test_param_pairs_match_by_name_and_feed_ema_update():
    torch.manual_seed(0)
    student = _net()
    teacher = copy.deepcopy(student)
    tps, sps = param_pairs(teacher, student)
    names = sorted(n for n, _ in student.named_parameters())
    assert len(tps) == len(sps) == len(names)
    named_t, named_s = dict(teacher.named_parameters()), dict(student.named_parameters())
    assert all(a is named_t[n] and b is named_s[n] for n, a, b in zip(names, tps, sps))
    with torch.no_grad():
        for p in student.parameters():
            p.add_(2.0)
    sub = param_pairs(teacher, student, {"0.weight"})
    ema_update(*sub, t=1)  # decay 0.5: the teacher moves halfway (2.0 -> 1.0 behind)
    assert torch.allclose(teacher[0].weight, student[0].weight - 1.0)
    assert torch.allclose(teacher[0].bias, student[0].bias - 2.0)
    with pytest.raises(ValueError, match="missing"):
        param_pairs(teacher, student, {"nope.weight"})
