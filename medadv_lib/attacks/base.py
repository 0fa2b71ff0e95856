"""The one iterative L-infinity attack loop that every attack in the book shares.

FGSM, BIM, PGD, MIM, DI and CW-Linf differ only in a loss, a step direction, an input transform
and a start point, so :class:`IterativeAttack` owns everything else: validation, eval mode and its
restoration, freezing parameters so autograd computes the input gradient only, projection onto the
eps-ball and [0, 1] after every step, seeded randomness, target choice and the optional record.
HFC and SMIA extend it the same way, by overriding :meth:`IterativeAttack.loss` (which also sees
the feature taps named in ``feature_layers``), :meth:`IterativeAttack.direction`,
:meth:`IterativeAttack.transform` or, for losses that need extra forward passes,
:meth:`IterativeAttack.objective`.

Conventions (``docs/design/METHODS.md`` section 1): images in [0, 1], normalisation inside the
model, budgets as plain floats on the [0, 1] scale (see :func:`medadv_lib.attacks.budget`).
"""
from __future__ import annotations

import functools
import inspect
import logging
import math
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_eps, check_images, check_labels, check_positive_int
from ._fast import EVAL_COPIES

__all__ = [
    "ATTACKS",
    "AttackResult",
    "IterativeAttack",
    "attack_mode",
    "get_attack",
    "register_attack",
]

logger = logging.getLogger(__name__)

