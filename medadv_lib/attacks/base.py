"""The one iterative L-infinity attack loop that every attack in the book shares.

FGSM, BIM, PGD, MIM, DI and CW-Linf differ only in a loss, a step direction, an input transform
and a start point, so :class:`IterativeAttack` owns everything else: validation, eval mode and its
restoration, freezing parameters so autograd computes the input gradient only, projection onto the
eps-ball and [0, 1] after every step, seeded randomness, target choice and the optional record.
Extensions come in two kinds. Loss terms that must hold on *any* attack (HFC's feature-density
constraint, adaptive attacks against a detector) are penalties (:mod:`medadv_lib.attacks.penalty`),
given as ``penalties=[...]`` to every constructor and always minimised. A new attack overrides the
hooks :meth:`IterativeAttack.loss` (which also sees the feature taps named in ``feature_layers``),
:meth:`IterativeAttack.direction`, :meth:`IterativeAttack.transform`,
:meth:`IterativeAttack.step` (the whole update before projection, e.g. SMIA's smoothed step) or,
for losses that need extra forward passes, :meth:`IterativeAttack.objective`.

Conventions (the Methods page, :ref:`methods-notation`): images in [0, 1], normalisation inside the
model, budgets as plain floats on the [0, 1] scale (see :func:`medadv_lib.attacks.budget`).
"""
from __future__ import annotations

import json
import logging
import math
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..models.utils import PENULTIMATE, frozen
from ..validation import check_eps, check_images, check_labels, check_positive_int
from ._fast import EVAL_COPIES
from .penalty import check_penalties, spatial_mean

__all__ = [
    "ATTACKS",
    "AttackResult",
    "IterativeAttack",
    "attack_mode",
    "get_attack",
    "register_attack",
]

logger = logging.getLogger(__name__)


#: Registry of attack classes by lower-case name; filled by :func:`register_attack`.
ATTACKS: dict[str, type] = {}


def register_attack(name: str) -> Callable[[type], type]:
    """Class decorator adding an attack to :data:`ATTACKS` under ``name`` (lower case)."""

    def decorator(cls: type) -> type:
        key = name.lower()
        if key in ATTACKS and ATTACKS[key] is not cls:
            raise ValueError(f"an attack named {key!r} is already registered ({ATTACKS[key].__name__}).")
        ATTACKS[key] = cls
        return cls

    return decorator


def get_attack(name: str, model: nn.Module, **kwargs) -> IterativeAttack:
    """Build a registered attack by name, e.g. ``get_attack("pgd", model, eps=budget(2))``.

    Parameters
    ----------
    name : str
        Case-insensitive key of :data:`ATTACKS` (``"fgsm"``, ``"bim"``, ``"pgd"``, ``"mim"``,
        ``"di"``, ``"cw"``, ...).
    model : nn.Module
    **kwargs
        Keyword-only hyper-parameters of that attack. A single-step attack (``fixed_steps`` set,
        i.e. FGSM) drops a ``steps`` keyword here, so a sweep can pass one set of keywords to every
        attack; its constructor itself rejects ``steps != 1``.

    Raises
    ------
    KeyError
        For an unknown name; the message lists the valid ones.
    """
    if not isinstance(name, str) or name.lower() not in ATTACKS:
        raise KeyError(f"unknown attack {name!r}; valid names are {sorted(ATTACKS)}.")
    cls = ATTACKS[name.lower()]
    if getattr(cls, "fixed_steps", None) is not None:
        kwargs.pop("steps", None)  # the number of steps is part of the method (FGSM: one)
    return cls(model, **kwargs)


