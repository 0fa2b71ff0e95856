"""Tiny models and attack factories shared by the attack tests (imported by file name)."""
from __future__ import annotations

import torch
from torch import nn

from medadv_lib.attacks import BIM, CW, DI, FGSM, MIM, PGD


def linear_model(in_shape=(1, 4, 4), num_classes=2, seed=0, scale=1.0, dtype=torch.float32) -> nn.Sequential:
    """``z = W flatten(x) + b``: its input gradient is known in closed form."""
    g = torch.Generator().manual_seed(seed)
    d = 1
    for s in in_shape:
        d *= s
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, num_classes))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(num_classes, d, generator=g) * scale)
        model[1].bias.copy_(torch.randn(num_classes, generator=g) * 0.1)
    return model.to(dtype)


def small_feature_model(num_classes=3, in_channels=1, image_size=8, seed=0):
    from medadv_lib.models import build_model

    torch.manual_seed(seed)
    return build_model("smallcnn", in_channels=in_channels, num_classes=num_classes, image_size=image_size)


def images(n=4, shape=(1, 4, 4), seed=0, lo=0.0, hi=1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand((n, *shape), generator=g)


def labels(n=4, num_classes=2, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1)
    return torch.randint(0, num_classes, (n,), generator=g)


# name -> factory(model, eps, targeted, seed, steps): every registered attack with few steps
FACTORIES = {
    "fgsm": lambda m, eps, targeted=False, seed=0, steps=3: FGSM(m, eps=eps, targeted=targeted, seed=seed),
    "bim": lambda m, eps, targeted=False, seed=0, steps=3: BIM(m, eps=eps, steps=steps, targeted=targeted, seed=seed),
    "pgd": lambda m, eps, targeted=False, seed=0, steps=3: PGD(m, eps=eps, steps=steps, targeted=targeted, seed=seed),
    "mim": lambda m, eps, targeted=False, seed=0, steps=3: MIM(m, eps=eps, steps=steps, targeted=targeted, seed=seed),
    "di": lambda m, eps, targeted=False, seed=0, steps=3: DI(m, eps=eps, steps=steps, targeted=targeted, seed=seed),
    "di_momentum": lambda m, eps, targeted=False, seed=0, steps=3: DI(m, eps=eps, steps=steps, targeted=targeted,
                                                                     seed=seed, p=1.0, mu=1.0),
    "cw": lambda m, eps, targeted=False, seed=0, steps=3: CW(m, eps=eps, steps=steps, targeted=targeted, seed=seed,
                                                             kappa=1.0),
}
NAMES = sorted(FACTORIES)


def calibrated_feature_model(num_classes=3, in_channels=1, image_size=8, seed=1):
    """A smallcnn whose BatchNorm statistics come from random images: freshly initialised running
    statistics make its logits almost input-independent, which hides two-pass loss terms."""
    model = small_feature_model(num_classes, in_channels, image_size, seed)
    model.train()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = None  # cumulative average over the calibration batch
        model(images(64, (in_channels, image_size, image_size), seed=seed + 8))
    return model.eval()
