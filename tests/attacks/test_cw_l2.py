"""C&W-L2: finds small L2 adversarial examples, stays in [0, 1], and agrees with torchattacks."""
import pytest
import torch
from _attack_helpers import images, labels, linear_model, small_feature_model

from medadv_lib.attacks import get_attack
from medadv_lib.attacks.cw_l2 import CWL2


def test_finds_l2_adversarial_on_a_linear_model():
    model = linear_model(in_shape=(1, 4, 4), num_classes=2, scale=2.0)
    x = images(16, (1, 4, 4), lo=0.3, hi=0.7)
    y = model(x).argmax(1)
    before = x.clone()
    res = CWL2(model, c=10.0, steps=200, lr=0.05).run(x, y)
    assert torch.equal(x, before)  # never mutates the input
    assert res.success.float().mean() > 0.9
    assert (res.x_adv >= 0).all() and (res.x_adv <= 1).all()
    # for a linear binary model the minimal L2 perturbation is |margin| / ||w_1 - w_0||: C&W gets close
    w = model[1].weight.detach()
    margin = (model(x)[:, 1] - model(x)[:, 0]).abs().detach()
    minimal = margin / (w[1] - w[0]).norm()
    ok = res.success
    assert (res.l2[ok] >= minimal[ok] - 1e-4).all()
    assert (res.l2[ok] <= 1.5 * minimal[ok] + 0.05).all()
    # failed images are returned unchanged
    assert torch.equal(res.x_adv[~ok], x[~ok])


def test_targeted_reaches_target_and_binary_search_shrinks_l2():
    torch.manual_seed(0)
    model = small_feature_model(num_classes=3, image_size=8)
    x = images(8, (1, 8, 8))
    y = labels(8, 3)
    target = (y + 1) % 3
    const = CWL2(model, c=5.0, steps=60, lr=0.05, targeted=True).run(x, y, target)
    assert (const.logits.argmax(1)[const.success] == target[const.success]).all()
    searched = CWL2(model, c=5.0, steps=60, lr=0.05, targeted=True, binary_search_steps=4).run(x, y, target)
    both = const.success & searched.success
    assert searched.success.sum() >= const.success.sum()
    assert searched.l2[both].mean() <= const.l2[both].mean() + 1e-6


def test_registry_and_errors():
    model = linear_model()
    assert isinstance(get_attack("cw_l2", model, c=2.0), CWL2)
    for kwargs, match in [({"c": 0}, "c="), ({"lr": -1}, "lr="), ({"steps": 0}, "steps"), ({"kappa": float("nan")}, "kappa")]:
        with pytest.raises(ValueError, match=match):
            CWL2(model, **kwargs)
    with pytest.raises(ValueError, match="untargeted"):
        CWL2(model).run(images(2), labels(2), target=labels(2))


def test_agrees_with_torchattacks_within_noise():
    torchattacks = pytest.importorskip("torchattacks")
    torch.manual_seed(0)
    model = small_feature_model(num_classes=2, image_size=8).eval()
    x = images(64, (1, 8, 8), seed=3)
    y = model(x).argmax(1)
    ours = CWL2(model, c=1.0, steps=50, lr=0.01).run(x, y)
    theirs_x = torchattacks.CW(model, c=1.0, kappa=0, steps=50, lr=0.01)(x, y)
    theirs = (model(theirs_x).argmax(1) != y)
    assert abs(ours.success.float().mean() - theirs.float().mean()) <= 0.1
    both = ours.success & theirs
    if both.any():
        their_l2 = (theirs_x - x).flatten(1).norm(dim=1)
        assert abs(ours.l2[both].mean() - their_l2[both].mean()) <= 0.25 * their_l2[both].mean() + 1e-3