@dataclass
class AttackResult:
    """Everything an attack run produced, for the chapters and tests.

    All tensors are detached and live on the device of the clean input.

    Attributes
    ----------
    x_adv : torch.Tensor
        Adversarial images, same shape, dtype and device as the clean input.
    y : torch.Tensor
        True labels, shape (N,).
    target : torch.Tensor or None
        Target classes used by a targeted attack (given or seeded choice), else ``None``.
    success : torch.Tensor
        Bool (N,): ``argmax(logits) == target`` (targeted) or ``!= y`` (untargeted).
    logits : torch.Tensor
        Logits of the model on ``x_adv``, shape (N, K).
    final_loss : torch.Tensor
        The attack's objective (:meth:`IterativeAttack.objective`: task loss with the penalties
        combined) on ``x_adv`` without the input transform, shape (N,).
    linf, l2 : torch.Tensor
        Per-image L-infinity and L2 norms of ``x_adv - x``, shape (N,).
    loss : torch.Tensor or None
        ``records["loss"]`` when the loss was recorded (``record=True``), else ``None``.
    features : torch.Tensor or None
        ``records["features:penultimate"]`` when recorded (``record_features=True``), else ``None``.
    records : dict of str to torch.Tensor
        Per-step traces requested with ``run(..., record=(...))``:

        ``"loss"`` (steps, N)
            The objective at the iterate each step differentiated (at the random start for step 0
            of PGD; on the transformed copy for DI), exactly what the step's gradient came from.
        ``"linf"``, ``"l2"`` (steps, N)
            Norms of the perturbation after each step's projection; the last row is ``linf`` / ``l2``.
        ``"features:<tap>"`` (steps + 1, N, C)
            Spatial means of the tap; index 0 is the **clean** image, index t the iterate after
            t steps (the last one computed on the user's model, the others in the loop).
    """

    x_adv: torch.Tensor
    y: torch.Tensor
    target: torch.Tensor | None
    success: torch.Tensor
    logits: torch.Tensor
    final_loss: torch.Tensor
    linf: torch.Tensor
    l2: torch.Tensor
    loss: torch.Tensor | None = None
    features: torch.Tensor | None = None
    records: dict = field(default_factory=dict)
    attack: str = ""
    params: dict = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        """Fraction of images on which the attack succeeded."""
        return float(self.success.float().mean())


#: Eval mode with frozen parameters, restored exactly afterwards (:func:`medadv_lib.models.frozen`).
#: Attacks are always crafted in eval mode (BatchNorm with running statistics, no dropout), also
#: inside a training loop; they never update BatchNorm statistics.
attack_mode = frozen


def _check_flag(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}.")
    return value


def _model_device_dtype(model: nn.Module) -> tuple[torch.device | None, torch.dtype | None]:
    for tensor in model.parameters():
        return tensor.device, tensor.dtype if tensor.is_floating_point() else None
    for tensor in model.buffers():
        return tensor.device, tensor.dtype if tensor.is_floating_point() else None
    return None, None


_RECORD_NAMES = ("loss", "linf", "l2")
_FEATURES = "features:"


@dataclass(frozen=True)
class _RecordPlan:
    """What one run keeps per step (parsed from ``run(record=..., record_features=...)``)."""

    loss: bool = False
    linf: bool = False
    l2: bool = False
    taps: tuple[str, ...] = ()  # spatial means of these taps at the clean image and after every step