PENULTIMATE = "penultimate"  # same name as medadv_lib.models.PENULTIMATE, kept local to avoid importing torchvision

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
        Keyword-only hyper-parameters of that attack.

    Raises
    ------
    KeyError
        For an unknown name; the message lists the valid ones.
    """
    if not isinstance(name, str) or name.lower() not in ATTACKS:
        raise KeyError(f"unknown attack {name!r}; valid names are {sorted(ATTACKS)}.")
    return ATTACKS[name.lower()](model, **kwargs)


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
        The attack's per-sample loss on ``x_adv`` (no input transform), shape (N,).
    linf, l2 : torch.Tensor
        Per-image L-infinity and L2 norms of ``x_adv - x``, shape (N,).
    loss : torch.Tensor or None
        With ``record=True``: (steps, N), the loss at the iterate each step differentiated (at
        the random start for step 0 of PGD; on the transformed copy for DI).
    features : torch.Tensor or None
        With ``record_features=True``: penultimate features (steps + 1, N, D); index 0 is the
        **clean** image, index t the iterate after t steps.
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
    attack: str = ""
    params: dict = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        """Fraction of images on which the attack succeeded."""
        return float(self.success.float().mean())


@contextmanager
def attack_mode(model: nn.Module):
    """Put ``model`` in eval mode with frozen parameters; restore both afterwards, even on error.

    Freezing parameters (``requires_grad_(False)``) keeps autograd from saving activations that
    only weight gradients need; the previous per-module ``training`` flags and per-parameter
    ``requires_grad`` flags are restored exactly, so mixed modes survive an attack.
    """
    modes = [(module, module.training) for module in model.modules()]
    trainable = [p for p in model.parameters() if p.requires_grad]
    try:
        model.eval()
        for p in trainable:
            p.requires_grad_(False)
        yield model
    finally:
        for p in trainable:
            p.requires_grad_(True)
        for module, training in modes:
            module.training = training


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


class IterativeAttack:
    """Projected signed-gradient L-infinity attack loop (Kurakin et al. 2017; Madry et al. 2018).

    Each step computes ``g = d loss / d x`` on the (optionally transformed) iterate, then
    ``x <- clip_[0,1](proj_eps(x +/- alpha * direction(g)))``: ascent for untargeted attacks
    (:attr:`maximize` true), descent towards the target for targeted ones.

    Parameters
    ----------
    model : nn.Module
        Classifier taking [0, 1] images and returning logits. Feature-aware losses need a
        :class:`~medadv_lib.models.FeatureModel` (``forward_features``).
    eps : float
        L-infinity budget in [0, 1].
    alpha : float, optional
        Step size; default ``eps / 5`` (HFC work, METHODS.md section 1).
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
        Feature taps that :meth:`loss` receives; ``None`` (default) runs a plain ``model(x)``.
    fuse_bn : bool, default True
        Run the forward/backward passes of the loop on a cached eval-mode *copy* of the model in
        which every BatchNorm that directly follows a convolution is folded into it (conv-BN
        folding, :mod:`medadv_lib.attacks._fast`); on the CPU the copy is also stored channels-last.
        Same function up to float rounding (logits agree to ~1e-6 relative), so the adversarial
        images equal the unfused ones except where a gradient component is so close to zero that
        rounding flips its sign. The user's model is never modified; feature taps and other hooks
        work on the copy (they fire on the copy's modules); the copy is rebuilt when the model's
        modules, hooks, parameters or buffers change, and it is only made when some BatchNorm
        folds. The final logits, success and features of :meth:`run` come from the original model.
        Every subclass constructor accepts ``fuse_bn=`` (see :meth:`__init_subclass__`); it is
        also a plain attribute, ``attack.fuse_bn = False``. Set it to False for bit-exact
        reproduction of results computed without folding.

    Notes
    -----
    A target equal to the true label only triggers a ``UserWarning``: such an image is already
    in the target class, and the attack simply makes it more confident. Pipelines that send every
    image to one fixed class rely on this.

    Subclassing: override :meth:`loss` (per-sample loss from logits and the feature taps),
    :meth:`direction` (step direction from the input gradient, e.g. momentum),
    :meth:`transform` (input transform before the forward pass, e.g. DI),
    :attr:`maximize` (ascent or descent) or, for several forward passes per step,
    :meth:`objective`. Per-run mutable state lives in the ``state`` dict those hooks receive.
    """

    #: registry / display name
    name: str = "iterative"
    #: default feature taps passed to :meth:`loss`; ``None`` requests no features
    feature_layers: tuple[str, ...] | None = None
    #: default step size as a fraction of eps
    default_alpha_fraction: float = 0.2
    #: run the loop on a BatchNorm-folded copy of the model (see the ``fuse_bn`` parameter)
    fuse_bn: bool = True

    def __init_subclass__(cls, **kwargs):
        """Let every subclass constructor accept ``fuse_bn=`` without re-declaring it.

        A subclass ``__init__`` that does not name ``fuse_bn`` itself is wrapped so that a keyword
        ``fuse_bn`` is taken off before it runs and stored afterwards.
        """
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None or getattr(init, "_takes_fuse_bn", False):
            return
        try:
            signature = inspect.signature(init)
        except (TypeError, ValueError):
            return
        if "fuse_bn" in signature.parameters:
            return

        @functools.wraps(init)
        def __init__(self, *args, fuse_bn: bool | None = None, **kw):
            init(self, *args, **kw)
            if fuse_bn is not None:
                self.fuse_bn = _check_flag(fuse_bn, "fuse_bn")

        params = list(signature.parameters.values())
        extra = inspect.Parameter("fuse_bn", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="bool | None")
        at = next((i for i, p in enumerate(params) if p.kind is inspect.Parameter.VAR_KEYWORD), len(params))
        __init__.__signature__ = signature.replace(parameters=[*params[:at], extra, *params[at:]])
        __init__._takes_fuse_bn = True
        cls.__init__ = __init__

    def __init__(self, model: nn.Module, *, eps: float, alpha: float | None = None, steps: int = 10,
                 targeted: bool = False, random_start: bool = False, seed: int | None = None,
                 feature_layers: Iterable[str] | None = None, fuse_bn: bool = True):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module classifier, got {type(model).__name__}.")
        self.model = model
        self.eps = check_eps(eps)
        self.steps = check_positive_int(steps, "steps")
        self.alpha = self._check_alpha(alpha)
        self.targeted = bool(targeted)
        self.random_start = bool(random_start)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {seed!r}.")
        self.seed = seed
        layers = feature_layers if feature_layers is not None else type(self).feature_layers
        self.feature_layers = self._check_layers(layers)
        self.fuse_bn = _check_flag(fuse_bn, "fuse_bn")
        self._loop_model: nn.Module | None = None  # the folded copy while the loop runs

    # ------------------------------------------------------------------ validation
    def _check_alpha(self, alpha):
        if alpha is None:
            return self.eps * self.default_alpha_fraction
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

    def _num_classes(self, x: torch.Tensor) -> int:
        k = getattr(self.model, "num_classes", None)
        if isinstance(k, int):
            return k
        with torch.no_grad():  # a plain nn.Module: read K off one image's logits
            return int(self.model(x[:1]).shape[-1])

    # ------------------------------------------------------------------ overridable hooks
    @property
    def maximize(self) -> bool:
        """True when the loop ascends :meth:`loss` (untargeted), False to descend (targeted)."""
        return not self.targeted

    def loss(self, logits: torch.Tensor, features: Mapping[str, torch.Tensor], y: torch.Tensor,
             target: torch.Tensor | None) -> torch.Tensor:
        """Per-sample loss, shape (N,): cross-entropy to ``target`` (targeted) or to ``y``.

        ``features`` maps each name in :attr:`feature_layers` (and ``"penultimate"`` when recording)
        to its tensor from the same forward pass; it is empty when none were requested.
        """
        return F.cross_entropy(logits, target if self.targeted else y, reduction="none")

    def direction(self, grad: torch.Tensor, state: dict) -> torch.Tensor:
        """Step direction from the input gradient; the sign for L-infinity steepest ascent.

        ``grad`` is a fresh tensor owned by the loop, so it may be modified in place.
        """
        return grad.sign_()

    def transform(self, x_adv: torch.Tensor, state: dict) -> torch.Tensor:
        """Input transform applied before the forward pass of each step (identity here)."""
        return x_adv

    def init_state(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None,
                   generator: torch.Generator) -> dict:
        """Per-run state given to the hooks: the clean batch, labels, generator, step index."""
        return {"x": x, "y": y, "target": target, "generator": generator, "step": 0}

    def objective(self, x_adv: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, state: dict):
        """Forward pass and per-sample loss for one step.

        Returns
        -------
        loss : torch.Tensor
            Shape (N,), differentiable w.r.t. ``x_adv``.
        logits : torch.Tensor
        features : Mapping[str, torch.Tensor]
            Taps of the forward pass on ``transform(x_adv)``.
        """
        logits, features = self.forward(self.transform(x_adv, state), state["layers"])
        return self.loss(logits, features, y, target), logits, features

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
    def __call__(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """Adversarial batch for images ``x`` (N, C, ...) in [0, 1] and labels ``y`` (N,)."""
        return self._execute(x, y, target, summarize=False, record=False, record_features=False)

    def run(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None, *,
            record: bool = False, record_features: bool = False) -> AttackResult:
        """Attack and return an :class:`AttackResult` (success, norms, and optional traces).

        Parameters
        ----------
        x, y, target
            As for ``attack(x, y, target)``.
        record : bool, default False
            Keep the per-step loss, shape (steps, N).
        record_features : bool, default False
            Keep the penultimate features at the clean image and after every step,
            shape (steps + 1, N, D). Needs a model with ``forward_features``.
        """
        if record_features and not hasattr(self.model, "forward_features"):
            raise TypeError("record_features=True needs a model with `forward_features` "
                            "(a FeatureModel from medadv_lib.models.build_model).")
        return self._execute(x, y, target, summarize=True, record=record, record_features=record_features)

    def extra_repr(self) -> str:
        return (f"eps={self.eps:g}, alpha={self.alpha:g}, steps={self.steps}, targeted={self.targeted}, "
                f"random_start={self.random_start}, seed={self.seed}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def hyperparameters(self) -> dict:
        """The constructor's hyper-parameters, for records and provenance."""
        return {"eps": self.eps, "alpha": self.alpha, "steps": self.steps, "targeted": self.targeted,
                "random_start": self.random_start, "seed": self.seed}

    # ------------------------------------------------------------------ the loop
    def _choose_target(self, y: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        if k == 2:
            return 1 - y
        offset = torch.randint(1, k, y.shape, generator=generator).to(y.device)
        return (y + offset) % k

    def _execute(self, x, y, target, *, summarize, record, record_features):
        if torch.is_inference_mode_enabled():
            raise RuntimeError("attacks need autograd: call them outside `torch.inference_mode()` "
                               "(a `torch.no_grad()` block is fine).")
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
            check_labels(yd, xd.shape[0], k)
            td = None
            if self.targeted:
                if target is None:
                    td = self._choose_target(yd, k, generator)
                else:
                    td = target.detach().to(device=device, dtype=torch.long)
                    check_labels(td, xd.shape[0], k, name="target")
                    same = int((td == yd).sum())
                    if same:
                        warnings.warn(f"{same} of {len(yd)} targets equal the true label; those images are "
                                      "already in the target class and are only made more confident.",
                                      UserWarning, stacklevel=3)
            fast = EVAL_COPIES.get(self.model) if self.fuse_bn else None
            self._loop_model = fast.model if fast is not None else None
            try:
                x_adv, trace = self._loop(xd, yd, td, generator, record, record_features)
            finally:
                self._loop_model = None
            if summarize:
                result = self._summarize(x, xd, x_adv, yd, td, trace, seed, record_features)

        x_out = self._to_input_space(x, x_adv)
        if not summarize:
            return x_out
        result.x_adv = x_out
        return result

    def _loop(self, x, y, target, generator, record, record_features):
        layers = self.feature_layers
        if record_features:
            layers = tuple(dict.fromkeys((*(layers or ()), PENULTIMATE)))
        state = self.init_state(x, y, target, generator)
        state["layers"] = layers
        # one projection+clip op per step: the eps-ball intersected with [0, 1] is a box
        lo = (x - self.eps).clamp_(min=0.0)
        hi = (x + self.eps).clamp_(max=1.0)
        if self.random_start and self.eps > 0:
            noise = torch.empty(x.shape, dtype=x.dtype).uniform_(-self.eps, self.eps, generator=generator)
            x_adv = (x + noise.to(x.device)).clamp_(lo, hi)
        else:
            x_adv = x.detach()  # a new tensor object over x's storage: never written in place
        step_size = self.alpha if self.maximize else -self.alpha
        reuse_forward = type(self).transform is IterativeAttack.transform
        losses, feats = [], []
        if record_features and (self.random_start or not reuse_forward):
            feats.append(self._penultimate(x))
        for step in range(self.steps):
            state["step"] = step
            x_adv.requires_grad_(True)
            loss, _, features = self.objective(x_adv, y, target, state)
            (grad,) = torch.autograd.grad(loss.sum(), x_adv)  # sum: per-sample gradients, input only
            if record:
                losses.append(loss.detach())
            if record_features and (step > 0 or not feats):
                feats.append(features[PENULTIMATE].detach() if reuse_forward else self._penultimate(x_adv.detach()))
            direction = self.direction(grad, state)
            x_adv = torch.add(x_adv.detach(), direction, alpha=step_size).clamp_(lo, hi)
        trace = {"loss": torch.stack(losses) if record else None, "features": feats, "layers": layers}
        return x_adv, trace

    def _penultimate(self, x):
        model = self._loop_model if self._loop_model is not None else self.model
        with torch.no_grad():
            return model.forward_features(x, [PENULTIMATE])[1][PENULTIMATE].detach()

    def _summarize(self, x, xd, x_adv, y, target, trace, seed, record_features):
        with torch.no_grad():
            logits, features = self.forward(x_adv, trace["layers"])
            final_loss = self.loss(logits, features, y, target)
            pred = logits.argmax(1)
            success = pred == target if self.targeted else pred != y
            delta = (x_adv - xd).flatten(1)
            feats = None
            if record_features:
                feats = torch.stack([*trace["features"], features[PENULTIMATE]])
        out = x.device

        def mv(t):
            return None if t is None else t.detach().to(out)

        return AttackResult(
            x_adv=x_adv, y=mv(y), target=mv(target), success=mv(success), logits=mv(logits),
            final_loss=mv(final_loss), linf=mv(delta.abs().amax(1)), l2=mv(delta.norm(dim=1)),
            loss=mv(trace["loss"]), features=mv(feats), attack=type(self).__name__,
            params={**self.hyperparameters(), "seed": seed},
        )

    def _to_input_space(self, x, x_adv):
        x_adv = x_adv.detach()
        if x_adv.dtype == x.dtype and x_adv.device == x.device:
            return x_adv
        x_adv = x_adv.to(device=x.device, dtype=x.dtype)
        # re-project in the caller's dtype so rounding cannot leave the ball or [0, 1]
        return torch.minimum(torch.maximum(x_adv, (x - self.eps).clamp(min=0.0)), (x + self.eps).clamp(max=1.0))
