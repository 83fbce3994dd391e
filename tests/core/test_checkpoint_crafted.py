"""Crafted pickles (issue 23 item 4): every refused global, whatever its module, gives the
"could run code" message, and nothing in the file runs."""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess

import pytest
import torch

from napari_synfoc.core.checkpoint import UnsafeCheckpointError, load_checkpoint


class _Call:
    """Unpickling this calls ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


class Custom:
    """A class of this test module: unpickling it would import this module and set state."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __setstate__(self, state):
        open(state["marker"], "w").close()


def _payloads(marker):
    m = str(marker)
    return {
        "os.system": (_Call(os.system, f"touch {m}"), "system"),
        "os.makedirs": (_Call(os.makedirs, m), "os.makedirs"),
        "builtins.eval": (_Call(builtins.eval, f"open({m!r}, 'w')"), "eval"),
        "subprocess.Popen": (_Call(subprocess.Popen, ["touch", m]), "Popen"),
        "custom class": (Custom(m), "Custom"),
    }


@pytest.mark.parametrize("container", ["torch-zip", "raw-pickle-2", "raw-pickle-4"])
@pytest.mark.parametrize(
    "kind", ["os.system", "os.makedirs", "builtins.eval", "subprocess.Popen", "custom class"]
)
def test_every_refused_global_says_the_file_tried_to_run_code(tmp_path, container, kind):
    marker = tmp_path / "pwned"
    obj, shown = _payloads(marker)[kind]
    payload = {"format": "napari-synfoc/1", "config": {}, "x": obj}
    bad = tmp_path / "session.synfoc"
    if container == "torch-zip":
        torch.save(payload, bad)
    else:
        bad.write_bytes(pickle.dumps(payload, protocol=int(container[-1])))
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint(bad)
    text = str(info.value)
    assert "refused to open" in text and "could run code" in text, text
    assert shown in text, text
    assert "truncated or corrupt" not in text and "weights_only" not in text
    assert not marker.exists()
