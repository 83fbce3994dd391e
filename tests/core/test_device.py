"""The training child's CPU policy: thread count and priority from the usable cores."""

from __future__ import annotations

import pytest

from napari_synfoc.core.device import cpu_policy


@pytest.mark.parametrize(
    ("cores", "expected"),
    [(1, (1, 10)), (2, (2, 0)), (3, (2, 0)), (8, (7, 0))],
)
def test_cpu_policy_by_cores(monkeypatch, cores, expected):
    monkeypatch.delenv("NAPARI_SYNFOC_TRAIN_THREADS", raising=False)
    monkeypatch.delenv("NAPARI_SYNFOC_TRAIN_NICE", raising=False)
    assert cpu_policy(cores) == expected


def test_cpu_policy_overrides(monkeypatch):
    monkeypatch.setenv("NAPARI_SYNFOC_TRAIN_THREADS", "1")
    monkeypatch.setenv("NAPARI_SYNFOC_TRAIN_NICE", "5")
    assert cpu_policy(8) == (1, 5)
    monkeypatch.setenv("NAPARI_SYNFOC_TRAIN_THREADS", "0")  # never below one thread
    assert cpu_policy(8)[0] == 1
