"""Training objectives of the SSAT comparison (Li, Pan & Zhu, ISBI 2021): AT, GCE and SSAT.

Each is a callable ``objective(model, x, y, unlabelled) -> (loss, parts)`` for
:func:`medadv_lib.models.train_model` (the contract is :class:`~medadv_lib.models.training.CrossEntropy`'s,
which is NT, natural training), with a ``spec()`` that enters the trained model's cache key. They
are objectives, not copies of the training loop. Methods page: :ref:`methods-defences`.

How the FGSM examples are made. ``craft="train"`` (default) takes the input gradient of the clean
cross-entropy from the *same* training-mode forward pass whose loss is then trained on (the graph
is kept for the weight update), so each mini-batch costs one clean and one adversarial
forward/backward: an adversarial-training epoch costs about twice a natural one. ``craft="eval"``
runs a separate :class:`~medadv_lib.attacks.FGSM` on the model in eval mode (BatchNorm running
statistics, no dropout), as a post-hoc attacker would; it costs one more forward and backward.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .gce import guided_complement_entropy

__all__ = ["AdversarialTraining", "GCETraining", "SSAT", "fgsm_pair"]

CRAFT_MODES = ("train", "eval")


def _check_eps_range(eps_range) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in eps_range)
    except (TypeError, ValueError):
        raise TypeError(f"eps_range must be two numbers (low, high), got {eps_range!r}.") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi <= 1):
        raise ValueError(f"eps_range={eps_range!r} must satisfy 0 <= low <= high <= 1 (budgets on the [0, 1] scale; "
                         "the SSAT paper draws from [0.001, 0.003]).")
    return lo, hi


def _check_craft(craft: str) -> str:
    if craft not in CRAFT_MODES:
        raise ValueError(f"craft must be one of {CRAFT_MODES}, got {craft!r}.")
    return craft


class _FGSMObjective:
    """Seeded per-mini-batch budgets and the FGSM step shared by AT and SSAT."""

    def __init__(self, eps_range, craft, seed):
        self.eps_range = _check_eps_range(eps_range)
        self.craft = _check_craft(craft)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}.")
        self.seed = seed
        self._gen = torch.Generator().manual_seed(seed)
        self.last_eps: float | None = None

    def draw_eps(self) -> float:
        """A budget drawn uniformly from ``eps_range`` (one per mini-batch, seeded)."""
        lo, hi = self.eps_range
        self.last_eps = lo + (hi - lo) * float(torch.rand((), generator=self._gen))
        return self.last_eps


def fgsm_pair(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, craft: str = "train"):
    """Clean logits and the FGSM images of a mini-batch: ``(logits_clean, x_adv)``.

    With ``craft="train"`` the clean logits keep their graph (the caller trains on them) and the
    input gradient comes from that same pass; with ``"eval"`` the clean logits come from a plain
    training-mode pass and the adversarial images from :class:`~medadv_lib.attacks.FGSM` in eval mode.
    ``y`` carries no gradient in either case (pseudo-labels are detached by the caller).
    """
    if craft == "train":
        x = x.detach().requires_grad_(True)
        logits = model(x)
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x, retain_graph=True)
        x_adv = (x.detach() + eps * grad.sign()).clamp_(0.0, 1.0)
        return logits, x_adv
    from ..attacks import FGSM

    x_adv = FGSM(model, eps=eps, fuse_bn=False)(x.detach(), y.detach()) if eps > 0 else x.detach()
    model.train()  # the attack restored the mode, but say it: the training pass below is in train mode
    return model(x), x_adv


class AdversarialTraining(_FGSMObjective):
    """AT: FGSM adversarial training with clean and adversarial images 1:1 in every mini-batch.

    ``loss = (CE(f(x), y) + CE(f(x_adv), y)) / 2`` with ``x_adv`` the FGSM image at a budget drawn
    uniformly from ``eps_range`` per mini-batch (Goodfellow et al. 2015; the SSAT paper's setting).

    Parameters
    ----------
    eps_range : (float, float), default (0.001, 0.003)
    craft : {"train", "eval"}
        How the FGSM images are made (module docstring).
    seed : int
        Seeds the budget draws.
    """

    def __init__(self, eps_range=(0.001, 0.003), *, craft: str = "train", seed: int = 0):
        super().__init__(eps_range, craft, seed)

    def __call__(self, model, x, y, unlabelled=None):
        eps = self.draw_eps()
        logits, x_adv = fgsm_pair(model, x, y, eps, self.craft)
        logits_adv = model(x_adv)
        ce_clean, ce_adv = F.cross_entropy(logits, y), F.cross_entropy(logits_adv, y)
        return (ce_clean + ce_adv) / 2, {"accuracy": (logits.detach().argmax(1) == y).float().mean(),
                                         "ce_clean": ce_clean.detach(), "ce_adv": ce_adv.detach(), "eps": eps}

    def spec(self) -> dict:
        return {"name": "at", "eps_range": list(self.eps_range), "craft": self.craft, "seed": self.seed}


class GCETraining:
    """GCE: guided complement entropy alone, in place of cross-entropy (Chen et al., ICCV 2019).

    See :func:`~medadv_lib.defenses.guided_complement_entropy`; undefined for two classes (an
    error at the first mini-batch says why).
    """

    def __init__(self, *, alpha: float = 0.333, normalizer: str = "log(K-1)"):
        self.alpha, self.normalizer = float(alpha), normalizer
        guided_complement_entropy(torch.zeros(1, 3), torch.zeros(1, dtype=torch.long), alpha=alpha,
                                  normalizer=normalizer)  # validates the arguments now, not mid-training

    def __call__(self, model, x, y, unlabelled=None):
        logits = model(x)
        loss = guided_complement_entropy(logits, y, alpha=self.alpha, normalizer=self.normalizer)
        return loss, {"accuracy": (logits.detach().argmax(1) == y).float().mean()}

    def spec(self) -> dict:
        return {"name": "gce", "alpha": self.alpha, "normalizer": self.normalizer}


class SSAT(_FGSMObjective):
    """SSAT: semi-supervised adversarial training, ``L = L_sup + lambda * L_unsup`` (Li, Pan & Zhu, Eq. 1).

    ``L_sup`` is :class:`AdversarialTraining`'s loss on the labelled mini-batch; ``L_unsup`` the same
    on the unlabelled mini-batch with pseudo-labels (detached: no gradient flows through the labels).

    Where the pseudo-labels come from. The paper: "predicted by f_theta", the model being trained
    (``pseudo_labels="online"``, the "online targets" of the work it cites for lambda, Stanforth et
    al. 2019, arXiv 1905.13725). That work also gives "fixed targets": the predictions of a base
    classifier trained on the labelled images alone (``pseudo_labels="teacher"``, pass it as
    ``teacher``; it is evaluated in eval mode and never trained). Online targets need a network
    that already separates the classes when training starts (the paper fine-tunes an ImageNet
    ResNet-18): trained from scratch with lambda = 5, a network's own early guesses reinforce one
    class until it predicts it for everything (measured at the ``cpu`` profile, see the SSAT
    chapter), which fixed targets cannot do.

    Parameters
    ----------
    lam : float, default 5.0
        The paper's lambda (the released notebook uses 3).
    variant : {"paper", "released"}
        ``"paper"``: adversarial training on both parts, as the paper states. ``"released"``: the
        released notebook's loss, ``CE(f(x), y) + lam * CE(f(FGSM(u)), pseudo(u))`` (clean labelled
        images, adversarial unlabelled images only).
    pseudo_labels : {"online", "teacher"}
        The current model's predictions (the paper) or a fixed teacher's (see above).
    teacher : nn.Module, optional
        The fixed classifier of ``pseudo_labels="teacher"`` (required there, refused otherwise).
    eps_range, craft, seed
        As for :class:`AdversarialTraining` (one budget per mini-batch for both parts).
    """

    VARIANTS = ("paper", "released")
    PSEUDO_LABELS = ("online", "teacher")

    def __init__(self, lam: float = 5.0, *, variant: str = "paper", pseudo_labels: str = "online",
                 teacher: nn.Module | None = None, eps_range=(0.001, 0.003), craft: str = "train", seed: int = 0):
        super().__init__(eps_range, craft, seed)
        lam = float(lam)
        if not math.isfinite(lam) or lam < 0:
            raise ValueError(f"lam must be a finite weight >= 0, got {lam!r}.")
        if variant not in self.VARIANTS:
            raise ValueError(f"variant must be one of {self.VARIANTS}, got {variant!r}.")
        if pseudo_labels not in self.PSEUDO_LABELS:
            raise ValueError(f"pseudo_labels must be one of {self.PSEUDO_LABELS}, got {pseudo_labels!r}.")
        if (pseudo_labels == "teacher") != (teacher is not None):
            raise ValueError("pseudo_labels='teacher' needs teacher=<a trained classifier> (e.g. the NT model of the "
                             "same labelled split), and a teacher is only used with pseudo_labels='teacher'.")
        if teacher is not None and not isinstance(teacher, nn.Module):
            raise TypeError(f"teacher must be a torch.nn.Module, got {type(teacher).__name__}.")
        self.lam, self.variant, self.pseudo_labels, self.teacher = lam, variant, pseudo_labels, teacher

    @torch.no_grad()
    def _teacher_labels(self, unlabelled: torch.Tensor) -> torch.Tensor:
        was_training = self.teacher.training
        self.teacher.eval()
        try:
            return self.teacher(unlabelled).argmax(1)
        finally:
            self.teacher.train(was_training)

    def __call__(self, model, x, y, unlabelled=None):
        if unlabelled is None:
            raise ValueError("SSAT needs an unlabelled stream: pass unlabelled=... to train_model "
                             "(the unlabelled part of medadv_lib.defenses.semi_supervised_split).")
        eps = self.draw_eps()
        if self.variant == "paper":
            logits, x_adv = fgsm_pair(model, x, y, eps, self.craft)
            sup = (F.cross_entropy(logits, y) + F.cross_entropy(model(x_adv), y)) / 2
        else:
            logits = model(x)
            sup = F.cross_entropy(logits, y)
        # pseudo-labels: the current model's (or the teacher's) prediction on the clean unlabelled images
        fixed = self._teacher_labels(unlabelled.detach()) if self.teacher is not None else None
        if self.craft == "train":
            u = unlabelled.detach().requires_grad_(True)
            logits_u = model(u)
            pseudo = logits_u.detach().argmax(1) if fixed is None else fixed
            (grad,) = torch.autograd.grad(F.cross_entropy(logits_u, pseudo, reduction="sum"), u,
                                          retain_graph=self.variant == "paper")
            u_adv = (u.detach() + eps * grad.sign()).clamp_(0.0, 1.0)
        else:
            pseudo = fixed
            if pseudo is None:
                with torch.no_grad():
                    model.eval()
                    pseudo = model(unlabelled).argmax(1)
                    model.train()
            logits_u, u_adv = fgsm_pair(model, unlabelled, pseudo, eps, "eval")
        ce_u_adv = F.cross_entropy(model(u_adv), pseudo)
        unsup = (F.cross_entropy(logits_u, pseudo) + ce_u_adv) / 2 if self.variant == "paper" else ce_u_adv
        loss = sup + self.lam * unsup
        return loss, {"accuracy": (logits.detach().argmax(1) == y).float().mean(), "loss_sup": sup.detach(),
                      "loss_unsup": unsup.detach(), "eps": eps}

    def spec(self) -> dict:
        spec = {"name": "ssat", "lam": self.lam, "variant": self.variant, "eps_range": list(self.eps_range),
                "craft": self.craft, "seed": self.seed}
        if self.pseudo_labels != "online":  # keeps the keys of online-target models unchanged
            spec["pseudo_labels"] = self.pseudo_labels
        return spec
