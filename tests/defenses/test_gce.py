"""GCE against a direct formula, its binary-task error, and its gradient's direction."""
import math

import numpy as np
import pytest
import torch

from medadv_lib.defenses import guided_complement_entropy as gce


def direct(logits, y, alpha, z):
    """The formula of Chen et al. written out with numpy, one sample at a time."""
    out = []
    for row, g in zip(logits, y):
        p = np.exp(row - row.max()); p /= p.sum()
        comp = [p[j] / (1 - p[g] + 1e-7) for j in range(len(p)) if j != g]
        out.append((p[g] + 1e-7) ** alpha * sum(c * math.log(c + 1e-10) for c in comp) / z)
    return np.array(out)


@pytest.mark.parametrize("k", [3, 4, 10])
@pytest.mark.parametrize("normalizer", ["log(K-1)", "log K"])
def test_equals_direct_formula(k, normalizer):
    gen = torch.Generator().manual_seed(k)
    logits = torch.randn(32, k, generator=gen, dtype=torch.float64) * 3
    y = torch.randint(0, k, (32,), generator=gen)
    z = math.log(k - 1) if normalizer == "log(K-1)" else math.log(k)
    got = gce(logits, y, normalizer=normalizer, reduction="none").numpy()
    np.testing.assert_allclose(got, direct(logits.numpy(), y.numpy(), 0.333, z), rtol=1e-10)
    assert gce(logits, y, normalizer=normalizer).item() == pytest.approx(got.mean())


def test_minimum_is_flat_complement():
    # the loss is >= -p_g^alpha (the flat complement reaches it) and <= 0
    logits = torch.randn(64, 5, dtype=torch.float64)
    y = torch.randint(0, 5, (64,))
    loss = gce(logits, y, reduction="none")
    p_true = logits.softmax(1).gather(1, y[:, None]).squeeze(1)
    assert (loss <= 1e-12).all() and (loss >= -(p_true + 1e-7) ** 0.333 - 1e-9).all()
    flat = torch.zeros(1, 5, dtype=torch.float64)
    flat[0, 0] = 2.0
    assert gce(flat, torch.tensor([0]), reduction="none").item() == pytest.approx(-(flat.softmax(1)[0, 0].item() + 1e-7) ** 0.333, rel=1e-6)


def test_binary_task_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="identically zero"):
        gce(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]))


@pytest.mark.parametrize("kwargs, match", [({"normalizer": "log2"}, "normalizer"), ({"alpha": -1}, "alpha"),
                                           ({"reduction": "avg"}, "reduction")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gce(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), **kwargs)
