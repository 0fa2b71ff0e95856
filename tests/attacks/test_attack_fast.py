"""The BatchNorm-folded evaluation copy (``fuse_bn``): same function, untouched model, safe folding."""
from __future__ import annotations

import copy
import gc
import weakref

import pytest
import torch
import torch.nn.functional as F
from _attack_helpers import FACTORIES, NAMES, images, labels
from torch import nn

from medadv_lib.attacks import ATTACKS, BIM, MIM, PGD, IterativeAttack, get_attack
from medadv_lib.attacks._fast import (
    EVAL_COPIES,
    build_eval_copy,
    deepcopy_with_hooks,
    fold_conv_bn_,
)
from medadv_lib.models import build_model


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics and affine parameters, as after training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.25)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return model


def _model(arch="resnet18", channels=3, classes=10, size=32, seed=0):
    torch.manual_seed(seed)
    return _randomise_bn(build_model(arch, in_channels=channels, num_classes=classes, image_size=size), seed)


def _snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [(type(m), m.training) for m in model.modules()],
            [p.requires_grad for p in model.parameters()],
            [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()])


def _assert_same(model, snap):
    state, modules, flags, hooks = snap
    now = model.state_dict()
    assert state.keys() == now.keys() and all(torch.equal(state[k], now[k]) for k in state)
    assert [(type(m), m.training) for m in model.modules()] == modules
    assert [p.requires_grad for p in model.parameters()] == flags
    assert [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()] == hooks


def _assert_rel(a, b, tol=1e-4):
    """max |a - b| <= tol * max |b|: equal up to float rounding, relative to the tensor's scale."""
    assert a.shape == b.shape
    assert float((a - b).abs().max()) <= tol * float(b.abs().max().clamp_min(1e-12))


@pytest.fixture(autouse=True)
def _fresh_cache():
    EVAL_COPIES.clear()
    yield
    EVAL_COPIES.clear()


# ------------------------------------------------------------------------------------ the copy
@pytest.mark.parametrize("arch,size,folds", [("smallcnn", 16, 6), ("resnet18", 32, 20), ("resnet50", 32, 53)])
def test_folded_copy_matches_logits_and_taps(arch, size, folds):
    model = _model(arch, size=size).eval()
    snap = _snapshot(model)
    fast = build_eval_copy(model)
    assert fast is not None and fast.folded == folds and fast.channels_last
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fast.model.modules())
    assert all(not p.requires_grad for p in fast.model.parameters())
    x = images(6, (3, size, size), seed=1)
    with torch.no_grad():
        ref_logits, ref = model.forward_features(x)
        logits, feats = fast.model.forward_features(x)
    _assert_rel(logits, ref_logits)
    assert list(feats) == list(ref)
    for name in ref:  # every tap (hooks copied with the modules and re-pointed to the copy)
        _assert_rel(feats[name], ref[name])
    _assert_same(model, snap)


def test_input_gradients_match():
    model = _model("resnet18").eval()
    fast = build_eval_copy(model).model
    x, y = images(8, (3, 32, 32), seed=2), labels(8, 10)

    def grad(m):
        xx = x.clone().requires_grad_(True)
        return torch.autograd.grad(F.cross_entropy(m(xx), y, reduction="sum"), xx)[0]

    g0, g1 = grad(model), grad(fast)
    _assert_rel(g1, g0)
    assert (g1.sign() == g0.sign()).float().mean() > 0.999


def test_hooks_on_copy_point_to_copy():
    model = _model("smallcnn", size=16).eval()
    seen = []
    handle = model.classifier.register_forward_hook(lambda mod, inp, out: seen.append((mod, model)))
    try:
        clone = deepcopy_with_hooks(model)
        clone(images(1, (3, 16, 16)))
        (mod, owner), = seen
        assert mod is clone.classifier and owner is clone  # the closure's `model` now means the copy
        # the original's taps are not touched by a forward_features on the copy
        clone.forward_features(images(1, (3, 16, 16)), ["block1"])
        assert model._recording is None and not model._store
    finally:
        handle.remove()


