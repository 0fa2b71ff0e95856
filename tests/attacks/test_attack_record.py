"""AttackResult: shapes of the traces, success against argmax, norms, target choice."""
from __future__ import annotations

import pytest
import torch
from _attack_helpers import FACTORIES, NAMES, images, labels, linear_model, small_feature_model

from medadv_lib.attacks import BIM, DI, PGD, AttackResult

MODEL = small_feature_model(num_classes=3).eval()
X = images(5, (1, 8, 8), seed=4)
Y = torch.tensor([0, 1, 2, 0, 1])


def _penultimate(x):
    with torch.no_grad():
        return MODEL.features(x, ["penultimate"])["penultimate"]


@pytest.mark.parametrize("name", NAMES)
def test_record_shapes_and_consistency(name):
    attack = FACTORIES[name](MODEL, 0.05, targeted=True, seed=1, steps=4)
    result = attack.run(X, Y, record=True, record_features=True)
    assert isinstance(result, AttackResult)
    steps = attack.steps
    assert result.loss.shape == (steps, 5)
    assert result.features.shape == (steps + 1, 5, 128)
    torch.testing.assert_close(result.features[0], _penultimate(X))  # the clean start
    torch.testing.assert_close(result.features[-1], _penultimate(result.x_adv))
    logits = MODEL(result.x_adv).detach()
    torch.testing.assert_close(result.logits, logits)
    assert torch.equal(result.success, logits.argmax(1) == result.target)
    delta = (result.x_adv - X).flatten(1)
    torch.testing.assert_close(result.linf, delta.abs().amax(1))
    torch.testing.assert_close(result.l2, delta.norm(dim=1))
    assert (result.linf <= 0.05 + 1e-6).all()
    assert result.params["seed"] == 1 and result.attack == type(attack).__name__
    assert torch.equal(result.x_adv, attack(X, Y))  # recording does not change the attack


def test_intermediate_features_match_iterates():
    # rerunning with fewer steps reproduces the iterate, whose features the long run recorded
    long = BIM(MODEL, eps=0.05, steps=4).run(X, Y, record_features=True)
    for t in (1, 2, 3):
        x_t = BIM(MODEL, eps=0.05, steps=t)(X, Y)
        torch.testing.assert_close(long.features[t], _penultimate(x_t))


def test_di_features_are_untransformed():
    attack = DI(MODEL, eps=0.05, steps=3, p=1.0, seed=0)
    result = attack.run(images(2, (1, 8, 8)), torch.tensor([0, 1]), record_features=True)
    assert result.features.shape == (4, 2, 128)
    torch.testing.assert_close(result.features[0], _penultimate(images(2, (1, 8, 8))))


def test_untargeted_record():
    result = PGD(MODEL, eps=0.05, steps=2, seed=0).run(X, Y)
    assert result.target is None and result.loss is None and result.features is None
    assert torch.equal(result.success, result.logits.argmax(1) != Y)
    assert 0.0 <= result.success_rate <= 1.0


def test_binary_target_is_other_class():
    model = linear_model((1, 4, 4), 2)
    y = labels(10, 2)
    result = BIM(model, eps=0.1, targeted=True, seed=0).run(images(10), y)
    assert torch.equal(result.target, 1 - y)


def test_multiclass_target_seeded_other_class():
    model = linear_model((1, 4, 4), 5)
    y = labels(200, 5)
    r1 = BIM(model, eps=0.1, steps=1, targeted=True, seed=0).run(images(200), y)
    r2 = BIM(model, eps=0.1, steps=1, targeted=True, seed=0).run(images(200), y)
    assert (r1.target != y).all() and torch.equal(r1.target, r2.target)
    assert set(r1.target.tolist()) == set(range(5))


def test_given_target_is_used():
    target = (Y + 2) % 3
    result = BIM(MODEL, eps=0.05, steps=2, targeted=True).run(X, Y, target=target)
    assert torch.equal(result.target, target)


def test_record_loss_is_attack_loss():
    attack = BIM(MODEL, eps=0.05, steps=3)
    result = attack.run(X, Y, record=True)
    with torch.no_grad():
        torch.testing.assert_close(result.loss[0], attack.loss(MODEL(X), {}, Y, None))
        torch.testing.assert_close(result.final_loss, attack.loss(MODEL(result.x_adv), {}, Y, None))
