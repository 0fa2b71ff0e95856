"""The loop is extensible the way HFC and SMIA need: loss with features, direction, transform."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _attack_helpers import calibrated_feature_model, images, small_feature_model

from medadv_lib.attacks import ATTACKS, BIM, IterativeAttack, budget, format_budget, get_attack, register_attack

MODEL = small_feature_model(num_classes=3).eval()
X, Y = images(4, (1, 8, 8), seed=2), torch.tensor([0, 1, 2, 0])


class FeaturePenalty(IterativeAttack):
    """HFC-shaped: targeted CE plus a penalty on a tapped layer's spatial mean."""

    feature_layers = ("block2",)
    seen: list

    def loss(self, logits, features, y, target):
        self.seen.append(tuple(features))
        h = features["block2"].mean((2, 3))
        return F.cross_entropy(logits, target, reduction="none") + h.pow(2).mean(1)


def test_feature_loss_sees_requested_taps():
    attack = FeaturePenalty(MODEL, eps=0.05, steps=3, targeted=True, seed=0)
    attack.seen = []
    result = attack.run(X, Y, record_features=True)
    assert attack.seen[0] == ("block2", "penultimate")  # recording adds the penultimate tap
    attack.seen = []
    attack(X, Y)
    assert attack.seen == [("block2",)] * 3
    with torch.no_grad():  # final_loss is the same loss, feature term included, at x_adv
        logits, features = MODEL.forward_features(result.x_adv, ["block2"])
        penalty = features["block2"].mean((2, 3)).pow(2).mean(1)
        expected = F.cross_entropy(logits, result.target, reduction="none") + penalty
    torch.testing.assert_close(result.final_loss, expected, rtol=1e-5, atol=1e-6)


def test_feature_layers_init_param_overrides_class_attribute():
    attack = FeaturePenalty(MODEL, eps=0.05, steps=1, targeted=True, feature_layers=["block1", "block2"])
    attack.seen = []
    attack(X, Y)
    assert attack.seen == [("block1", "block2")]


def test_direction_and_transform_hooks():
    calls = {"direction": 0, "transform": 0}

    class Hooked(IterativeAttack):
        def direction(self, grad, state):
            calls["direction"] += 1
            assert state["step"] == calls["direction"] - 1 and "x" in state
            return torch.zeros_like(grad)  # never move

        def transform(self, x_adv, state):
            calls["transform"] += 1
            return x_adv.flip(-1)

    out = Hooked(MODEL, eps=0.05, steps=4)(X, Y)
    assert calls == {"direction": 4, "transform": 4}
    assert torch.equal(out, X)


def test_objective_override_for_extra_forward_passes():
    class TwoPass(IterativeAttack):
        def objective(self, x_adv, y, target, state):
            logits, features = self.forward(x_adv, state["layers"])
            smooth_logits, _ = self.forward(x_adv.flip(-1), None)
            loss = F.cross_entropy(logits, y, reduction="none") - F.kl_div(
                F.log_softmax(smooth_logits, 1), F.softmax(logits, 1), reduction="none").sum(1)
            return loss, logits, features

    model = calibrated_feature_model()  # input-dependent logits, so the KL term is not ~0

    def two_pass(x):
        with torch.no_grad():
            logits, smooth = model(x), model(x.flip(-1))
        ce = F.cross_entropy(logits, Y, reduction="none")
        return ce, ce - F.kl_div(F.log_softmax(smooth, 1), F.softmax(logits, 1), reduction="none").sum(1)

    result = TwoPass(model, eps=0.05, steps=2).run(X, Y, record=True, record_features=True)
    assert result.loss.shape == (2, 4) and result.features.shape == (3, 4, 128)
    ce, expected = two_pass(X)  # step 0 differentiates the clean image (no random start)
    torch.testing.assert_close(result.loss[0], expected, rtol=1e-4, atol=1e-5)
    assert (result.loss[0] - ce).abs().max() > 1e-4  # the second pass counts
    ce, expected = two_pass(result.x_adv)  # final_loss keeps the KL term (it used to drop it)
    torch.testing.assert_close(result.final_loss, expected, rtol=1e-5, atol=1e-6)
    assert (result.final_loss - ce).abs().max() > 1e-4


def test_register_and_get_custom_attack():
    @register_attack("test_penalty")
    class Registered(BIM):
        pass

    try:
        assert isinstance(get_attack("TEST_PENALTY", MODEL, eps=0.1), Registered)
        with pytest.raises(ValueError, match="already registered"):
            register_attack("pgd")(Registered)
    finally:
        ATTACKS.pop("test_penalty")


def test_budget_notations():
    assert budget(2) == 2 / 256
    assert budget(8, denominator=255) == 8 / 255
    assert format_budget(budget(2)) == "2/256 (0.0078)"
    assert format_budget(0.005) == "0.005 (1.28/256)"
    with pytest.raises(ValueError, match="outside"):
        budget(300)
    with pytest.raises(ValueError):
        budget(1, denominator=0)


def test_repr_and_hyperparameters():
    attack = get_attack("mim", MODEL, eps=budget(4), seed=3)
    assert "mu=0.5" in repr(attack) and attack.hyperparameters()["mu"] == 0.5
    assert attack.alpha == pytest.approx(budget(4) / 5) and attack.steps == 10
    assert get_attack("di", MODEL, eps=0.1).p == 0.5
    assert get_attack("pgd", MODEL, eps=0.1).random_start
    assert not get_attack("bim", MODEL, eps=0.1).random_start
    assert get_attack("fgsm", MODEL, eps=0.1).alpha == 0.1