class IterativeAttack:
    """Projected signed-gradient L-infinity attack loop (Kurakin et al. 2017; Madry et al. 2018).

    Each step differentiates the :meth:`objective` on the (optionally transformed) iterate, then
    ``x <- clip_[0,1](proj_eps(step(x, grad)))`` with the default :meth:`step`
    ``x +/- alpha * direction(grad)``: ascent for untargeted attacks (:attr:`maximize` true),
    descent towards the target for targeted ones and for CW.

    Parameters
    ----------
    model : nn.Module
        Classifier taking [0, 1] images and returning logits. Feature-aware losses and penalties
        need a :class:`~medadv_lib.models.FeatureModel` (``forward_features``).
    eps : float
        L-infinity budget in [0, 1]. A plain attribute: ``attack.eps = e`` changes the budget (and
        the default step size) of later calls; ``attack(x, y, eps=e)`` changes it for one call.
    alpha : float, optional
        Step size; default ``None`` follows the budget, ``eps / 5`` (HFC work; the Methods
        page, :ref:`methods-notation`), whatever eps the call uses. A given number stays fixed when eps changes.
    steps : int, default 10
    targeted : bool, default False
        Descend the loss towards ``target``; without a given target a seeded random other class is
        chosen (the other class for binary tasks).
    random_start : bool, default False
        Start from a uniform point in the eps-ball (Madry et al. 2018).
    seed : int, optional
        Seeds a private ``torch.Generator`` for the random start, the target choice and random
        input transforms; every call with the same seed and inputs gives the same output.
        ``None`` draws a seed from torch's global generator (so ``torch.manual_seed`` applies).
    feature_layers : sequence of str, optional
        Feature taps that :meth:`loss` receives; ``None`` (default) runs a plain ``model(x)``
        unless penalties or records need taps.
    penalties : sequence of penalties, optional
        Loss terms :math:`P_i` (:mod:`medadv_lib.attacks.penalty`), each **always minimised**:
        the loop differentiates ``loss - sum P_i`` when it ascends and ``loss + sum P_i`` when it
        descends (see :meth:`objective`). Their taps are added to the forward pass.
    fuse_bn : bool, default True
        Run the forward/backward passes of the loop on a cached eval-mode *copy* of the model in
        which every BatchNorm that directly follows a convolution is folded into it (conv-BN
        folding, :mod:`medadv_lib.attacks._fast`); on the CPU the copy is also stored channels-last.
        Same function up to float rounding (logits agree to ~1e-6 relative), so the adversarial
        images equal the unfused ones except where a gradient component is so close to zero that
        rounding flips its sign. The user's model is never modified; feature taps and other hooks
        work on the copy (they fire on the copy's modules); the copy is rebuilt when the model's
        modules, hooks, parameters or buffers change, and it is only made when some BatchNorm
        folds. A model that changes between calls (a training loop attacking every mini-batch) is
        detected after a few copies that were never reused and then runs unfused (one log line).
        The final logits, success and features of :meth:`run` come from the original model.
        Set it to False for bit-exact reproduction of results computed without folding.

    Notes
    -----
    A target equal to the true label only triggers a ``UserWarning``: such an image is already
    in the target class, and the attack simply makes it more confident. Pipelines that send every
    image to one fixed class rely on this.

    Subclassing: override :meth:`loss` (per-sample task loss from logits and the feature taps),
    :meth:`direction` (step direction from the input gradient, e.g. momentum),
    :meth:`transform` (input transform before the forward pass, e.g. DI),
    :meth:`step` (the whole update before projection), :attr:`maximize` (ascent or descent) or,
    for several forward passes per step, :meth:`objective`. A subclass constructor forwards
    ``feature_layers``, ``penalties`` and ``fuse_bn`` to this one. Per-run mutable state lives in
    the ``state`` dict the hooks receive:

    ``x``, ``y``, ``target``, ``generator``
        The clean batch, labels, targets (or ``None``) and the run's seeded generator.
    ``step``
        Index of the current step, from 0.
    ``layers``
        Taps of the loop's forward pass (``feature_layers``, penalties' and recorded taps), or
        ``None``.
    ``eps``, ``alpha``, ``step_size``
        The call's budget and step size; ``step_size`` is ``+alpha`` when ascending, ``-alpha``
        when descending.
    ``delta_step``
        Set by the default :meth:`step`: the update ``step_size * direction`` just taken (before
        projection), e.g. for SMIA's smoothed-step term at the next step.
    ``final``
        ``True`` only when :meth:`objective` is evaluated at the final iterate for ``final_loss``:
        random input transforms are skipped then.
    """

    #: registry / display name
    name: str = "iterative"
    #: default feature taps passed to :meth:`loss`; ``None`` requests no features
    feature_layers: tuple[str, ...] | None = None
    #: default step size as a fraction of eps
    default_alpha_fraction: float = 0.2
    #: a number of steps fixed by the method (FGSM: 1); :func:`get_attack` then drops ``steps``
    fixed_steps: int | None = None
    #: bumped when the algorithm's output changes for the same hyper-parameters; part of :meth:`spec`
    version: int = 1

    def __init__(self, model: nn.Module, *, eps: float, alpha: float | None = None, steps: int = 10,
                 targeted: bool = False, random_start: bool = False, seed: int | None = None,
                 feature_layers: Iterable[str] | None = None, penalties: Iterable | None = None,
                 fuse_bn: bool = True):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module classifier, got {type(model).__name__}.")
        self.model = model
        self.eps = eps
        self.steps = check_positive_int(steps, "steps")
        self.alpha = alpha
        self.targeted = bool(targeted)
        self.random_start = bool(random_start)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {seed!r}.")
        self.seed = seed
        layers = feature_layers if feature_layers is not None else type(self).feature_layers
        self.feature_layers = self._check_layers(layers)
        self.penalties = check_penalties(penalties)
        for p in self.penalties:
            self._check_layers(tuple(p.layers))
        self.fuse_bn = _check_flag(fuse_bn, "fuse_bn")
        self._loop_model: nn.Module | None = None  # the folded copy while the loop runs

    # ------------------------------------------------------------------ budget and step size
    @property
    def eps(self) -> float:
        """L-infinity budget in [0, 1]; assigning it re-validates and moves a default ``alpha``."""
        return self._eps

    @eps.setter
    def eps(self, value: float) -> None:
        self._eps = check_eps(value)

    @property
    def alpha(self) -> float:
        """Step size: the given one, else ``default_alpha_fraction * eps`` (follows ``eps``)."""
        return self._step_for(self._eps)

    @alpha.setter
    def alpha(self, value: float | None) -> None:
        self._alpha = None if value is None else self._check_alpha(value)

    def _step_for(self, eps: float) -> float:
        return self._alpha if self._alpha is not None else eps * self.default_alpha_fraction

    # ------------------------------------------------------------------ validation
    @staticmethod
    def _check_alpha(alpha) -> float:
        try:
            value = float(alpha)
        except (TypeError, ValueError):
            raise TypeError(f"alpha must be a number (the step size), got {alpha!r}.") from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"alpha={alpha!r} must be a positive step size, e.g. eps / 5 (the default).")
        return value

    def _check_layers(self, layers):
        if layers is None:
            return None
        if isinstance(layers, str):
            layers = (layers,)
        layers = tuple(layers)
        if not layers:
            return layers
        if not hasattr(self.model, "forward_features"):
            raise TypeError(
                f"{type(self).__name__} needs feature taps {list(layers)}, but {type(self.model).__name__} has no "
                "`forward_features`; build the model with medadv_lib.models.build_model (a FeatureModel)."
            )
        names = getattr(self.model, "feature_names", None)
        if names is not None:
            unknown = [name for name in layers if name not in names]
            if unknown:
                raise ValueError(f"unknown feature layer(s) {unknown}; this model has {list(names)}.")
        return layers

    def _check_inputs(self, x, y, target):
        if hasattr(self.model, "check_input"):
            self.model.check_input(x)  # FeatureModel: check_images plus rank and channels
        else:
            check_images(x)
        check_labels(y, x.shape[0])
        if target is not None:
            if not self.targeted:
                raise ValueError(f"a target was given to an untargeted {type(self).__name__}; "
                                 "construct the attack with targeted=True.")
            check_labels(target, x.shape[0], name="target")

    def _record_plan(self, record, record_features: bool) -> _RecordPlan:
        if isinstance(record, bool):
            names = ("loss",) if record else ()
        elif isinstance(record, str):
            names = (record,)
        else:
            try:
                names = tuple(record)
            except TypeError:
                raise TypeError(f"record must be True/False or a sequence of names such as "
                                f"('loss', 'linf', 'l2', 'features:<tap>'), got {record!r}.") from None
        taps = []
        for name in names:
            if not isinstance(name, str) or not (name in _RECORD_NAMES or name.startswith(_FEATURES)):
                raise ValueError(f"unknown record {name!r}; use 'loss', 'linf', 'l2' or 'features:<tap>' "
                                 "(a tap of model.feature_names, e.g. 'features:penultimate').")
            if name.startswith(_FEATURES):
                taps.append(name[len(_FEATURES):])
        if _check_flag(record_features, "record_features"):
            taps.append(PENULTIMATE)
        taps = tuple(dict.fromkeys(taps))
        if taps and not hasattr(self.model, "forward_features"):
            raise TypeError(f"recording features {list(taps)} (record_features=True or 'features:<tap>') needs "
                            "a model with `forward_features` (a FeatureModel from medadv_lib.models.build_model).")
        self._check_layers(taps)
        return _RecordPlan(loss="loss" in names, linf="linf" in names, l2="l2" in names, taps=taps)

    def _num_classes(self, x: torch.Tensor) -> int:
        k = getattr(self.model, "num_classes", None)
        if isinstance(k, int):
            return k
        with torch.no_grad():  # a plain nn.Module: read K off one image's logits
            return int(self.model(x[:1]).shape[-1])

    # ------------------------------------------------------------------ overridable hooks
    @property
    def maximize(self) -> bool:
        """True when the loop ascends :meth:`objective` (untargeted), False to descend (targeted)."""
        return not self.targeted

    def loss(self, logits: torch.Tensor, features: Mapping[str, torch.Tensor], y: torch.Tensor,
             target: torch.Tensor | None) -> torch.Tensor:
        """Per-sample *task* loss, shape (N,): cross-entropy to ``target`` (targeted) or to ``y``.

        ``features`` maps each tap of the forward pass (``feature_layers``, the penalties' taps and
        recorded taps) to its tensor; it is empty when none were requested.
        """
        return F.cross_entropy(logits, target if self.targeted else y, reduction="none")

    def with_penalties(self, task: torch.Tensor, logits: torch.Tensor, features: Mapping[str, torch.Tensor],
                       y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        """``task - sum P_i`` when :attr:`maximize`, else ``task + sum P_i``: every penalty is minimised.

        For :meth:`objective` overrides that compute their own task term but keep ``penalties=``.
        """
        if not self.penalties:
            return task
        total = sum(p(logits, features, y, target) for p in self.penalties)
        return task - total if self.maximize else task + total

    def direction(self, grad: torch.Tensor, state: dict) -> torch.Tensor:
        """Step direction from the input gradient; the sign for L-infinity steepest ascent.

        ``grad`` is a fresh tensor owned by the loop, so it may be modified in place.
        """
        return grad.sign_()

    def transform(self, x_adv: torch.Tensor, state: dict) -> torch.Tensor:
        """Input transform applied before the forward pass of each step (identity here)."""
        return x_adv

    def step(self, x_adv: torch.Tensor, grad: torch.Tensor, state: dict) -> torch.Tensor:
        """The next iterate *before* projection: ``x_adv + step_size * direction(grad, state)``.

        The loop calls it between the gradient and the projection onto the eps-ball and [0, 1],
        so an override may return any point; the loop projects it. The default stores the update
        it takes in ``state["delta_step"]``.

        Parameters
        ----------
        x_adv : torch.Tensor
            The current iterate, detached (do not modify it in place: at step 0 it may share
            storage with the caller's images).
        grad : torch.Tensor
            Gradient of the summed :meth:`objective` w.r.t. ``x_adv``; a fresh tensor.
        state : dict
            See the class Notes; ``state["step_size"]`` carries the sign of the loop.
        """
        delta = self.direction(grad, state) * state["step_size"]
        state["delta_step"] = delta
        return x_adv + delta

    def init_state(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None,
                   generator: torch.Generator) -> dict:
        """Per-run state given to the hooks: the clean batch, labels, generator, step index."""
        return {"x": x, "y": y, "target": target, "generator": generator, "step": 0}

    def objective(self, x_adv: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, state: dict):
        """Forward pass and per-sample **objective** for one step.

        The objective is the quantity the loop moves along: it *ascends* it when :attr:`maximize`
        (untargeted attacks) and *descends* it otherwise (targeted attacks, CW). It is the task
        :meth:`loss` with the penalties combined by :meth:`with_penalties` (``loss - sum P`` when
        ascending, ``loss + sum P`` when descending), so the penalties always go down. The
        recorded ``"loss"`` and ``AttackResult.final_loss`` are this objective, evaluated by this
        same method (``final_loss`` with ``state["final"] = True``: no random transform, under
        ``torch.no_grad()``, on the user's model).

        Returns
        -------
        objective : torch.Tensor
            Shape (N,), differentiable w.r.t. ``x_adv`` (except when ``state["final"]``).
        logits : torch.Tensor
            Logits of the pass on (the transform of) ``x_adv``.
        features : Mapping[str, torch.Tensor]
            Taps ``state["layers"]`` of that pass.
        """
        x_in = x_adv if state.get("final") else self.transform(x_adv, state)
        logits, features = self.forward(x_in, state["layers"])
        return self.with_penalties(self.loss(logits, features, y, target), logits, features, y, target), \
            logits, features

    def forward(self, x: torch.Tensor, layers: tuple[str, ...] | None = None):
        """``(logits, features)`` in one pass; features are empty when ``layers`` is None.

        Inside the loop this runs the BatchNorm-folded copy of the model (``fuse_bn``), elsewhere
        the model itself.
        """
        model = self._loop_model if self._loop_model is not None else self.model
        if layers is None:
            return model(x), {}
        logits, features = model.forward_features(x, layers)
        if model is not self.model:  # a channels-last copy: hand out standard-layout taps
            features = OrderedDict((name, f.contiguous()) for name, f in features.items())
        return logits, features

    # ------------------------------------------------------------------ public API
    def __call__(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None, *,
                 eps: float | None = None) -> torch.Tensor:
        """Adversarial batch for images ``x`` (N, C, ...) in [0, 1] and labels ``y`` (N,).

        ``eps`` overrides the budget for this call only (a default ``alpha`` follows it).
        """
        return self._execute(x, y, target, eps=eps, summarize=False, plan=_RecordPlan())

    def run(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None, *,
            record: bool | str | Iterable[str] = False, record_features: bool = False,
            eps: float | None = None) -> AttackResult:
        """Attack and return an :class:`AttackResult` (success, norms, and optional traces).

        Parameters
        ----------
        x, y, target
            As for ``attack(x, y, target)``.
        record : bool, str or sequence of str, default False
            Per-step traces for ``result.records`` (see :class:`AttackResult`): any of ``"loss"``,
            ``"linf"``, ``"l2"`` and ``"features:<tap>"``. ``True`` means ``("loss",)``.
        record_features : bool, default False
            Same as adding ``"features:penultimate"``: penultimate features at the clean image and
            after every step, shape (steps + 1, N, D), also as ``result.features``.
        eps : float, optional
            Budget for this call only.
        """
        plan = self._record_plan(record, record_features)
        return self._execute(x, y, target, eps=eps, summarize=True, plan=plan)

    def extra_repr(self) -> str:
        text = (f"eps={self.eps:g}, alpha={self.alpha:g}, steps={self.steps}, targeted={self.targeted}, "
                f"random_start={self.random_start}, seed={self.seed}")
        if self.penalties:
            text += f", penalties={list(self.penalties)}"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def _common_hyperparameters(self) -> dict:
        return {"feature_layers": None if self.feature_layers is None else list(self.feature_layers),
                "penalties": [p.spec for p in self.penalties], "fuse_bn": self.fuse_bn}

    def hyperparameters(self) -> dict:
        """The constructor's hyper-parameters (JSON-able), for records and provenance."""
        return {"eps": self.eps, "alpha": self.alpha, "steps": self.steps, "targeted": self.targeted,
                "random_start": self.random_start, "seed": self.seed, **self._common_hyperparameters()}

    def spec(self) -> dict:
        """JSON-able description a cache can hash: name, version, hyper-parameters, penalties.

        ``penalties`` lists each penalty's ``spec`` and ``state_key`` (the cache key of fitted state
        it holds, ``None`` when it holds none), so a cache can also chain those keys upstream.
        """
        spec = {"name": self.name, "class": type(self).__qualname__, "version": self.version,
                "hyperparameters": self.hyperparameters(),
                "penalties": [{"spec": p.spec, "state_key": getattr(p, "state_key", None)}
                              for p in self.penalties]}
        json.dumps(spec, sort_keys=True)  # fail here, naming nothing vague, if a subclass broke it
        return spec

    # ------------------------------------------------------------------ the loop
    def _choose_target(self, y: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        if k == 2:
            return 1 - y
        offset = torch.randint(1, k, y.shape, generator=generator).to(y.device)
        return (y + offset) % k

    def _layers(self, plan: _RecordPlan) -> tuple[str, ...] | None:
        """Taps of the loop's forward pass: the loss's, the penalties' and the recorded ones."""
        names = [*(self.feature_layers or ()), *(n for p in self.penalties for n in p.layers), *plan.taps]
        return tuple(dict.fromkeys(names)) if names else None

    def _execute(self, x, y, target, *, eps, summarize, plan):
        if torch.is_inference_mode_enabled():
            raise RuntimeError("attacks need autograd: call them outside `torch.inference_mode()` "
                               "(a `torch.no_grad()` block is fine).")
        eps = self.eps if eps is None else check_eps(eps)
        self._check_inputs(x, y, target)
        device, dtype = _model_device_dtype(self.model)
        device = device if device is not None else x.device
        dtype = dtype if dtype is not None else x.dtype
        xd = x.detach().to(device=device, dtype=dtype)  # no copy when already there
        if xd.is_inference():  # made under inference_mode: autograd cannot track it, copy once
            xd = xd.clone()
        yd = y.detach().to(device=device, dtype=torch.long)
        seed = self.seed if self.seed is not None else int(torch.randint(0, 2**62, (1,)).item())
        generator = torch.Generator().manual_seed(seed)  # CPU: scalar draws never sync a GPU

        with attack_mode(self.model), torch.enable_grad():
            k = self._num_classes(xd)
            yd = check_labels(yd, xd.shape[0], k)  # a normal copy of labels made under inference_mode
            td = None
            if self.targeted:
                if target is None:
                    td = self._choose_target(yd, k, generator)
                else:
                    td = target.detach().to(device=device, dtype=torch.long)
                    td = check_labels(td, xd.shape[0], k, name="target")
                    same = int((td == yd).sum())
                    if same:
                        warnings.warn(f"{same} of {len(yd)} targets equal the true label; those images are "
                                      "already in the target class and are only made more confident.",
                                      UserWarning, stacklevel=3)
            fast = EVAL_COPIES.get(self.model) if self.fuse_bn else None
            self._loop_model = fast.model if fast is not None else None
            try:
                x_adv, trace = self._loop(xd, yd, td, generator, eps, plan)
            finally:
                self._loop_model = None
            if summarize:
                result = self._summarize(x, xd, x_adv, yd, td, trace, seed, eps, plan)

        x_out = self._to_input_space(x, x_adv, eps)
        if not summarize:
            return x_out
        result.x_adv = x_out
        return result

    def _loop(self, x, y, target, generator, eps, plan):
        alpha = self._step_for(eps)
        state = self.init_state(x, y, target, generator)
        state.update(layers=self._layers(plan), eps=eps, alpha=alpha,
                     step_size=alpha if self.maximize else -alpha)
        # one projection+clip op per step: the eps-ball intersected with [0, 1] is a box
        lo = (x - eps).clamp_(min=0.0)
        hi = (x + eps).clamp_(max=1.0)
        if self.random_start and eps > 0:
            noise = torch.empty(x.shape, dtype=x.dtype).uniform_(-eps, eps, generator=generator)
            x_adv = (x + noise.to(x.device)).clamp_(lo, hi)
        else:
            x_adv = x.detach()  # a new tensor object over x's storage: never written in place
        # the taps of the objective's own pass can be recorded only when it sees the iterate itself
        reuse_forward = type(self).transform is IterativeAttack.transform
        losses, linf, l2 = [], [], []
        taps = {name: [] for name in plan.taps}
        clean_apart = bool(taps) and (self.random_start or not reuse_forward)
        if clean_apart:
            self._append_taps(taps, self._tap_pass(x, plan.taps))
        for step in range(self.steps):
            state["step"] = step
            x_adv.requires_grad_(True)
            loss, _, features = self.objective(x_adv, y, target, state)
            (grad,) = torch.autograd.grad(loss.sum(), x_adv)  # sum: per-sample gradients, input only
            if plan.loss:
                losses.append(loss.detach())
            if taps and (step > 0 or not clean_apart):
                self._append_taps(taps, features if reuse_forward else self._tap_pass(x_adv.detach(), plan.taps))
            current = x_adv.detach()
            x_next = self.step(current, grad, state)
            if x_next.data_ptr() == current.data_ptr():  # an override that did not move: never write into x
                x_adv = torch.clamp(x_next, lo, hi)
            else:
                x_adv = x_next.clamp_(lo, hi)
            if plan.linf or plan.l2:
                delta = (x_adv - x).flatten(1)
                if plan.linf:
                    linf.append(delta.abs().amax(1))
                if plan.l2:
                    l2.append(delta.norm(dim=1))
        state.pop("delta_step", None)
        records = {}
        for name, values in (("loss", losses), ("linf", linf), ("l2", l2)):
            if values:
                records[name] = torch.stack(values)
        return x_adv, {"records": records, "taps": taps, "state": state}

    @staticmethod
    def _append_taps(taps: dict, features: Mapping[str, torch.Tensor]) -> None:
        for name, values in taps.items():
            values.append(spatial_mean(features[name].detach()))

    def _tap_pass(self, x, layers):
        model = self._loop_model if self._loop_model is not None else self.model
        with torch.no_grad():
            return model.forward_features(x, list(layers))[1]

    def _summarize(self, x, xd, x_adv, y, target, trace, seed, eps, plan):
        state = trace["state"]
        state["final"] = True
        with torch.no_grad():
            final_loss, logits, features = self.objective(x_adv, y, target, state)
            pred = logits.argmax(1)
            success = pred == target if self.targeted else pred != y
            delta = (x_adv - xd).flatten(1)
            records = dict(trace["records"])
            for name, values in trace["taps"].items():
                records[_FEATURES + name] = torch.stack([*values, spatial_mean(features[name])])
        out = x.device

        def mv(t):
            return None if t is None else t.detach().to(out)

        records = {name: mv(t) for name, t in records.items()}
        params = self.hyperparameters()
        params.update({key: value for key, value in (("eps", eps), ("alpha", self._step_for(eps)))
                       if key in params})
        return AttackResult(
            x_adv=x_adv, y=mv(y), target=mv(target), success=mv(success), logits=mv(logits),
            final_loss=mv(final_loss), linf=mv(delta.abs().amax(1)), l2=mv(delta.norm(dim=1)),
            loss=records.get("loss"), features=records.get(_FEATURES + PENULTIMATE), records=records,
            attack=type(self).__name__, params={**params, "seed": seed},
        )

    def _to_input_space(self, x, x_adv, eps):
        x_adv = x_adv.detach()
        if x_adv.dtype == x.dtype and x_adv.device == x.device:
            return x_adv
        x_adv = x_adv.to(device=x.device, dtype=x.dtype)
        # re-project in the caller's dtype so rounding cannot leave the ball or [0, 1]
        return torch.minimum(torch.maximum(x_adv, (x - eps).clamp(min=0.0)), (x + eps).clamp(max=1.0))
