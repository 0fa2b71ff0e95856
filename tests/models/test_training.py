"""Training objectives, the unlabelled stream, step budgets, class weights and resumable training."""
import pytest
import torch
import torch.nn.functional as F

from medadv_lib.models import build_model, evaluate, train_model
from medadv_lib.models.training import CrossEntropy, balanced_class_weights, epochs_for


def _separable(n=160, size=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = (torch.rand(n, 1, size, size, generator=gen) * 0.3 + 0.6 * y.view(-1, 1, 1, 1)).clamp(0, 1)
    return x, y


def _model(seed=3):
    torch.manual_seed(seed)
    return build_model("smallcnn", in_channels=1, num_classes=2, image_size=16)


class ToyFGSMTraining:
    """Adversarial training (Goodfellow et al. 2015): FGSM examples crafted in eval mode, loss in train mode.

    Also consumes the unlabelled stream with a consistency term, and records what it saw.
    """

    def __init__(self, eps=0.05):
        self.eps, self.modes_at_entry, self.unlabelled_seen = eps, [], []

    def __call__(self, model, x, y, unlabelled=None):
        self.modes_at_entry.append(model.training)
        model.eval()  # craft with frozen BatchNorm statistics; the loop restores training mode
        x_req = x.clone().requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(model(x_req), y), x_req)
        x_adv = (x + self.eps * grad.sign()).clamp(0, 1).detach()
        assert torch.all((x_adv - x).abs() <= self.eps + 1e-6)
        model.train()
        logits = model(x_adv)
        loss = F.cross_entropy(logits, y)
        parts = {"adv_ce": loss.detach(), "accuracy": (logits.argmax(1) == y).float().mean()}
        if unlabelled is not None:
            self.unlabelled_seen.append(unlabelled.detach().clone())
            consistency = model(unlabelled).softmax(1).var(0).sum()
            loss = loss + 0.0 * consistency  # uses the stream without changing what is learnt
            parts["consistency"] = consistency.detach()
        return loss, parts

    def spec(self):
        return {"name": "toy_fgsm_at", "eps": self.eps}


def test_default_objective_is_plain_cross_entropy_with_no_spec():
    x, y = _separable()
    assert CrossEntropy().spec() is None  # plain CE adds nothing to a cache key
    assert CrossEntropy([1.0, 3.0]).spec() == {"name": "cross_entropy", "class_weights": [1.0, 3.0]}
    h_default = train_model(_model(), x, y, epochs=2, batch_size=32, seed=1, progress=False)
    h_explicit = train_model(_model(), x, y, epochs=2, batch_size=32, seed=1, progress=False, objective=CrossEntropy())
    assert h_default == h_explicit
    assert set(h_default[0]) == {"epoch", "loss", "train_accuracy"}


def test_adversarial_objective_trains_restores_modes_and_uses_the_unlabelled_stream():
    x, y = _separable()
    unlabelled = torch.rand(50, 1, 16, 16, generator=torch.Generator().manual_seed(9))
    objective = ToyFGSMTraining()
    model = _model()
    history = train_model(model, x, y, epochs=4, batch_size=32, lr=0.05, seed=2, progress=False, augment=False,
                          objective=objective, unlabelled=unlabelled)
    # every step started in training mode although the objective switched to eval, and training ends in eval
    assert objective.modes_at_entry and all(objective.modes_at_entry)
    assert not model.training
    # the objective's parts are logged per epoch; it learnt the (robustly) separable task
    assert {"adv_ce", "consistency", "train_accuracy"} <= set(history[-1])
    assert history[-1]["adv_ce"] < history[0]["adv_ce"]
    assert evaluate(model, x, y)["accuracy"] > 0.9
    # one unlabelled batch per labelled batch, of the same size, drawn from the stream (and more than one image of it)
    assert len(objective.unlabelled_seen) == 4 * 5
    assert all(len(u) == 32 for u in objective.unlabelled_seen)
    seen = torch.cat(objective.unlabelled_seen).flatten(1)
    matches = (seen[:, None, :] == unlabelled.flatten(1)[None]).all(-1)
    assert matches.any(1).all()  # every unlabelled batch image is an image of the stream
    assert matches.any(0).sum() == len(unlabelled)  # and the whole stream is visited


def test_unlabelled_stream_does_not_change_the_labelled_order():
    x, y = _separable()
    seen = []

    def objective(model, xb, yb, u=None):
        seen.append(yb.clone())
        return F.cross_entropy(model(xb), yb), {}

    train_model(_model(), x, y, epochs=1, batch_size=32, seed=4, progress=False, objective=objective)
    first, seen[:] = list(seen), []
    train_model(_model(), x, y, epochs=1, batch_size=32, seed=4, progress=False, objective=objective,
                unlabelled=torch.rand(40, 1, 16, 16))
    assert all(torch.equal(a, b) for a, b in zip(first, seen))


