"""Tiny models for the analysis tests (imported by file name)."""
from __future__ import annotations

import torch


def feature_model(num_classes=2, seed=0):
    from medadv_lib.models import build_model

    torch.manual_seed(seed)
    return build_model("smallcnn", in_channels=1, num_classes=num_classes, image_size=8).eval()


def images(n, seed=0, size=8):
    return torch.rand((n, 1, size, size), generator=torch.Generator().manual_seed(seed))
