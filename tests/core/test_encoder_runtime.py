"""The frozen encoder's CPU runtime: export cache, ONNX Runtime / OpenVINO, choice, fallbacks.

A tiny seeded SAM ViT encoder (64 px, the ``tiny`` foundation's) stands in for LiteMedSAM's
TinyViT: its export takes about a second.  The real encoder is measured by
``benchmarks/encoder_runtime.py``.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import sys

import numpy as np
import pytest
import torch

from napari_synfoc.config import ENCODER_RUNTIMES, PROFILES, make_config
from napari_synfoc.core.foundation import FrozenEncoder, build_foundation
from napari_synfoc.core.foundation import encoder_export as ex
from napari_synfoc.core.foundation import frozen_encoder as fe
from napari_synfoc.core.foundation.frozen_encoder import RuntimeProbe, choose_runtime

pytest.importorskip("onnx")
LOG = "napari_synfoc.core.foundation"


def _tiny_fm(runtime: str = "torch"):
    cfg = make_config("tiny", freeze_encoder=True, lora_targets="none", encoder_runtime=runtime)
    return build_foundation(cfg)


@pytest.fixture(scope="module")
def tiny_encoder():
    return _tiny_fm().image_encoder


@pytest.fixture(scope="module")
def exported(tiny_encoder, tmp_path_factory):
    """A folder holding the tiny encoder's export and this machine's probe (made once)."""
    folder = tmp_path_factory.mktemp("encoder_runtime")
    enc = FrozenEncoder("auto", cache_dir=folder)
    enc(tiny_encoder, torch.rand(1, 3, 64, 64))
    return folder


@pytest.fixture
def folder(exported, tmp_path):
    """A private copy of the exported folder (tests may damage it)."""
    return shutil.copytree(exported, tmp_path / "encoder_runtime")


def _x(b: int = 3) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(5).random((b, 3, 64, 64), dtype=np.float32))


def _torch(encoder, x):
    with torch.no_grad():
        return encoder(x)


# --------------------------------------------------------------------- the choice (pure)


def test_choose_runtime_picks_the_fastest_runtime_that_beats_torch():
    probes = {
        "openvino": RuntimeProbe(seconds=0.74, max_abs_diff=2e-6),
        "onnxruntime": RuntimeProbe(seconds=0.83, max_abs_diff=2e-6),
    }
    assert choose_runtime("auto", 1.70, probes)[0] == "openvino"
    # explicit requests are honoured when the runtime works, even if slower
    assert choose_runtime("onnxruntime", 1.70, probes)[0] == "onnxruntime"
    assert choose_runtime("torch", 1.70, probes) == ("torch", "torch requested")
    # no runtime faster than torch (0.74 / 0.70 = 1.06 r): torch, and the reason says so
    name, why = choose_runtime("auto", 0.70, probes)
    assert name == "torch" and "1.06 r" in why
    # within 10 % of the fastest, the preference order (OpenVINO first) decides
    probes["onnxruntime"] = RuntimeProbe(seconds=0.70, max_abs_diff=2e-6)
    assert choose_runtime("auto", 1.70, probes)[0] == "openvino"  # 0.74 <= 1.1 * 0.70
    probes["onnxruntime"] = RuntimeProbe(seconds=0.60, max_abs_diff=2e-6)
    assert choose_runtime("auto", 1.70, probes)[0] == "onnxruntime"  # 0.74 > 1.1 * 0.60


def test_choose_runtime_skips_failed_runtimes_and_names_them():
    probes = {
        "openvino": RuntimeProbe(error="RuntimeUnavailable: OpenVINO is not installed"),
        "onnxruntime": RuntimeProbe(seconds=0.83, max_abs_diff=2e-6),
    }
    name, why = choose_runtime("auto", 1.70, probes)
    assert name == "onnxruntime" and "not installed" in why
    name, why = choose_runtime("openvino", 1.70, probes)
    assert name == "torch" and "OpenVINO unusable" in why and "not installed" in why
    probes["onnxruntime"] = RuntimeProbe(error="ValueError: output differs")
    assert choose_runtime("auto", 1.70, probes)[0] == "torch"


def test_config_choices_and_profiles():
    assert set(ENCODER_RUNTIMES) == {"auto", "torch", "onnxruntime", "openvino"}
    assert make_config("faithful").encoder_runtime == "torch"
    assert make_config("gpu-fast").encoder_runtime == "torch"
    assert make_config("cpu-interactive").encoder_runtime == "auto"
    assert "encoder_runtime" not in PROFILES["faithful"].overrides
    with pytest.raises(ValueError, match="encoder_runtime"):
        make_config("tiny", encoder_runtime="tensorrt")


def test_only_a_frozen_encoder_gets_a_runtime():
    assert _tiny_fm("torch").frozen_encoder is None
    assert _tiny_fm("auto").frozen_encoder.requested == "auto"
    lora = build_foundation(make_config("tiny", encoder_runtime="auto", lora_targets="qv"))
    assert lora.encoder_trainable and lora.frozen_encoder is None


# --------------------------------------------------------------------- export and cache


def test_export_is_cached_by_key_and_reused(exported, tiny_encoder, monkeypatch):
    onnx = list(exported.glob("encoder-*.onnx"))
    assert len(onnx) == 1
    meta = json.loads(onnx[0].with_suffix(".json").read_text())
    key = ex.export_key(ex.weights_digest(tiny_encoder, None), (1, 3, 64, 64))
    assert meta["key"] == key and onnx[0].name == f"encoder-{key}.onnx"
    assert meta["opset"] == ex.EXPORT_OPSET and meta["torch"] == torch.__version__
    # other weights, another key; the base weights' SHA-256 is used when given
    assert ex.export_key("0" * 64, (1, 3, 64, 64)) != key
    assert ex.weights_digest(tiny_encoder, "ABC") == "abc"

    def no_export(*a, **k):
        raise AssertionError("exported again")

    monkeypatch.setattr(ex, "export_encoder", no_export)
    monkeypatch.setattr(fe, "_probe_all", no_export)  # the machine's probe is reused too
    enc = FrozenEncoder("auto", cache_dir=exported)
    out = enc(tiny_encoder, _x())
    assert enc.active in ("onnxruntime", "openvino"), enc.status
    assert torch.allclose(out, _torch(tiny_encoder, _x()), atol=fe.EMBED_TOLERANCE, rtol=0)


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_runtime_matches_torch(folder, tiny_encoder, runtime):
    pytest.importorskip(runtime)
    enc = FrozenEncoder(runtime, cache_dir=folder)
    x = _x(3)
    out = enc(tiny_encoder, x)
    assert enc.active == runtime, enc.status
    assert out.shape == (3, 32, 4, 4) and out.dtype == torch.float32
    diff = (out - _torch(tiny_encoder, x)).abs().max().item()
    assert 0 <= diff <= fe.EMBED_TOLERANCE
    # copies (the EMA teacher) share the one session
    assert copy.deepcopy(enc) is enc


def test_foundation_encode_goes_through_the_runtime(folder, monkeypatch):
    fm = _tiny_fm("onnxruntime")
    fm.frozen_encoder.cache_dir = folder
    calls = []
    real = fe.FrozenEncoder.__call__
    monkeypatch.setattr(
        fe.FrozenEncoder, "__call__", lambda s, e, x: calls.append(1) or real(s, e, x)
    )
    x = fm.normalize(_x(2))
    out = fm.encode(x)
    assert calls and fm.frozen_encoder.active == "onnxruntime"
    assert torch.allclose(out, _torch(fm.image_encoder, x), atol=fe.EMBED_TOLERANCE, rtol=0)


# --------------------------------------------------------------------- fallbacks


def test_missing_runtimes_fall_back_to_torch(folder, tiny_encoder, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    monkeypatch.setitem(sys.modules, "openvino", None)
    x = _x(2)
    for requested in ("onnxruntime", "auto"):
        enc = FrozenEncoder(requested, cache_dir=folder)
        with caplog.at_level(logging.WARNING, logger=LOG):
            out = enc(tiny_encoder, x)
        assert enc.active == "torch"
        assert "not installed" in enc.status and "not installed" in caplog.text
        assert torch.equal(out, _torch(tiny_encoder, x))  # torch itself, bit for bit
        caplog.clear()


def test_corrupt_export_is_exported_again(folder, tiny_encoder, caplog):
    onnx = next(folder.glob("encoder-*.onnx"))
    onnx.write_bytes(b"not an onnx file")
    enc = FrozenEncoder("onnxruntime", cache_dir=folder)
    with caplog.at_level(logging.WARNING, logger=LOG):
        out = enc(tiny_encoder, _x())
    assert "exporting again" in caplog.text and "SHA-256" in caplog.text
    assert enc.active == "onnxruntime"
    assert onnx.stat().st_size > 1000
    assert torch.allclose(out, _torch(tiny_encoder, _x()), atol=fe.EMBED_TOLERANCE, rtol=0)


def test_unloadable_export_falls_back_to_torch(folder, tiny_encoder, caplog):
    """A file that passes the hash check (metadata rewritten too) but no runtime can open."""
    onnx = next(folder.glob("encoder-*.onnx"))
    onnx.write_bytes(b"garbage that still has the recorded hash")
    meta_path = onnx.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["onnx_sha256"] = ex.file_sha256(onnx)
    meta_path.write_text(json.dumps(meta))
    enc = FrozenEncoder("auto", cache_dir=folder)
    with caplog.at_level(logging.WARNING, logger=LOG):
        out = enc(tiny_encoder, _x(1))
    assert enc.active == "torch" and "no runtime usable" in enc.status
    assert "ONNX Runtime" in caplog.text and "OpenVINO" in caplog.text
    assert torch.equal(out, _torch(tiny_encoder, _x(1)))


def test_runtime_error_during_a_call_falls_back_for_good(folder, tiny_encoder, caplog):
    enc = FrozenEncoder("onnxruntime", cache_dir=folder)
    enc(tiny_encoder, _x(1))
    assert enc.active == "onnxruntime"

    def broken(x):
        raise RuntimeError("bad alloc")

    enc._session = broken
    with caplog.at_level(logging.WARNING, logger=LOG):
        out = enc(tiny_encoder, _x(2))
    assert torch.equal(out, _torch(tiny_encoder, _x(2)))
    assert enc.active == "torch" and "bad alloc" in enc.status and "bad alloc" in caplog.text


def test_other_input_shape_runs_torch(folder, tiny_encoder, caplog):
    enc = FrozenEncoder("onnxruntime", cache_dir=folder)
    enc(tiny_encoder, _x(1))
    enc._shape = (3, 32, 32)  # as if exported for another size
    with caplog.at_level(logging.WARNING, logger=LOG):
        out = enc(tiny_encoder, _x(1))
    assert torch.equal(out, _torch(tiny_encoder, _x(1))) and "not the exported" in caplog.text


def test_unwritable_cache_folder_falls_back(tmp_path, tiny_encoder, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    enc = FrozenEncoder("auto", cache_dir=blocker / "encoder_runtime")
    with caplog.at_level(logging.WARNING, logger=LOG):
        out = enc(tiny_encoder, _x(1))
    assert (
        enc.active == "torch" and "export failed" in enc.status and "export failed" in caplog.text
    )
    assert torch.equal(out, _torch(tiny_encoder, _x(1)))


def test_export_under_bf16_autocast_is_fp32(tiny_encoder, tmp_path):
    """The training step encodes under autocast (bf16 on CPUs with AMX, issue 22): the export
    made there must still be a plain fp32 graph that the runtimes load and that matches torch."""
    import onnx

    enc = FrozenEncoder("auto", cache_dir=tmp_path)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        enc(tiny_encoder, torch.rand(1, 3, 64, 64))
    model = onnx.load(str(next(tmp_path.glob("encoder-*.onnx"))))
    bf16 = onnx.TensorProto.BFLOAT16
    casts = [n.name for n in model.graph.node if n.op_type == "Cast"
             and any(a.name == "to" and a.i == bf16 for a in n.attribute)]  # fmt: skip
    weights = [t.name for t in model.graph.initializer if t.data_type == bf16]
    assert not casts and not weights
    assert enc.active in ("onnxruntime", "openvino"), enc.status
