"""Pre-flight check of a MedSAM / SAM ViT-B weights file (issue 23 item 11): every wrong file
is named in the user's words before any training process starts, without loading the model."""

from __future__ import annotations

import os

import pytest
import torch

from napari_synfoc.core.checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    check_foundation_checkpoint,
    save_checkpoint,
)

FORBIDDEN = ("--checkpoint", "--model", "weights_only", "Errno", "torch.load", "np.float")


def _vit_state(embed=768, depth=12, decoder=True):
    """The keys and shapes a SAM checkpoint has (values tiny where only the key matters)."""
    sd = {"image_encoder.patch_embed.proj.weight": torch.zeros(embed, 3, 16, 16)}
    for i in range(depth):
        sd[f"image_encoder.blocks.{i}.norm1.weight"] = torch.zeros(embed)
    sd["prompt_encoder.no_mask_embed.weight"] = torch.zeros(1, 256)
    if decoder:
        sd["mask_decoder.iou_token.weight"] = torch.zeros(1, 256)
    return sd


def _refused(path, foundation="medsam-vitb", cls=CheckpointError):
    with pytest.raises(cls) as info:
        check_foundation_checkpoint(path, foundation)
    text = str(info.value)
    for bad in FORBIDDEN:
        assert bad not in text, (bad, text)
    return text


def test_a_vit_b_file_passes(tmp_path):
    good = tmp_path / "medsam_vit_b.pth"
    torch.save(_vit_state(), good)
    assert check_foundation_checkpoint(good, "medsam-vitb") is None
    wrapped = tmp_path / "sam_vit_b.pth"
    torch.save({"model": _vit_state()}, wrapped)
    assert check_foundation_checkpoint(wrapped, "sam-vitb") is None


def test_missing_folder_empty_and_no_path(tmp_path):
    text = _refused(None)
    assert text.startswith("MedSAM ViT-B needs its weights file (medsam_vit_b.pth)")
    text = _refused(tmp_path / "medsam_vit_b.pth")
    assert "MedSAM ViT-B weights file 'medsam_vit_b.pth' does not exist" in text
    assert str(tmp_path) in text  # the folder looked in
    text = _refused(tmp_path)
    assert "is a folder, not a weights file" in text
    (tmp_path / "empty.pth").write_bytes(b"")
    assert "is empty (0 bytes)" in _refused(tmp_path / "empty.pth")


def test_not_torch_truncated_and_crafted(tmp_path):
    junk = tmp_path / "medsam_vit_b.pth"
    junk.write_bytes(b"<html>404 Not Found</html>")
    text = _refused(junk)
    assert "is not a PyTorch weights file, or it is incomplete" in text
    assert "download it again" in text
    good = tmp_path / "good.pth"
    torch.save(_vit_state(), good)
    trunc = tmp_path / "trunc.pth"
    trunc.write_bytes(good.read_bytes()[: os.path.getsize(good) // 2])
    assert "is not a PyTorch weights file, or it is incomplete" in _refused(trunc)
    crafted = tmp_path / "crafted.pth"

    class Boom:
        def __reduce__(self):
            return (os.makedirs, (str(tmp_path / "pwned"),))

    torch.save({"image_encoder.x": Boom()}, crafted)
    text = _refused(crafted, cls=UnsafeCheckpointError)
    assert "could run code" in text and not (tmp_path / "pwned").exists()


def test_files_of_the_wrong_kind(tmp_path):
    from napari_synfoc.core.foundation.litemedsam import litemedsam_weights_path
    from napari_synfoc.core.unet import UNet

    text = _refused(litemedsam_weights_path())
    assert "holds LiteMedSAM weights, not MedSAM ViT-B" in text
    unet = tmp_path / "unet.pth"
    torch.save(UNet(1, 2, (8, 16, 32, 64, 128)).state_dict(), unet)
    assert "does not hold a SAM image encoder" in _refused(unet)
    session = save_checkpoint(tmp_path / "run.synfoc", {"config": {}})
    text = _refused(session)
    assert "is a napari-synfoc session" in text and "Load session" in text
    vit_l = tmp_path / "sam_vit_l.pth"
    torch.save(_vit_state(embed=1024, depth=24), vit_l)
    text = _refused(vit_l, "sam-vitb")
    assert "holds a larger SAM (ViT-L, 1024 wide), not SAM ViT-B" in text
    encoder_only = tmp_path / "encoder.pth"
    torch.save(_vit_state(decoder=False), encoder_only)
    assert "has no mask decoder" in _refused(encoder_only)
    (tmp_path / "list.pth").write_bytes(b"")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    assert "does not hold model weights" in _refused(tmp_path / "list.pth")
