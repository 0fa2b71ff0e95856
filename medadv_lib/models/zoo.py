"""Model zoo: torchvision backbones adapted to channels, classes and input size.

Small inputs (MedMNIST's 28 px, CIFAR's 32 px) get a small-image stem for ResNets (a 3x3
convolution of stride 1 in place of the 7x7 stride-2 one, max-pool kept) and no pools below 2 px
for VGG, so that deep layers keep a spatial extent (2x2 at layer4 for 28 px) instead of collapsing
to 1x1. Keeping the max-pool halves the resolution of every block, which makes training four
times cheaper than the pool-free CIFAR stem on CPU (measured: 119 against 41 images/s for
ResNet-18 at 28 px on 2 cores). Pre-trained weights are never
downloaded: pass ``weights=`` a local state-dict file (ImageNet weights from torchvision).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..config import ARCHITECTURES  # the names live in the torch-free config
from .efficientnet import build_efficientnet_lite0
from .feature_model import FeatureModel

SMALL_INPUT = 64  # below this size a backbone gets the CIFAR-style stem


def build_model(arch: str, *, in_channels: int, num_classes: int, image_size: int = 224,
                dropout: float = 0.0, weights: str | os.PathLike | None = None,
                mean=None, std=None) -> FeatureModel:
    """Build a :class:`FeatureModel`.

    Parameters
    ----------
    arch : {"smallcnn", "resnet18", "resnet50", "vgg16", "efficientnet_lite0"}
    in_channels : int
        1 (grey) or 3 (colour).
    num_classes : int
    image_size : int
        Square input size; below 64 px the stem is adapted (see module docstring).
    dropout : float
        Dropout probability before the classifier (the BU detector needs > 0).
    weights : path, optional
        Local state-dict of the torchvision model (e.g. ImageNet weights). For 1-channel inputs the
        first convolution's weights are summed over colour channels; the classifier is replaced.
    mean, std : sequence of float, optional
        Normalisation inside the model; defaults to 0.5 / 0.25 per channel (ImageNet statistics
        when ``weights`` is given).
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {list(ARCHITECTURES)}")
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if arch == "efficientnet_lite0":  # its own weights (weights="imagenet") and input scaling
        return build_efficientnet_lite0(in_channels=in_channels, num_classes=num_classes, image_size=image_size,
                                        dropout=dropout, weights=weights, mean=mean, std=std)
    spec = dict(arch=arch, in_channels=in_channels, num_classes=num_classes, image_size=image_size,
                dropout=dropout, weights=str(weights) if weights else None)
    if mean is None or std is None:
        if weights:
            mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
            if in_channels == 1:
                mean, std = [sum(mean) / 3], [sum(std) / 3]
        else:
            mean, std = [0.5] * in_channels, [0.25] * in_channels
    mean, std = [float(m) for m in mean], [float(s) for s in std]
    if len(mean) != in_channels or len(std) != in_channels:
        raise ValueError(f"mean/std need {in_channels} values, got {len(mean)} and {len(std)}")
    spec.update(mean=mean, std=std)
    builder = {"smallcnn": _small_cnn, "resnet18": _resnet, "resnet50": _resnet, "vgg16": _vgg16}[arch]
    backbone, head, taps = builder(arch, in_channels, num_classes, image_size, dropout, weights)
    return FeatureModel(backbone, head, taps, mean, std, spec)


def model_from_spec(spec: dict) -> FeatureModel:
    """Rebuild an (untrained) model from :attr:`FeatureModel.spec`."""
    return build_model(**spec)


def _head(in_features: int, num_classes: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_classes))


def _load_local_weights(model: nn.Module, weights) -> None:
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file {path} does not exist. medadv never downloads weights: save a torchvision "
            "state dict there first (e.g. torch.save(torchvision.models.resnet50(weights='DEFAULT').state_dict(), path) "
            "on a machine with network access)."
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or len(missing) == len(model.state_dict()):
        raise ValueError(f"{path} does not look like weights of this architecture (unexpected keys: {unexpected[:5]})")


def _adapt_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    if conv.in_channels == in_channels:
        return conv
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None)
    with torch.no_grad():
        new.weight.copy_(conv.weight.sum(dim=1, keepdim=True))  # grey = R + G + B contributions
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def _resnet(arch, in_channels, num_classes, image_size, dropout, weights):
    import torchvision

    net = getattr(torchvision.models, arch)(weights=None)
    if weights:
        _load_local_weights(net, weights)
    if image_size < SMALL_INPUT:
        net.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
    else:
        net.conv1 = _adapt_first_conv(net.conv1, in_channels)
    net.fc = _head(net.fc.in_features, num_classes, dropout)
    taps = [("stem", net.relu, 0)]
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        for index, block in enumerate(getattr(net, stage)):
            name = f"{stage}.{index}"
            # torchvision blocks reuse one ReLU module: every call but the last is an inner ReLU
            inner = 2 if isinstance(block, torchvision.models.resnet.Bottleneck) else 1
            taps += [(f"{name}.relu{k + 1}", block.relu, k) for k in range(inner)]
            taps.append((name, block, None))
    return net, net.fc, taps


def _vgg16(arch, in_channels, num_classes, image_size, dropout, weights):
    import torchvision

    net = torchvision.models.vgg16(weights=None)
    if weights:
        _load_local_weights(net, weights)
    layers = list(net.features)
    layers[0] = _adapt_first_conv(layers[0], in_channels)
    taps, stage, conv_in_stage, size = [], 1, 0, image_size
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.ReLU):
            conv_in_stage += 1
            layers[i] = nn.ReLU(inplace=False)  # in-place ReLUs would overwrite tapped maps
            taps.append((f"block{stage}.relu{conv_in_stage}", layers[i], None))
        elif isinstance(layer, nn.MaxPool2d):
            if size < 2:
                layers[i] = nn.Identity()  # small inputs: keep a spatial extent instead of pooling to 0
            else:
                size //= 2
            taps.append((f"block{stage}", layers[i], None))
            stage, conv_in_stage = stage + 1, 0
    net.features = nn.Sequential(*layers)
    if image_size < SMALL_INPUT:
        net.avgpool = nn.AdaptiveAvgPool2d(1)
        net.classifier = _head(512, num_classes, dropout)
        head = net.classifier
    else:
        last = net.classifier[-1]
        net.classifier[-1] = nn.Linear(last.in_features, num_classes)
        if dropout:
            net.classifier[-2] = nn.Dropout(dropout)
        head = net.classifier[-1]
    return net, head, taps


class _SmallCNN(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, dropout: float):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

        self.block1, self.block2, self.block3 = block(in_channels, 32), block(32, 64), block(64, 128)
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = _head(128, num_classes, dropout)

    def forward(self, x):
        x = self.pool(self.block1(x))
        x = self.pool(self.block2(x))
        x = self.block3(x)
        return self.fc(torch.flatten(self.gap(x), 1))


def _small_cnn(arch, in_channels, num_classes, image_size, dropout, weights):
    if weights:
        raise ValueError("smallcnn has no pre-trained weights; omit `weights`")
    net = _SmallCNN(in_channels, num_classes, dropout)
    taps = [(f"block{i}", getattr(net, f"block{i}"), None) for i in (1, 2, 3)]
    return net, net.fc, taps
