"""Synthetic features and a tiny network for the detector tests (seeded, CPU, fast)."""
from collections import OrderedDict

import numpy as np
import pytest
import torch

from medadv_lib.models import build_model

DIMS = OrderedDict([("block1", 8), ("block2", 12), ("penultimate", 16)])
N_CLASSES = 3


def make_layers(rng, n, shift=0.0, dims=DIMS):
    """Class-conditional Gaussian clusters per layer; ``shift`` moves every feature off its cluster."""
    y = rng.integers(0, N_CLASSES, n)
    layers = OrderedDict()
    for i, (name, d) in enumerate(dims.items()):
        centres = np.random.default_rng(100 + i).normal(0.0, 3.0, (N_CLASSES, d))
        layers[name] = centres[y] + rng.normal(0.0, 1.0, (n, d)) + shift
    return layers, y


@pytest.fixture(scope="session")
def feats():
    """Clean training reference, a fitting split (normal + shifted 'adversarial') and a test split."""
    rng = np.random.default_rng(0)
    train, y_train = make_layers(rng, 300)

    def split(n):
        normal, y_n = make_layers(rng, 2 * n)
        adv, y_a = make_layers(rng, n, shift=2.0)
        X = OrderedDict((k, np.concatenate([normal[k], adv[k]])) for k in normal)
        return X, np.r_[y_n, y_a], np.r_[np.zeros(2 * n, int), np.ones(n, int)]

    fit_X, fit_pred, fit_adv = split(60)
    test_X, test_pred, test_adv = split(60)
    clean_X, clean_pred = make_layers(rng, 400)
    return {"train": train, "y_train": y_train, "fit": fit_X, "fit_pred": fit_pred, "fit_adv": fit_adv,
            "test": test_X, "test_pred": test_pred, "test_adv": test_adv, "clean": clean_X, "clean_pred": clean_pred}


@pytest.fixture(scope="session")
def tiny_model():
    """An untrained 8x8 grey smallcnn with dropout (structure matters here, not accuracy)."""
    torch.manual_seed(0)
    model = build_model("smallcnn", in_channels=1, num_classes=2, image_size=8, dropout=0.5)
    return model.eval()


@pytest.fixture(scope="session")
def images():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(40, 1, 8, 8, generator=g)
    is_adv = np.r_[np.zeros(20, int), np.ones(20, int)]
    # "adversarial" half: a strong structured perturbation, easy to learn for a detector
    x[20:] = (x[20:] * 0.2 + 0.8 * (torch.arange(8).float().view(1, 1, 1, 8) % 2)).clamp(0, 1)
    return x, is_adv