def test_vgg_and_plain_models_are_not_copied():
    torch.manual_seed(0)
    assert build_eval_copy(build_model("vgg16", in_channels=1, num_classes=2, image_size=16)) is None
    plain = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    assert build_eval_copy(plain) is None


# ------------------------------------------------------------------------------------ what is not folded
class _TwoUses(nn.Module):
    """The convolution's output feeds the BatchNorm *and* a skip: folding would change the skip."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2)

    def forward(self, x):
        h = self.conv(x)
        return self.bn(h) + h


class _Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            return self.bn(self.conv(x))
        return self.conv(x)


class _Reads(nn.Module):
    """The parent reads the convolution's weight itself: it must keep its BatchNorm."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2))

    def forward(self, x):
        return self.inner(x) + F.conv2d(x, self.inner[0].weight, padding=1)


def _bn_left(model):
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("make,folds", [
    (lambda: nn.Sequential(nn.Conv2d(2, 2, 3), nn.BatchNorm2d(2, track_running_stats=False)), 0),
    (lambda: nn.Sequential(nn.Conv2d(2, 2, 3), nn.ReLU(), nn.BatchNorm2d(2)), 0),
    (lambda: nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2)), 2),
    (_TwoUses, 0),
    (_Untraceable, 0),
    (_Reads, 0),
])
def test_only_safe_pairs_fold(make, folds):
    torch.manual_seed(0)
    model = _randomise_bn(make()).eval()
    clone = copy.deepcopy(model)
    assert fold_conv_bn_(clone)[0] == folds
    assert _bn_left(clone) == _bn_left(model) - folds
    x = torch.rand(3, 2, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(clone(x), model(x), rtol=1e-5, atol=1e-5)


def test_hooked_modules_keep_their_batchnorm():
    torch.manual_seed(0)
    model = _randomise_bn(nn.Sequential(nn.Conv2d(2, 2, 3), nn.BatchNorm2d(2), nn.Conv2d(2, 2, 3),
                                        nn.BatchNorm2d(2))).eval()
    model[0].register_forward_hook(lambda m, i, o: None)  # someone watches the first conv's output
    clone = deepcopy_with_hooks(model)
    assert fold_conv_bn_(clone)[0] == 1 and isinstance(clone[1], nn.BatchNorm2d)


# ------------------------------------------------------------------------------------ the attacks
@pytest.mark.parametrize("arch,size", [("resnet18", 32), ("smallcnn", 16)])
def test_pgd_fused_equals_unfused(arch, size):
    model = _model(arch, size=size)
    model.train()  # the attack switches to eval and back; the copy is always eval
    snap = _snapshot(model)
    x, y = images(32, (3, size, size), seed=3), labels(32, 10, seed=3)
    fused = PGD(model, eps=8 / 256, steps=10, seed=0).run(x, y, record=True)
    assert len(EVAL_COPIES) == 1
    plain = PGD(model, eps=8 / 256, steps=10, seed=0, fuse_bn=False).run(x, y, record=True)
    _assert_same(model, snap)
    assert model.training
    _assert_rel(fused.loss[0], plain.loss[0])  # the same (random-start) iterate: same loss
    with torch.no_grad():  # the reported logits are the user's model's own
        torch.testing.assert_close(fused.logits, model.eval()(fused.x_adv), rtol=0, atol=0)
    model.train()
    # one step from the same iterate: the images differ only where rounding flips the sign of a
    # near-zero gradient component
    for start in (x, plain.x_adv):
        one_fused = BIM(model, eps=8 / 256, steps=1)(start, fused.y)
        one_plain = BIM(model, eps=8 / 256, steps=1, fuse_bn=False)(start, fused.y)
        assert (one_fused == one_plain).float().mean() > 0.999
    # over 10 steps such flips compound (a flipped pixel changes every later gradient), exactly as
    # any other rounding change does: the same unfused model stored channels-last agrees no better
    null = PGD(copy.deepcopy(model).to(memory_format=torch.channels_last), eps=8 / 256, steps=10, seed=0,
               fuse_bn=False)(x, fused.y)
    agree = (fused.x_adv == plain.x_adv).float().mean()
    assert agree >= (null == plain.x_adv).float().mean() - 0.02 and agree > 0.9
    assert abs(fused.success_rate - plain.success_rate) <= 2 / 32
    assert abs(float(fused.final_loss.mean() - plain.final_loss.mean())) <= 0.02 * float(plain.final_loss.abs().mean())


@pytest.mark.parametrize("name", NAMES)
def test_every_attack_fused_equals_unfused(name):
    model = _model("smallcnn", channels=3, classes=4, size=16)
    x, y = images(16, (3, 16, 16), seed=4), labels(16, 4, seed=4)
    fused = FACTORIES[name](model, 0.03, targeted=True, seed=1, steps=1)
    plain = FACTORIES[name](model, 0.03, targeted=True, seed=1, steps=1)
    plain.fuse_bn = False
    a, b = fused.run(x, y, record=True), plain.run(x, y, record=True)
    assert (a.x_adv == b.x_adv).float().mean() > 0.999
    _assert_rel(a.loss, b.loss)


def test_feature_losses_run_on_the_copy():
    class Penalty(IterativeAttack):
        feature_layers = ("layer2.0", "layer3.1.relu1")

        def loss(self, logits, features, y, target):
            assert all(f.is_contiguous() for f in features.values())  # standard layout handed out
            feats = [features[name].view(len(y), -1).pow(2).mean(1) for name in self.feature_layers]
            return F.cross_entropy(logits, y, reduction="none") + sum(feats)

    model = _model("resnet18")
    x, y = images(8, (3, 32, 32), seed=5), labels(8, 10, seed=5)
    fused = Penalty(model, eps=0.03, steps=3).run(x, y, record=True, record_features=True)
    plain = Penalty(model, eps=0.03, steps=3, fuse_bn=False).run(x, y, record=True, record_features=True)
    _assert_rel(fused.loss[0], plain.loss[0])  # the same clean iterate: same loss and features
    _assert_rel(fused.features[0], plain.features[0])
    with torch.no_grad():  # the last features are the user's model's own on the final iterate
        last = model.eval().features(fused.x_adv, ["penultimate"])["penultimate"]
    torch.testing.assert_close(fused.features[-1], last, rtol=0, atol=0)
    one_fused = Penalty(model, eps=0.03, steps=1)(x, y)
    one_plain = Penalty(model, eps=0.03, steps=1, fuse_bn=False)(x, y)
    assert (one_fused == one_plain).float().mean() > 0.999


def test_fuse_bn_option_everywhere():
    model = _model("smallcnn", classes=3, size=8)
    loop_attacks = [n for n, cls in ATTACKS.items() if isinstance(cls, type) and issubclass(cls, IterativeAttack)]
    assert {"fgsm", "bim", "pgd", "mim", "di", "cw", "smia"} <= set(loop_attacks)
    for name in loop_attacks:  # HFC builds one of these; C&W-L2 is not an L-inf loop attack
        assert get_attack(name, model, eps=0.1, fuse_bn=False).fuse_bn is False
        assert get_attack(name, model, eps=0.1).fuse_bn is True
    with pytest.raises(TypeError, match="fuse_bn"):
        PGD(model, eps=0.1, fuse_bn="yes")
    with pytest.raises(TypeError, match="fuse_bn"):
        IterativeAttack(model, eps=0.1, fuse_bn=1)
    x, y = images(2, (3, 8, 8)), labels(2, 3)
    PGD(model, eps=0.1, steps=1, fuse_bn=False)(x, y)
    assert len(EVAL_COPIES) == 0  # off: no copy made


def test_copy_is_cached_and_rebuilt_when_the_model_changes():
    model = _model("smallcnn", classes=3, size=8)
    x, y = images(4, (3, 8, 8), seed=6), labels(4, 3, seed=6)
    BIM(model, eps=0.05, steps=2)(x, y)
    first = EVAL_COPIES.get(model)
    BIM(model, eps=0.05, steps=2)(x, y)
    assert EVAL_COPIES.get(model) is first  # a new attack on the same model reuses the copy

    def check_follows():
        fused = MIM(model, eps=0.05, steps=2).run(x, y, record=True)
        plain = MIM(model, eps=0.05, steps=2, fuse_bn=False).run(x, y, record=True)
        _assert_rel(fused.loss[0], plain.loss[0])  # a stale copy would give another loss
        assert (fused.x_adv == plain.x_adv).float().mean() > 0.99

    # an optimiser step (in-place, bumps the version counters)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    F.cross_entropy(model(x), y).backward()
    opt.step()
    model.zero_grad()
    assert EVAL_COPIES.get(model) is not first
    check_follows()
    # BatchNorm running statistics updated by a training-mode forward pass
    previous = EVAL_COPIES.get(model)
    model.train()
    with torch.no_grad():
        model(torch.rand(8, 3, 8, 8) * 3)
    model.eval()
    assert EVAL_COPIES.get(model) is not previous
    check_follows()
    # a write through `.data`, which bypasses the version counter
    previous = EVAL_COPIES.get(model)
    model.backbone.block1[0].weight.data.mul_(-1.5)
    assert EVAL_COPIES.get(model) is not previous
    check_follows()
    # a hook added later is honoured on the copy too
    calls = []
    model.backbone.block2.register_forward_hook(lambda m, i, o: calls.append(1))
    BIM(model, eps=0.05, steps=2)(x, y)
    assert len(calls) == 2


def test_cache_does_not_keep_the_model_alive():
    model = _model("smallcnn", classes=3, size=8)
    PGD(model, eps=0.05, steps=1)(images(2, (3, 8, 8)), labels(2, 3))
    assert len(EVAL_COPIES) == 1
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None and len(EVAL_COPIES) == 0


def _train_steps(model, attack, x, y, steps, mode_at_call):
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    outs = []
    for _ in range(steps):
        model.train(mode_at_call == "train")
        x_adv = attack(x, y)
        outs.append(x_adv)
        model.train()
        opt.zero_grad()
        F.cross_entropy(model(x_adv), y).backward()
        opt.step()
    return outs


@pytest.mark.parametrize("mode_at_call", ["train", "eval"])
def test_a_training_loop_does_not_rebuild_the_copy_every_call(mode_at_call, caplog):
    model = _model("smallcnn", classes=3, size=8)
    x, y = images(8, (3, 8, 8), seed=8), labels(8, 3, seed=8)
    attack = PGD(model, eps=0.05, steps=2, seed=0)
    before = EVAL_COPIES.builds
    with caplog.at_level("INFO", logger="medadv_lib.attacks._fast"):
        outs = _train_steps(model, attack, x, y, 8, mode_at_call)
    assert EVAL_COPIES.builds - before == EVAL_COPIES.max_wasted_builds  # then it runs unfused
    assert sum("BN folding off" in r.getMessage() for r in caplog.records) == 1
    # the unfused calls attack the current model, exactly
    last = PGD(model, eps=0.05, steps=2, seed=0, fuse_bn=False)(x, y)
    assert not torch.equal(outs[-1], last)  # the model moved after that call ...
    assert torch.equal(attack(x, y), last)  # ... and this call (still unfused) sees the new one
    # training stopped: after `stable_calls` unchanged calls the copy is built again and reused
    for _ in range(EVAL_COPIES.stable_calls):
        attack(x, y)
    built = EVAL_COPIES.builds
    assert EVAL_COPIES.get(model) is not None and EVAL_COPIES.builds == built
    attack(x, y)
    assert EVAL_COPIES.builds == built


def test_a_model_changing_now_and_then_keeps_its_copy():
    # a copy reused at least once before the model changes is not wasted: no switch-off
    model = _model("smallcnn", classes=3, size=8)
    x, y = images(4, (3, 8, 8), seed=9), labels(4, 3, seed=9)
    attack = BIM(model, eps=0.05, steps=1)
    before = EVAL_COPIES.builds
    for _ in range(4):
        attack(x, y)
        attack(x, y)
        with torch.no_grad():
            next(model.parameters()).mul_(0.9)  # e.g. a fine-tuning step between evaluations
    assert EVAL_COPIES.builds - before == 4
    assert EVAL_COPIES.get(model) is not None
