"""Exact values on linear models, whose input gradient is known in closed form.

For ``z = W x + b`` and cross-entropy, ``dL/dx = W^T (p - e_y)``. With two classes this is
``p_other (w_other - w_y)``: its sign is ``sign(w_other - w_y)`` everywhere, whatever ``x``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from _attack_helpers import images, linear_model

from medadv_lib.attacks import BIM, CW, FGSM, MIM, PGD, margin_loss


def _binary_direction(model, y):
    w = model[1].weight.detach()
    other = 1 - y
    return torch.sign(w[other] - w[y]).view(len(y), 1, 4, 4)


@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_binary_closed_form(targeted):
    model = linear_model((1, 4, 4), 2, seed=4)
    eps = 0.05
    x = images(6, seed=1, lo=eps, hi=1 - eps)  # away from the [0, 1] edges: no clipping
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    attack = FGSM(model, eps=eps, targeted=targeted)
    expected = x + eps * _binary_direction(model, y)  # targeted: the target is the other class
    out = attack(x, y)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-7)


def test_fgsm_binary_clips_to_unit_interval():
    model = linear_model((1, 4, 4), 2, seed=4)
    eps = 0.3
    x = images(6, seed=1)
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    expected = (x + eps * _binary_direction(model, y)).clamp(0, 1)
    torch.testing.assert_close(FGSM(model, eps=eps)(x, y), expected, rtol=0, atol=1e-7)


def test_fgsm_multiclass_closed_form():
    model = linear_model((1, 4, 4), 5, seed=6, dtype=torch.float64)
    eps = 0.04
    x = images(8, seed=2, lo=eps, hi=1 - eps).double()
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    w = model[1].weight.detach().numpy()
    b = model[1].bias.detach().numpy()
    xf = x.flatten(1).numpy()
    z = xf @ w.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(8), y.numpy()] -= 1.0
    grad = p @ w  # W^T (p - e_y) by hand
    expected = xf + eps * np.sign(grad)
    out = FGSM(model, eps=eps)(x, y).flatten(1).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-12)


def test_targeted_fgsm_multiclass_closed_form():
    model = linear_model((1, 4, 4), 4, seed=8, dtype=torch.float64)
    eps = 0.03
    x = images(5, seed=3, lo=eps, hi=1 - eps).double()
    y = torch.tensor([0, 1, 2, 3, 0])
    t = torch.tensor([1, 2, 3, 0, 2])
    w, b = model[1].weight.detach().numpy(), model[1].bias.detach().numpy()
    xf = x.flatten(1).numpy()
    z = xf @ w.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(5), t.numpy()] -= 1.0
    expected = xf - eps * np.sign(p @ w)  # descend the CE of the target
    out = FGSM(model, eps=eps, targeted=True)(x, y, target=t).flatten(1).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-12)


def test_one_bim_step_closed_form():
    model = linear_model((1, 4, 4), 2, seed=4)
    eps, alpha = 0.1, 0.02
    x = images(6, seed=1)  # includes pixels near 0 and 1: the clip to [0, 1] must apply
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    expected = (x + alpha * _binary_direction(model, y)).clamp(0, 1)
    out = BIM(model, eps=eps, alpha=alpha, steps=1)(x, y)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize("steps", [1, 3, 7])
@pytest.mark.parametrize("cls", [BIM, MIM])
def test_iterative_binary_closed_form(cls, steps):
    # constant gradient sign: T steps of alpha move min(T * alpha, eps) along it (momentum too)
    model = linear_model((1, 4, 4), 2, seed=4)
    eps, alpha = 0.1, 0.03
    x = images(6, seed=1, lo=0.2, hi=0.8)
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    expected = x + min(steps * alpha, eps) * _binary_direction(model, y)
    out = cls(model, eps=eps, alpha=alpha, steps=steps)(x, y)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_pgd_from_random_start_binary_closed_form():
    # two steps of size eps reach the ball's face x + eps * s from any start inside the ball
    model = linear_model((1, 4, 4), 2, seed=4)
    eps = 0.05
    x = images(6, seed=1, lo=eps, hi=1 - eps)
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    out = PGD(model, eps=eps, alpha=eps, steps=2, seed=3)(x, y)
    torch.testing.assert_close(out, x + eps * _binary_direction(model, y), rtol=0, atol=1e-7)
    one = PGD(model, eps=eps, alpha=eps, steps=1, seed=3)(x, y)
    assert not torch.equal(one, out)  # the start really was random


def test_margin_loss_by_hand():
    z = torch.tensor([[3.0, 1.0, 0.5], [0.0, 2.0, 1.0]])
    y = torch.tensor([0, 2])
    # untargeted: max(z_y - max_{j!=y} z_j + kappa, 0)
    torch.testing.assert_close(margin_loss(z, y, kappa=0.5, targeted=False), torch.tensor([2.5, 0.0]))
    # targeted: max(max_{j!=t} z_j - z_t + kappa, 0)
    torch.testing.assert_close(margin_loss(z, y, kappa=0.5, targeted=True), torch.tensor([0.0, 1.5]))


def test_cw_binary_step_direction_and_stop():
    # the margin's input gradient is w_other - w_y as well, and steps stop once kappa is reached
    model = linear_model((1, 4, 4), 2, seed=4)
    eps, alpha = 0.1, 0.02
    x = images(6, seed=1, lo=0.2, hi=0.8)
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    out = CW(model, eps=eps, alpha=alpha, steps=1, kappa=1e6)(x, y)
    torch.testing.assert_close(out, x + alpha * _binary_direction(model, y), rtol=0, atol=1e-7)
    result = CW(model, eps=0.5, alpha=0.01, steps=200, kappa=0.0).run(x, y)
    assert result.success.all() and (result.final_loss == 0).all()
    assert (result.linf < 0.5).all()  # stopped on the decision boundary, not at the ball's face
