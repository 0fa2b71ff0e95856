"""C&W-L2: the Carlini & Wagner L2 attack (IEEE S&P 2017), the "constant c" attack of the SSAT work."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..validation import check_images, check_labels, check_positive_int
from .base import AttackResult, attack_mode, register_attack
from .cw import margin_loss

__all__ = ["CWL2"]


def _check_number(value, name: str, *, minimum: float = 0.0, strict: bool = False) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}.") from None
    if not math.isfinite(out) or out < minimum or (strict and out == minimum):
        raise ValueError(f"{name}={value!r} must be a finite number {'>' if strict else '>='} {minimum:g}.")
    return out


@register_attack("cw_l2")
class CWL2:
    """Carlini & Wagner's L2 attack: Adam in tanh space on ``||x' - x||_2^2 + c * f(x')``.

    Carlini & Wagner, "Towards evaluating the robustness of neural networks", IEEE S&P 2017. The
    image is written ``x' = (tanh(w) + 1) / 2`` so it stays in [0, 1] without clipping, and Adam
    minimises the squared L2 distance plus ``c`` times the margin loss
    ``f = max(max_{j != t} z_j - z_t, -kappa)`` (targeted) or ``max(z_y - max_{j != y} z_j, -kappa)``
    (untargeted). Each image keeps the successful iterate of smallest L2 norm; an image never
    fooled is returned unchanged (as in the paper and torchattacks). See the Methods page
    (:ref:`methods-cw-l2`).

    Parameters
    ----------
    model : nn.Module
        Classifier on [0, 1] images.
    c : float, default 1.0
        Weight of the margin loss (the SSAT work's Figure 4 uses a constant c), or the initial c of
        the binary search.
    kappa : float, default 0.0
        Confidence margin on the logits.
    steps : int, default 100
        Adam steps (per binary-search round).
    lr : float, default 0.01
        Adam's learning rate (torchattacks' default and the paper's).
    binary_search_steps : int, default 0
        0 keeps ``c`` constant; otherwise the paper's per-image binary search on ``c`` over that many
        rounds (c is multiplied by 10 until an image is fooled, then bisected).
    abort_early : bool, default True
        Stop a round when the total cost has not decreased over a tenth of the steps (the paper's
        and torchattacks' rule).
    targeted : bool, default False
    seed : int, optional
        Seeds the target choice of a targeted attack without targets.

    Notes
    -----
    Differences from ``torchattacks.CW``: the margin uses ``-inf`` for the excluded class (theirs
    multiplies logits by a zero mask, which picks the wrong "other" logit when all others are
    negative); ``atanh`` is taken of the image shrunk by 1e-6 so that pixels at exactly 0 or 1 keep a
    finite ``w`` and a gradient.
    """

    name = "cw_l2"
    _SHRINK = 1 - 1e-6

    def __init__(self, model: nn.Module, *, c: float = 1.0, kappa: float = 0.0, steps: int = 100, lr: float = 0.01,
                 binary_search_steps: int = 0, abort_early: bool = True, targeted: bool = False,
                 seed: int | None = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module classifier, got {type(model).__name__}.")
        self.model = model
        self.c = _check_number(c, "c", strict=True)
        self.kappa = _check_number(kappa, "kappa")
        self.steps = check_positive_int(steps, "steps")
        self.lr = _check_number(lr, "lr", strict=True)
        self.binary_search_steps = check_positive_int(binary_search_steps, "binary_search_steps", minimum=0)
        self.abort_early = bool(abort_early)
        self.targeted = bool(targeted)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {seed!r}.")
        self.seed = seed

    def hyperparameters(self) -> dict:
        return {"c": self.c, "kappa": self.kappa, "steps": self.steps, "lr": self.lr,
                "binary_search_steps": self.binary_search_steps, "abort_early": self.abort_early,
                "targeted": self.targeted, "seed": self.seed}

    def spec(self) -> dict:
        """JSON-able description a cache can hash (as :meth:`IterativeAttack.spec`)."""
        return {"name": self.name, "class": type(self).__qualname__, "version": 1,
                "hyperparameters": self.hyperparameters(), "penalties": []}

    def __repr__(self) -> str:
        return f"CWL2({', '.join(f'{k}={v}' for k, v in self.hyperparameters().items())})"

    def __call__(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        return self.run(x, y, target).x_adv

    # ------------------------------------------------------------------
    def _margin(self, logits, y, target):
        labels = target if self.targeted else y
        # margin_loss is max(m + kappa, 0); C&W's f is max(m, -kappa) = margin_loss - kappa
        return margin_loss(logits, labels, kappa=self.kappa, targeted=self.targeted) - self.kappa

    def _fooled(self, logits, y, target):
        pred = logits.argmax(1)
        return pred == target if self.targeted else pred != y

    def _round(self, x, y, target, c, best_l2, best_adv):
        w = torch.atanh((2 * x - 1) * self._SHRINK).detach().requires_grad_(True)
        optimizer = torch.optim.Adam([w], lr=self.lr)
        fooled_any = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        prev_cost, check_every = math.inf, max(self.steps // 10, 1)
        for step in range(self.steps):
            x_adv = (torch.tanh(w) + 1) / 2
            l2sq = (x_adv - x).flatten(1).pow(2).sum(1)
            logits = self.model(x_adv)
            cost = l2sq + c * self._margin(logits, y, target)
            optimizer.zero_grad(set_to_none=True)
            cost.sum().backward()
            optimizer.step()
            with torch.no_grad():
                fooled = self._fooled(logits, y, target)
                better = fooled & (l2sq < best_l2)
                best_l2 = torch.where(better, l2sq, best_l2)
                best_adv = torch.where(better.view(-1, *[1] * (x.dim() - 1)), x_adv, best_adv)
                fooled_any |= fooled
            if self.abort_early and step % check_every == 0:
                total = float(cost.detach().sum())
                if total > prev_cost:
                    break
                prev_cost = total
        return best_l2, best_adv, fooled_any

    def run(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> AttackResult:
        """Attack a batch and return an :class:`~medadv_lib.attacks.AttackResult`."""
        if torch.is_inference_mode_enabled():
            raise RuntimeError("attacks need autograd: call them outside `torch.inference_mode()`.")
        check_images(x)
        check_labels(y, x.shape[0])
        if target is not None and not self.targeted:
            raise ValueError("a target was given to an untargeted CWL2; construct it with targeted=True.")
        param = next(self.model.parameters(), None)
        device = param.device if param is not None else x.device
        xd = x.detach().to(device=device, dtype=param.dtype if param is not None else x.dtype).clone()
        yd = y.detach().to(device=device, dtype=torch.long)
        seed = self.seed if self.seed is not None else int(torch.randint(0, 2**62, (1,)).item())
        gen = torch.Generator().manual_seed(seed)
        with attack_mode(self.model), torch.enable_grad():
            with torch.no_grad():
                k = int(self.model(xd[:1]).shape[1])
            check_labels(yd, len(yd), k)
            td = None
            if self.targeted:
                if target is None:
                    td = 1 - yd if k == 2 else (yd + torch.randint(1, k, yd.shape, generator=gen).to(device)) % k
                else:
                    td = target.detach().to(device=device, dtype=torch.long)
                    check_labels(td, len(yd), k, name="target")
            best_l2 = torch.full((len(xd),), math.inf, device=device, dtype=xd.dtype)
            best_adv = xd.clone()
            c = torch.full((len(xd),), self.c, device=device, dtype=xd.dtype)
            lower, upper = torch.zeros_like(c), torch.full_like(c, math.inf)
            for _ in range(max(self.binary_search_steps, 1)):
                best_l2, best_adv, fooled = self._round(xd, yd, td, c, best_l2, best_adv)
                if self.binary_search_steps:
                    upper = torch.where(fooled, torch.minimum(upper, c), upper)
                    lower = torch.where(fooled, lower, torch.maximum(lower, c))
                    c = torch.where(torch.isfinite(upper), (lower + upper) / 2, c * 10)
            with torch.no_grad():
                logits = self.model(best_adv)
                final = self._margin(logits, yd, td)
        success = self._fooled(logits, yd, td)
        delta = (best_adv - xd).flatten(1)
        out = x.device
        return AttackResult(x_adv=best_adv.to(device=out, dtype=x.dtype), y=yd.to(out),
                            target=None if td is None else td.to(out), success=success.to(out),
                            logits=logits.detach().to(out), final_loss=final.detach().to(out),
                            linf=delta.abs().amax(1).to(out), l2=delta.norm(dim=1).to(out), attack="CWL2",
                            params={**self.hyperparameters(), "seed": seed})
