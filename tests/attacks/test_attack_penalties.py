"""Penalties on every attack (always minimised), the objective behind final_loss, spec(), alpha and eps."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from _attack_helpers import calibrated_feature_model, images, linear_model, small_feature_model

from medadv_lib.attacks import BIM, CW, DI, FGSM, MIM, PGD, IterativeAttack, get_attack
from medadv_lib.attacks.penalty import FeatureTargetPenalty, Penalty, check_penalties, spatial_mean

MODEL = small_feature_model(num_classes=3).eval()
X = images(8, (1, 8, 8), seed=7)
Y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
LAYER = "block2"
CHANNELS = 64
EPS = 0.05

# every base attack, built with or without penalties; DI at p=1 on 8 px (no size within low=0.9 except
# the identity, so low=0.75 makes it resize) and CW with a margin so its task term keeps pulling
BUILDERS = {
    "fgsm": lambda **kw: FGSM(MODEL, eps=EPS, **kw),
    "bim": lambda **kw: BIM(MODEL, eps=EPS, steps=5, **kw),
    "pgd": lambda **kw: PGD(MODEL, eps=EPS, steps=5, **kw),
    "mim": lambda **kw: MIM(MODEL, eps=EPS, steps=5, **kw),
    "di": lambda **kw: DI(MODEL, eps=EPS, steps=5, p=1.0, low=0.75, **kw),
    "cw": lambda **kw: CW(MODEL, eps=EPS, steps=5, kappa=5.0, **kw),
}


def _tap_mean(x, layer=LAYER):
    with torch.no_grad():
        return spatial_mean(MODEL.features(x, [layer])[layer])


def _distance(x, v):
    return (_tap_mean(x) - v).pow(2).sum(1)


@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_penalty_pulls_the_tap_towards_the_vector_on_every_attack(name, targeted):
    # the penalty is minimised whatever the attack's own direction: ascent (untargeted), descent
    # (targeted) or CW, which descends in both modes
    v = torch.zeros(CHANNELS)
    penalty = FeatureTargetPenalty(LAYER, v, weight=50.0)
    plain = BUILDERS[name](targeted=targeted, seed=3).run(X, Y)
    pulled = BUILDERS[name](targeted=targeted, seed=3, penalties=[penalty]).run(X, Y)
    d_plain, d_pulled = _distance(plain.x_adv, v), _distance(pulled.x_adv, v)
    assert d_pulled.mean() < 0.9 * d_plain.mean()
    assert (d_pulled < d_plain).float().mean() >= 0.75
    assert (pulled.linf <= EPS + 1e-6).all() and pulled.x_adv.min() >= 0 and pulled.x_adv.max() <= 1
    assert pulled.params["penalties"] == [penalty.spec]


@pytest.mark.parametrize("targeted", [False, True])
def test_final_loss_is_the_objective_with_the_penalty_sign(targeted):
    v = torch.full((CHANNELS,), 0.2)
    penalty = FeatureTargetPenalty(LAYER, v, weight=3.0)
    attack = BIM(MODEL, eps=EPS, steps=3, targeted=targeted, seed=0, penalties=[penalty])
    result = attack.run(X, Y)
    with torch.no_grad():
        logits = MODEL(result.x_adv)
        task = F.cross_entropy(logits, result.target if targeted else Y, reduction="none")
        pen = 3.0 * _distance(result.x_adv, v)
    expected = task + pen if targeted else task - pen
    torch.testing.assert_close(result.final_loss, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(result.final_loss, task)


def test_final_loss_equals_the_next_recorded_objective():
    # the loss recorded at step T of a (T+1)-step run is the objective at the T-step result: the
    # same function as final_loss, for a penalty and for an objective override alike
    class TwoPass(IterativeAttack):
        def objective(self, x_adv, y, target, state):
            logits, features = self.forward(x_adv, state["layers"])
            flipped, _ = self.forward(x_adv.flip(-1), None)
            kl = F.kl_div(F.log_softmax(flipped, 1), F.softmax(logits, 1), reduction="none").sum(1)
            task = F.cross_entropy(logits, y, reduction="none") - kl
            return self.with_penalties(task, logits, features, y, target), logits, features

    model = calibrated_feature_model()  # input-dependent logits: the KL term is far from 0
    penalty = FeatureTargetPenalty(LAYER, torch.zeros(CHANNELS), weight=2.0)
    for make in (lambda steps: BIM(model, eps=EPS, steps=steps, penalties=[penalty], fuse_bn=False),
                 lambda steps: TwoPass(model, eps=EPS, steps=steps, fuse_bn=False),
                 lambda steps: TwoPass(model, eps=EPS, steps=steps, penalties=[penalty], fuse_bn=False)):
        short = make(3).run(X, Y)
        longer = make(4).run(X, Y, record=True)
        torch.testing.assert_close(longer.loss[3], short.final_loss, rtol=1e-5, atol=1e-6)
        with torch.no_grad():  # and it is not the plain task loss
            ce = F.cross_entropy(model(short.x_adv), Y, reduction="none")
        assert (short.final_loss - ce).abs().max() > 1e-4


def test_objective_without_penalties_is_the_task_loss():
    attack = PGD(MODEL, eps=EPS, steps=2, seed=0)
    result = attack.run(X, Y)
    with torch.no_grad():
        torch.testing.assert_close(result.final_loss, F.cross_entropy(MODEL(result.x_adv), Y, reduction="none"))


def test_penalty_without_taps_on_a_plain_model():
    class LogitNorm(Penalty):
        def __call__(self, logits, features, y, target):
            return logits.pow(2).sum(1)

    model = linear_model((1, 4, 4), 2, scale=0.5)
    x, y = images(6), torch.tensor([0, 1, 0, 1, 0, 1])
    plain = BIM(model, eps=0.1, steps=5).run(x, y)
    pulled = BIM(model, eps=0.1, steps=5, penalties=[LogitNorm()]).run(x, y)
    with torch.no_grad():
        assert model(pulled.x_adv).pow(2).sum(1).mean() < model(plain.x_adv).pow(2).sum(1).mean()
    assert pulled.params["penalties"] == [{"name": "LogitNorm"}]


def test_penalty_taps_join_the_forward_pass():
    seen = []

    class Watch(IterativeAttack):
        feature_layers = ("block1",)

        def loss(self, logits, features, y, target):
            seen.append(tuple(features))
            return F.cross_entropy(logits, y, reduction="none")

    Watch(MODEL, eps=EPS, steps=1, penalties=[FeatureTargetPenalty("block3", torch.zeros(128))]).run(
        X, Y, record=("features:block2",))
    assert set(seen[0]) == {"block1", "block2", "block3"}


def test_spec_is_json_and_follows_the_penalties():
    base = PGD(MODEL, eps=EPS, seed=0)
    one = PGD(MODEL, eps=EPS, seed=0, penalties=[FeatureTargetPenalty(LAYER, torch.zeros(CHANNELS))])
    other = PGD(MODEL, eps=EPS, seed=0, penalties=[FeatureTargetPenalty(LAYER, torch.zeros(CHANNELS), weight=2.0)])

    class Fitted(FeatureTargetPenalty):
        state_key = "gmm-0123abcd"

    fitted = PGD(MODEL, eps=EPS, seed=0, penalties=[Fitted(LAYER, torch.zeros(CHANNELS))])
    texts = [json.dumps(a.spec(), sort_keys=True) for a in (base, one, other, fitted)]
    assert len(set(texts)) == 4
    spec = fitted.spec()
    assert spec["name"] == "pgd" and spec["penalties"][0]["state_key"] == "gmm-0123abcd" and spec["version"] == 1
    assert get_attack("di", MODEL, eps=EPS).spec()["version"] == 2  # the identity resize left the draw
    assert spec["hyperparameters"]["eps"] == EPS and spec["hyperparameters"]["fuse_bn"] is True
    assert json.loads(texts[0]) == base.spec()
    for name in ("fgsm", "bim", "pgd", "mim", "di", "cw"):
        json.dumps(get_attack(name, MODEL, eps=EPS, feature_layers=[LAYER]).spec())


def test_every_constructor_forwards_the_shared_keywords():
    penalty = FeatureTargetPenalty(LAYER, torch.zeros(CHANNELS))
    for name in ("fgsm", "bim", "pgd", "mim", "di", "cw"):
        attack = get_attack(name, MODEL, eps=EPS, feature_layers=["block1"], penalties=[penalty], fuse_bn=False)
        assert attack.feature_layers == ("block1",) and attack.penalties == (penalty,) and attack.fuse_bn is False
        assert attack.hyperparameters()["feature_layers"] == ["block1"]


def test_bad_penalties_are_named():
    with pytest.raises(TypeError, match=r"penalties\[0\].*not callable"):
        PGD(MODEL, eps=EPS, penalties=[3])
    with pytest.raises(TypeError, match="layers"):
        PGD(MODEL, eps=EPS, penalties=[lambda logits, features, y, target: logits[:, 0]])

    class NoJson(Penalty):
        def hyperparameters(self):
            return {"gmm": object()}

    with pytest.raises(TypeError, match="JSON"):
        PGD(MODEL, eps=EPS, penalties=[NoJson()])

    class BadKey(Penalty):
        state_key = 12

    with pytest.raises(TypeError, match="state_key"):
        check_penalties([BadKey()])
    with pytest.raises(TypeError, match="forward_features"):
        PGD(linear_model(), eps=EPS, penalties=[FeatureTargetPenalty(LAYER, torch.zeros(CHANNELS))])
    with pytest.raises(ValueError, match="unknown feature layer"):
        PGD(MODEL, eps=EPS, penalties=[FeatureTargetPenalty("nowhere", torch.zeros(3))])
    with pytest.raises(ValueError, match="channels"):
        PGD(MODEL, eps=EPS, steps=1, penalties=[FeatureTargetPenalty(LAYER, torch.zeros(3))])(X, Y)
    with pytest.raises(ValueError, match="1-D"):
        FeatureTargetPenalty(LAYER, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="weight"):
        FeatureTargetPenalty(LAYER, torch.zeros(2), weight=-1)


def test_a_single_penalty_without_a_list_is_accepted():
    penalty = FeatureTargetPenalty(LAYER, torch.zeros(CHANNELS))
    assert PGD(MODEL, eps=EPS, penalties=penalty).penalties == (penalty,)


# ------------------------------------------------------------------------------ alpha and eps
def test_alpha_follows_eps():
    attack = BIM(MODEL, eps=0.1, steps=3)
    assert attack.alpha == pytest.approx(0.02)
    attack.eps = 0.05
    assert attack.alpha == pytest.approx(0.01)
    assert torch.equal(attack(X, Y), BIM(MODEL, eps=0.05, steps=3)(X, Y))
    fixed = BIM(MODEL, eps=0.1, alpha=0.003, steps=3)
    fixed.eps = 0.05
    assert fixed.alpha == 0.003
    fgsm = FGSM(MODEL, eps=0.1)
    fgsm.eps = 0.03
    assert fgsm.alpha == 0.03
    with pytest.raises(ValueError, match="outside"):
        attack.eps = 8


def test_per_call_eps():
    attack = PGD(MODEL, eps=0.1, steps=3, seed=0)
    out = attack(X, Y, eps=0.02)
    assert torch.equal(out, PGD(MODEL, eps=0.02, steps=3, seed=0)(X, Y))
    assert (out - X).abs().max() <= 0.02 + 1e-7 and attack.eps == 0.1
    result = attack.run(X, Y, eps=0.02, record=("linf",))
    assert result.params["eps"] == 0.02 and result.params["alpha"] == pytest.approx(0.004)
    assert (result.records["linf"] <= 0.02 + 1e-7).all()


def test_fgsm_steps_handled_by_get_attack():
    assert get_attack("fgsm", MODEL, eps=0.1, steps=10).steps == 1  # sweeps pass one set of keywords
    assert FGSM(MODEL, eps=0.1, steps=1).steps == 1
    with pytest.raises(ValueError, match="BIM"):
        FGSM(MODEL, eps=0.1, steps=3)
    assert get_attack("bim", MODEL, eps=0.1, steps=4).steps == 4
