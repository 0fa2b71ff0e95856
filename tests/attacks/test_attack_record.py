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


@pytest.mark.parametrize("name", NAMES)
def test_norm_records_stay_in_the_budget(name):
    eps = 0.05
    attack = FACTORIES[name](MODEL, eps, targeted=False, seed=2, steps=4)
    result = attack.run(X, Y, record=("loss", "linf", "l2"))
    steps = attack.steps
    assert result.records["linf"].shape == (steps, 5) and result.records["l2"].shape == (steps, 5)
    assert (result.records["linf"] <= eps + 1e-7).all()
    d = X[0].numel()
    assert (result.records["l2"] <= result.records["linf"] * d ** 0.5 + 1e-6).all()
    assert (result.records["l2"] >= result.records["linf"] - 1e-7).all()
    torch.testing.assert_close(result.records["linf"][-1], result.linf)
    torch.testing.assert_close(result.records["l2"][-1], result.l2)
    assert torch.equal(result.records["loss"], result.loss)


def test_norm_records_match_the_iterates():
    # BIM is deterministic: a t-step run reproduces the long run's iterate after t steps
    long = BIM(MODEL, eps=0.05, steps=4).run(X, Y, record=("linf", "l2"))
    for t in (1, 2, 3):
        short = BIM(MODEL, eps=0.05, steps=t).run(X, Y)
        torch.testing.assert_close(long.records["linf"][t - 1], short.linf)
        torch.testing.assert_close(long.records["l2"][t - 1], short.l2)


def test_feature_records_of_any_tap():
    result = PGD(MODEL, eps=0.05, steps=3, seed=0).run(X, Y, record=("features:block2", "features:penultimate"))
    block2 = result.records["features:block2"]
    assert block2.shape == (4, 5, 64) and result.records["features:penultimate"].shape == (4, 5, 128)
    with torch.no_grad():
        clean = MODEL.features(X, ["block2"])["block2"].mean((2, 3))
        last = MODEL.features(result.x_adv, ["block2"])["block2"].mean((2, 3))
    torch.testing.assert_close(block2[0], clean)  # index 0: the clean image, even after a random start
    torch.testing.assert_close(block2[-1], last)
    assert torch.equal(result.features, result.records["features:penultimate"])  # same as record_features
    with pytest.raises(ValueError, match="unknown record"):
        PGD(MODEL, eps=0.05).run(X, Y, record=("grad",))
    with pytest.raises(ValueError, match="unknown feature layer"):
        PGD(MODEL, eps=0.05).run(X, Y, record=("features:nowhere",))
    with pytest.raises(TypeError, match="forward_features"):
        PGD(linear_model((1, 8, 8), 3), eps=0.05).run(X, Y, record=("features:block2",))


def test_step_hook_sees_the_update_and_is_projected():
    seen = []

    class Recorded(BIM):
        def step(self, x_adv, grad, state):
            x_next = super().step(x_adv, grad, state)
            seen.append(state["delta_step"].clone())
            assert torch.equal(x_next, x_adv + state["delta_step"])
            return x_next

    class Wild(BIM):
        def step(self, x_adv, grad, state):
            return x_adv + 10.0  # far outside: the loop projects it

    Recorded(MODEL, eps=0.05, steps=3).run(X, Y)
    assert len(seen) == 3 and all(d.abs().max() == pytest.approx(0.01) for d in seen)
    out = Wild(MODEL, eps=0.05, steps=2)(X, Y)
    torch.testing.assert_close(out, (X + 0.05).clamp(max=1.0))

    class Still(BIM):
        def step(self, x_adv, grad, state):
            return x_adv  # no move: the loop must not write into the caller's images

    x = X.clone()
    Still(MODEL, eps=0.05, steps=2)(x, Y)
    assert torch.equal(x, X)
