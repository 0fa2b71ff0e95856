"""AT, GCE and SSAT objectives: batch composition, budgets, pseudo-labels without gradient, training."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medadv_lib.defenses import SSAT, AdversarialTraining, GCETraining, fgsm_pair
from medadv_lib.models import build_model, train_model


def tiny(num_classes=3, seed=0):
    torch.manual_seed(seed)
    return build_model("smallcnn", in_channels=1, num_classes=num_classes, image_size=8)


def batch(n=16, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g) * 0.8 + 0.1, torch.randint(0, k, (n,), generator=g)


@pytest.mark.parametrize("craft", ["train", "eval"])
def test_at_is_one_to_one_and_draws_eps_in_range(craft):
    model = tiny()
    x, y = batch()
    objective = AdversarialTraining((0.001, 0.003), craft=craft, seed=1)
    seen = []
    calls = []
    original = model.forward

    def counting(inp):
        calls.append(inp.shape[0])
        return original(inp)

    model.forward = counting
    for _ in range(20):
        model.train()
        loss, parts = objective(model, x, y)
        assert 0.001 <= parts["eps"] <= 0.003
        assert torch.isfinite(loss) and loss.requires_grad
        assert parts["ce_adv"] >= parts["ce_clean"] - 0.05  # FGSM raises the loss on average
        seen.append(parts["eps"])
    # one clean and one adversarial pass of the whole batch per call (eval crafting adds the FGSM pass)
    per_call = 2 if craft == "train" else 3
    assert calls == [16] * (per_call * 20)
    assert len(set(seen)) == 20 and max(seen) - min(seen) > 0.001
    again = AdversarialTraining((0.001, 0.003), craft=craft, seed=1)
    assert [again.draw_eps() for _ in range(20)] == seen


@pytest.mark.parametrize("craft", ["train", "eval"])
def test_fgsm_pair_is_an_fgsm_step(craft):
    model = tiny()
    x, y = batch()
    model.train() if craft == "train" else model.eval()
    logits, x_adv = fgsm_pair(model, x, y, 0.01, craft)
    delta = (x_adv - x).abs()
    assert torch.allclose(delta[(x_adv > 0) & (x_adv < 1)], torch.tensor(0.01), atol=1e-6)
    assert x_adv.min() >= 0 and x_adv.max() <= 1 and not x_adv.requires_grad


def test_ssat_pseudo_labels_carry_no_gradient_and_lambda_weighs_unsup():
    model = tiny()
    x, y = batch(seed=0)
    u, _ = batch(seed=1)
    model.train()
    loss, parts = SSAT(5.0, seed=0)(model, x, y, u)
    assert loss.item() == pytest.approx(parts["loss_sup"].item() + 5.0 * parts["loss_unsup"].item(), rel=1e-5)
    # the pseudo-labels are the model's clean predictions, a constant: the unsupervised loss equals
    # CE to those fixed labels, and its gradient is that of CE with detached targets
    model.zero_grad()
    obj = SSAT(1.0, variant="released", seed=0)
    torch.manual_seed(0)
    loss_r, parts_r = obj(model, x, y, u)
    assert loss_r.item() == pytest.approx(parts_r["loss_sup"].item() + parts_r["loss_unsup"].item(), rel=1e-5)
    with pytest.raises(ValueError, match="unlabelled stream"):
        SSAT()(model, x, y, None)


class _ConstantTeacher(nn.Module):
    """Predicts class ``cls`` for every image, and records the mode it was called in."""

    def __init__(self, cls: int, classes: int = 3):
        super().__init__()
        self.cls, self.classes, self.modes = cls, classes, []
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        self.modes.append(self.training)
        return F.one_hot(torch.full((len(x),), self.cls), self.classes).float() * 10 + self.bias


@pytest.mark.parametrize("craft", ["train", "eval"])
def test_ssat_teacher_pseudo_labels_are_the_teachers_and_untrained(craft):
    model = tiny()
    x, y = batch(seed=0)
    u, _ = batch(seed=1)
    teacher = _ConstantTeacher(cls=2).train()
    obj = SSAT(1.0, variant="released", pseudo_labels="teacher", teacher=teacher, craft=craft, seed=0)
    model.train()
    loss, parts = obj(model, x, y, u)
    loss.backward()
    if craft == "train":  # the unsupervised loss is CE against the teacher's class 2 on FGSM images made for class 2
        target = torch.full((len(u),), 2)
        uu = u.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(uu), target, reduction="sum"), uu)
        u_adv = (u + parts["eps"] * grad.sign()).clamp(0, 1)
        assert parts["loss_unsup"].item() == pytest.approx(F.cross_entropy(model(u_adv), target).item(), rel=1e-5)
    assert teacher.bias.grad is None  # no gradient reaches the teacher
    assert teacher.modes == [False] and teacher.training  # evaluated in eval mode, its mode restored
    assert parts["loss_unsup"].item() > 0
    online = SSAT(1.0, variant="released", craft=craft, seed=0)
    _, parts_online = online(model, x, y, u)
    assert parts_online["loss_unsup"].item() != pytest.approx(parts["loss_unsup"].item())
    assert obj.spec()["pseudo_labels"] == "teacher" and "pseudo_labels" not in online.spec()


def test_ssat_teacher_argument_errors():
    with pytest.raises(ValueError, match="needs teacher"):
        SSAT(pseudo_labels="teacher")
    with pytest.raises(ValueError, match="needs teacher"):
        SSAT(teacher=_ConstantTeacher(0))
    with pytest.raises(ValueError, match="pseudo_labels must be"):
        SSAT(pseudo_labels="mean-teacher")
    with pytest.raises(TypeError, match="nn.Module"):
        SSAT(pseudo_labels="teacher", teacher=lambda x: x)


def test_objective_specs_and_errors():
    assert AdversarialTraining().spec() == {"name": "at", "eps_range": [0.001, 0.003], "craft": "train", "seed": 0}
    assert SSAT(3.0, variant="released").spec()["lam"] == 3.0
    assert GCETraining().spec()["normalizer"] == "log(K-1)"
    for bad, match in [(lambda: AdversarialTraining((0.003, 0.001)), "eps_range"),
                       (lambda: AdversarialTraining((0.001, 2)), "eps_range"),
                       (lambda: AdversarialTraining(craft="test"), "craft"),
                       (lambda: SSAT(-1.0), "lam"), (lambda: SSAT(variant="notebook"), "variant"),
                       (lambda: GCETraining(normalizer="ln"), "normalizer")]:
        with pytest.raises(ValueError, match=match):
            bad()
    with pytest.raises(ValueError, match="at least 3 classes"):
        GCETraining()(tiny(2), *batch(k=2))


@pytest.mark.parametrize("make", [lambda: AdversarialTraining(seed=0), lambda: GCETraining(),
                                  lambda: SSAT(5.0, seed=0)], ids=["at", "gce", "ssat"])
def test_trains_through_train_model(make):
    x, y = batch(96, seed=2)
    u, _ = batch(64, seed=3)
    model = tiny()
    objective = make()
    kwargs = {"unlabelled": (u * 255).to(torch.uint8)} if isinstance(objective, SSAT) else {}
    history = train_model(model, (x * 255).to(torch.uint8), y, epochs=3, batch_size=32, lr=0.05, augment=False,
                          objective=objective, progress=False, **kwargs)
    assert len(history) == 3 and all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    assert not model.training
    assert all(p.requires_grad for p in model.parameters())
