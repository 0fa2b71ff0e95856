"""Invariants every attack must keep: the eps-ball, [0, 1], no mutation, modes, determinism."""
from __future__ import annotations

import pytest
import torch
from _attack_helpers import FACTORIES, NAMES, images, labels, linear_model, small_feature_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medadv_lib.attacks import attack_mode

FEATURE_MODEL = small_feature_model(num_classes=3)
X8 = images(4, (1, 8, 8), seed=3)
Y8 = torch.tensor([0, 1, 2, 1])


def _assert_valid(x, x_adv, eps):
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and x_adv.device == x.device
    assert not x_adv.requires_grad
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= -1e-6 and x_adv.max() <= 1 + 1e-6


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("targeted", [False, True])
def test_ball_range_no_mutation_modes(name, targeted):
    model = FEATURE_MODEL
    model.train()
    model.backbone.block2.eval()  # a mixed mode must come back exactly
    frozen = model.backbone.block1[0].weight
    frozen.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    modes = {n: m.training for n, m in model.named_modules()}
    x = X8.clone()
    x_copy = x.clone()
    eps = 0.05
    x_adv = FACTORIES[name](model, eps, targeted=targeted)(x, Y8)
    _assert_valid(x, x_adv, eps)
    assert torch.equal(x, x_copy)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert {n: m.training for n, m in model.named_modules()} == modes
    frozen.requires_grad_(True)
    model.eval()


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_under_seed(name):
    model = FEATURE_MODEL
    a = FACTORIES[name](model, 0.05, targeted=True, seed=7)
    out1, out2 = a(X8, Y8), a(X8, Y8)
    assert torch.equal(out1, out2)
    assert torch.equal(out1, FACTORIES[name](model, 0.05, targeted=True, seed=7)(X8, Y8))


def test_seed_changes_random_start_and_target():
    from medadv_lib.attacks import PGD

    model = FEATURE_MODEL
    r1 = PGD(model, eps=0.05, steps=1, targeted=True, seed=1).run(X8.repeat(8, 1, 1, 1), Y8.repeat(8))
    r2 = PGD(model, eps=0.05, steps=1, targeted=True, seed=2).run(X8.repeat(8, 1, 1, 1), Y8.repeat(8))
    assert not torch.equal(r1.x_adv, r2.x_adv)
    assert not torch.equal(r1.target, r2.target)


def test_unseeded_follows_torch_manual_seed():
    from medadv_lib.attacks import PGD

    attack = PGD(FEATURE_MODEL, eps=0.05, steps=1)
    torch.manual_seed(3)
    a = attack(X8, Y8)
    torch.manual_seed(3)
    assert torch.equal(a, attack(X8, Y8))


class _Boom(Exception):
    pass


def test_modes_and_flags_restored_on_exception():
    model = linear_model((1, 4, 4), 2)
    calls = {"n": 0}

    def explode(module, inputs, output):
        calls["n"] += 1
        if calls["n"] > 2:
            raise _Boom

    handle = model[1].register_forward_hook(explode)
    model.train()
    model[0].eval()
    try:
        with pytest.raises(_Boom):
            FACTORIES["bim"](model, 0.1, steps=5)(images(2), labels(2))
    finally:
        handle.remove()
    assert model.training and model[1].training and not model[0].training
    assert all(p.requires_grad for p in model.parameters())


def test_attack_mode_context():
    model = linear_model()
    model.train()
    with attack_mode(model):
        assert not model.training
        assert not any(p.requires_grad for p in model.parameters())
    assert model.training and all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("targeted", [False, True])
def test_loss_improves(name, targeted):
    model = linear_model((1, 4, 4), num_classes=4, seed=2)
    x, y = images(16, seed=5, lo=0.2, hi=0.8), labels(16, 4, seed=5)
    attack = FACTORIES[name](model, 0.1, targeted=targeted, steps=10)
    result = attack.run(x, y, record=True)
    with torch.no_grad():
        clean = attack.loss(model(x), {}, y, result.target)
    if attack.maximize:
        assert result.final_loss.mean() > clean.mean()
    else:
        assert result.final_loss.mean() < clean.mean()
    if name != "fgsm" and not name.startswith("di") and not (name == "cw" and not targeted):
        # the recorded trace moves the right way from first to last evaluated iterate
        first, last = result.loss[0].mean(), result.final_loss.mean()
        assert (last > first) if attack.maximize else (last < first)


@pytest.mark.parametrize("name", NAMES)
def test_targeted_reaches_target_on_easy_model(name):
    # a linear model: the targeted attack can always move the logit of t above the others
    model = linear_model((1, 6, 6), num_classes=3, seed=1)
    x, y = images(12, (1, 6, 6), seed=2, lo=0.3, hi=0.7), labels(12, 3, seed=2)
    eps = 0.4
    attack = FACTORIES[name](model, eps, targeted=True, seed=0, steps=20)
    result = attack.run(x, y)
    assert result.success.all(), (name, result.success)
    assert torch.equal(result.logits.argmax(1), result.target)


@pytest.mark.parametrize("name", NAMES)
def test_untargeted_succeeds_on_easy_model(name):
    model = linear_model((1, 6, 6), num_classes=3, seed=1)
    x, y = images(12, (1, 6, 6), seed=2, lo=0.3, hi=0.7), labels(12, 3, seed=2)
    result = FACTORIES[name](model, 0.4, steps=20)(x, y)
    assert (model(result).argmax(1) != y).all()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(NAMES),
    eps=st.floats(0.0, 0.6, allow_nan=False),
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 5),
    size=st.integers(3, 9),
    channels=st.sampled_from([1, 3]),
    targeted=st.booleans(),
    classes=st.integers(2, 5),
)
def test_property_ball_range_determinism(name, eps, seed, n, size, channels, targeted, classes):
    shape = (channels, size, size)
    model = linear_model(shape, classes, seed=seed % 1000)
    x = images(n, shape, seed=seed % 997)
    y = labels(n, classes, seed=seed % 991)
    x_copy = x.clone()
    attack = FACTORIES[name](model, eps, targeted=targeted, seed=seed, steps=2)
    out = attack(x, y)
    _assert_valid(x, out, eps)
    assert torch.equal(x, x_copy)
    assert torch.equal(out, attack(x, y))
    if eps == 0:
        assert torch.equal(out, x)