def test_bad_unlabelled_stream_is_named():
    x, y = _separable()
    with pytest.raises(ValueError, match="unlabelled"):
        train_model(_model(), x, y, epochs=1, progress=False, unlabelled=torch.rand(1, 1, 16, 16))


@pytest.mark.parametrize("n,batch,epochs,min_steps,expected", [
    (546, 64, 6, 0, 6), (546, 64, 6, 282, 32), (3000, 64, 6, 282, 6), (1080, 64, 6, 282, 17), (10, 64, 1, 5, 5)])
def test_epochs_for_meets_the_step_budget(n, batch, epochs, min_steps, expected):
    got = epochs_for(n, batch, epochs, min_steps)
    assert got == expected
    assert got >= epochs and got * -(-n // batch) >= min_steps


def test_min_steps_trains_more_epochs():
    x, y = _separable(n=64)
    history = train_model(_model(), x, y, epochs=1, batch_size=32, min_steps=6, progress=False)
    assert [h["epoch"] for h in history] == [1, 2, 3]


def test_balanced_class_weights_equalise_class_totals():
    labels = torch.tensor([0] * 30 + [1] * 10 + [2] * 0 + [3] * 60)
    w = balanced_class_weights(labels, 4)
    counts = torch.bincount(labels, minlength=4).float()
    totals = (w * counts)[counts > 0]
    assert torch.allclose(totals, totals[0].expand_as(totals))
    assert torch.allclose(totals.sum(), counts.sum())
    assert w[2] == 0


class _ConstantLogits(torch.nn.Module):
    """A model that ignores its input: the loss alone decides its class probabilities."""

    def __init__(self):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.zeros(2))

    def forward(self, x):
        return self.logits.expand(len(x), 2)


def test_class_weights_make_the_loss_prior_invariant():
    # Unweighted cross-entropy is minimised by the class prior; balanced weights move the optimum of a
    # constant predictor to the uniform distribution (every class counts the same).
    y = (torch.arange(400) % 20 < 3).long()  # 15 % positives
    x = torch.zeros(400, 1, 4, 4)
    probs = []
    for objective in (None, CrossEntropy(balanced_class_weights(y, 2))):
        model = _ConstantLogits()
        train_model(model, x, y, epochs=30, batch_size=100, lr=0.5, weight_decay=0.0, augment=False,
                    progress=False, objective=objective)
        probs.append(float(model.logits.detach().softmax(0)[1]))
    assert probs[0] == pytest.approx(0.15, abs=0.03)
    assert probs[1] == pytest.approx(0.5, abs=0.03)


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    x, y = _separable()
    kwargs = dict(epochs=3, batch_size=32, seed=5, progress=False)
    reference = _model()
    h_ref = train_model(reference, x, y, **kwargs)

    calls = {"n": 0}

    def dies_in_epoch_two(model, xb, yb, u=None):
        calls["n"] += 1
        if calls["n"] > 5 + 2:  # 5 batches per epoch: fail inside the second epoch
            raise KeyboardInterrupt
        return CrossEntropy()(model, xb, yb, u)

    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        train_model(_model(), x, y, **kwargs, objective=dies_in_epoch_two, checkpoint=ckpt)
    assert ckpt.is_file()
    resumed = _model(seed=99)  # the checkpoint, not the fresh initialisation, decides
    h_res = train_model(resumed, x, y, **kwargs, checkpoint=ckpt)
    assert h_res == h_ref
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()))
    assert not ckpt.exists()


def test_cpu_training_is_channels_last_inside_and_standard_outside():
    """The loop trains 2-D convolutions channels-last on the CPU (faster with oneDNN); the model
    comes back in the standard layout, the same function as when it went in, and reruns agree bit for bit."""
    x, y = _separable()
    seen = []

    def records_layout(model, xb, yb, u=None):
        seen.append((xb.is_contiguous(memory_format=torch.channels_last),
                     next(p for p in model.parameters() if p.dim() == 4).is_contiguous(memory_format=torch.channels_last)))
        return CrossEntropy()(model, xb, yb, u)

    runs = []
    for _ in range(2):
        model = _model()
        train_model(model, x, y, epochs=1, batch_size=32, seed=1, progress=False, objective=records_layout)
        assert all(p.is_contiguous() for p in model.parameters())
        runs.append(model.state_dict())
    assert seen and all(a and b for a, b in seen)
    assert all(torch.equal(a, b) for a, b in zip(*(r.values() for r in runs)))
