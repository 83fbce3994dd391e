"""The classic U-Net (spec §6.1): parameter count derived by hand, shapes, odd sizes, precision."""

from __future__ import annotations

import pytest
import torch

from napari_synfoc.config import make_config
from napari_synfoc.core.unet import UNet, build_unet, count_parameters


def _double_conv(a: int, b: int) -> int:
    # two 3×3 convs without bias, each followed by BatchNorm (weight + bias)
    return 9 * a * b + 2 * b + 9 * b * b + 2 * b


def _expected_params(c_in: int, k: int, f: tuple[int, ...]) -> int:
    n = _double_conv(c_in, f[0])
    n += sum(_double_conv(a, b) for a, b in zip(f[:-1], f[1:]))
    for deep, skip in zip(f[:0:-1], f[-2::-1]):
        n += 4 * deep * skip + skip  # 2×2 transposed conv with bias
        n += _double_conv(2 * skip, skip)
    return n + f[0] * k + k  # 1×1 head


def test_paper_width_parameter_count():
    # Hand sum for in=1, K=2: inc 37,696; downs 221,696 + 885,760 + 3,540,992 + 14,159,872;
    # ups 9,177,600 + 2,295,040 + 574,080 + 143,680; head 130  → 31,036,546 (about 31 M).
    assert _expected_params(1, 2, (64, 128, 256, 512, 1024)) == 31_036_546
    assert count_parameters(UNet(1, 2)) == 31_036_546
    # RGB input adds 9·64·2 weights to the first conv
    assert count_parameters(UNet(3, 2)) == 31_036_546 + 9 * 64 * 2


def test_cpu_width_parameter_count_and_no_dropout():
    f = (16, 32, 64, 128, 256)
    net = UNet(1, 3, f)
    assert count_parameters(net) == _expected_params(1, 3, f)
    assert not any(isinstance(m, torch.nn.Dropout | torch.nn.Dropout2d) for m in net.modules())
    convs = [
        m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)
    ]
    assert convs and all(m.bias is None for m in convs)
    assert len([m for m in net.modules() if isinstance(m, torch.nn.MaxPool2d)]) == 4
    assert len([m for m in net.modules() if isinstance(m, torch.nn.ConvTranspose2d)]) == 4


@pytest.mark.parametrize("size", [(64, 64), (37, 50), (17, 16), (5, 9)])
def test_output_shape_any_size(size):
    torch.manual_seed(0)
    net = UNet(2, 4, (4, 8, 16, 32, 64)).eval()
    x = torch.rand(2, 2, *size)
    y = net(x)
    assert y.shape == (2, 4, *size)
    assert torch.isfinite(y).all()


def test_padding_is_bottom_right_and_cropped():
    # a size that is already a multiple of 16 is not padded: the top-left output of a 30×30
    # input equals that of the same content zero-padded to 32×32 by hand
    torch.manual_seed(1)
    net = UNet(1, 2, (4, 8, 16, 32, 64)).eval()
    x = torch.rand(1, 1, 30, 30)
    padded = torch.nn.functional.pad(x, (0, 2, 0, 2))
    with torch.no_grad():
        assert torch.allclose(net(x), net(padded)[..., :30, :30], atol=1e-6)


def test_wrong_channels_error():
    net = UNet(1, 2, (4, 8, 16, 32, 64))
    with pytest.raises(ValueError, match="B×1×H×W"):
        net(torch.rand(1, 3, 32, 32))


def test_bf16_autocast_and_channels_last():
    cfg = make_config("tiny", channels_last=True, num_classes=3)
    net = build_unet(cfg)
    assert net.inc[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(2, 1, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = net(x)
    assert y.shape == (2, 3, 64, 64) and y.dtype == torch.bfloat16
    loss = y.float().mean()
    loss.backward()
    assert net.inc[0].weight.grad is not None and torch.isfinite(net.inc[0].weight.grad).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_channels_last():
    net = build_unet(make_config("tiny", channels_last=True, num_classes=2)).cuda()
    x = torch.rand(2, 1, 64, 64, device="cuda").contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = net(x)
    assert y.shape == (2, 2, 64, 64) and y.is_cuda
