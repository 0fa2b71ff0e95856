"""Attacks on the project's FeatureModels, on plain modules, on volumes and across dtypes."""
from __future__ import annotations

import pytest
import torch
from _attack_helpers import FACTORIES, NAMES, images, labels
from torch import nn

from medadv_lib.attacks import DI, PGD
from medadv_lib.models import build_model

RESNET = None


def _resnet():
    global RESNET
    if RESNET is None:
        torch.manual_seed(0)
        RESNET = build_model("resnet18", in_channels=1, num_classes=2, image_size=28)
    return RESNET


@pytest.mark.parametrize("name", ["fgsm", "pgd", "di", "cw"])
def test_resnet18_28px(name):
    model = _resnet()
    x, y = images(2, (1, 28, 28), seed=1), labels(2, 2)
    x_copy = x.clone()
    model.train()
    result = FACTORIES[name](model, 2 / 256, steps=2, seed=0).run(x, y, record_features=True)
    assert model.training
    assert result.features.shape[1:] == (2, 512)
    assert (result.linf <= 2 / 256 + 1e-6).all() and torch.equal(x, x_copy)


def test_smallcnn_rgb():
    torch.manual_seed(0)
    model = build_model("smallcnn", in_channels=3, num_classes=4, image_size=16)
    x, y = images(3, (3, 16, 16)), labels(3, 4)
    out = PGD(model, eps=0.03, steps=3, seed=0)(x, y)
    assert out.shape == x.shape and (out - x).abs().max() <= 0.03 + 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_plain_sequential(name):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3))
    x, y = images(3, (1, 10, 10)), labels(3, 3)
    result = FACTORIES[name](model, 0.05, targeted=True, seed=0).run(x, y, record=True)
    assert result.x_adv.shape == x.shape and result.target.shape == (3,)
    assert (result.target != y).all()


@pytest.mark.parametrize("name", ["pgd", "di_momentum", "cw"])
def test_volumes(name):
    # 3-D inputs (N, C, D, H, W): nothing in the loop assumes 2-D images
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                          nn.Linear(2, 2))
    x, y = images(2, (1, 10, 10, 10)), labels(2, 2)
    out = FACTORIES[name](model, 0.05, seed=0)(x, y)
    assert out.shape == x.shape and (out - x).abs().max() <= 0.05 + 1e-6


def test_di_transform_resizes_and_pads():
    model = nn.Sequential(nn.Flatten(), nn.Linear(400, 2))
    attack = DI(model, eps=0.1, p=1.0, seed=0)
    x = torch.ones(1, 1, 20, 20)
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(30):
        out = attack.transform(x, {"generator": g})
        assert out.shape == x.shape
        seen.add(int(out.sum()))
    # zero padding of a resize to 18 or 19 px: the unchanged size is excluded, so p = 1 always resizes
    assert seen == {18 * 18, 19 * 19}
    never = DI(model, eps=0.1, p=0.0, seed=0)
    assert never.transform(x, {"generator": g}) is x


def test_float64_input_with_float32_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    x = images(3).double()
    out = PGD(model, eps=0.1, steps=2, seed=0)(x, labels(3, 2))
    assert out.dtype == torch.float64 and (out - x).abs().max() <= 0.1 + 1e-12
    assert out.min() >= 0 and out.max() <= 1


def test_inside_no_grad_context():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    x, y = images(3), labels(3, 2)
    with torch.no_grad():
        out = PGD(model, eps=0.1, steps=2, seed=0)(x, y)
    assert not torch.equal(out, x)


def test_inference_tensors_and_mode():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with torch.inference_mode():
        x = images(3)
    y = labels(3, 2)
    out = PGD(model, eps=0.1, steps=2, seed=0)(x, y)
    assert (out - x).abs().max() <= 0.1 + 1e-6
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        PGD(model, eps=0.1, steps=2, seed=0)(x, y)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_cpu_input():
    torch.manual_seed(0)
    model = build_model("smallcnn", in_channels=1, num_classes=3, image_size=8).cuda()
    x, y = images(4, (1, 8, 8)), labels(4, 3)
    out = PGD(model, eps=0.05, steps=3, seed=0)(x, y)
    assert out.device == x.device and (out - x).abs().max() <= 0.05 + 1e-6
    on_gpu = PGD(model, eps=0.05, steps=3, seed=0)(x.cuda(), y.cuda())
    assert on_gpu.is_cuda
    torch.testing.assert_close(on_gpu.cpu(), out, atol=1e-5, rtol=0)
