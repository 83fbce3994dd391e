"""Decoder class heads started from the pretrained single-mask token (interactive lever)."""

from __future__ import annotations

import copy

import pytest
import torch

from napari_synfoc.config import make_config
from napari_synfoc.core.foundation import build_foundation
from napari_synfoc.core.foundation.base import reset_decoder_heads


def _decoder():
    # the tiny SAM-shaped model's decoder (4 classes here, so token 0 differs from the others)
    return build_foundation(make_config("tiny", num_classes=4)).mask_decoder


def test_pretrained_heads_copy_token_zero_and_negate_background():
    dec = _decoder()
    tok0 = dec.mask_tokens.weight.detach()[0].clone()
    mlp0 = copy.deepcopy(dec.output_hypernetworks_mlps[0])
    reset_decoder_heads(dec, 3, "pretrained")
    assert dec.num_mask_tokens == 3 and dec.mask_tokens.weight.shape[0] == 3
    for k in range(3):
        assert torch.equal(dec.mask_tokens.weight[k], tok0)
    x = torch.randn(5, tok0.numel())
    fg = mlp0(x)
    # foreground classes: the pretrained MLP unchanged; background: its output negated
    torch.testing.assert_close(dec.output_hypernetworks_mlps[1](x), fg)
    torch.testing.assert_close(dec.output_hypernetworks_mlps[2](x), fg)
    torch.testing.assert_close(dec.output_hypernetworks_mlps[0](x), -fg)
    # the copies are independent parameters (training one class leaves the others)
    assert (
        dec.output_hypernetworks_mlps[1].layers[0].weight.data_ptr()
        != dec.output_hypernetworks_mlps[2].layers[0].weight.data_ptr()
    )


def test_pretrained_heads_background_logit_is_minus_foreground():
    fm = build_foundation(make_config("tiny", fm_head_init="pretrained"))
    emb = torch.randn(2, *fm.embed_shape)
    with torch.no_grad():
        out = fm.decode(emb)
    assert out.shape[1] == 2
    torch.testing.assert_close(out[:, 0], -out[:, 1])


def test_random_heads_are_the_default_and_differ_per_class():
    fm = build_foundation(make_config("tiny"))
    w = fm.mask_decoder.mask_tokens.weight
    assert not torch.equal(w[0], w[1])


def test_unknown_head_init_is_rejected():
    with pytest.raises(ValueError, match="pretrained"):
        reset_decoder_heads(_decoder(), 2, "zeros")


def test_head_learning_rate_groups():
    from napari_synfoc.core.trainer import fm_param_groups

    fm = build_foundation(make_config("tiny"))
    n_all = len(fm.trainable_named_parameters())
    # the paper: one group at fm_lr
    (g,) = fm_param_groups(fm, make_config("tiny", fm_lr=1e-4))
    assert len(g["params"]) == n_all and g["base_lr"] == 1e-4
    rest, heads = fm_param_groups(fm, make_config("tiny", fm_lr=1e-4, fm_head_lr=1e-3))
    assert (rest["lr"], heads["lr"]) == (1e-4, 1e-3)
    assert len(rest["params"]) + len(heads["params"]) == n_all
    ids = {id(p) for p in heads["params"]}
    dec = fm.mask_decoder
    assert id(dec.mask_tokens.weight) in ids
    assert all(id(p) in ids for p in dec.output_hypernetworks_mlps.parameters())
    assert id(dec.iou_token.weight) not in ids
