"""Accuracy under attack: the standard robustness curve (accuracy against the L-infinity budget).

The companion view of the stress test (the stress-test chapter, :doc:`stress_test`): for each data set, the test accuracy
of the model on clean images (eps = 0) and on adversarial images made with an **untargeted**
attack (PGD by default, Madry et al. 2018) at each budget. Either run the attacks here
(:func:`robustness_curve`) or pass adversarial sets made elsewhere, for example the cached ones of
:func:`medadv_lib.pipeline.adversarial_examples` (:func:`curve_from_examples`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from ..attacks import format_budget, get_attack
from ..models.utils import as_float_images, frozen, model_device
from ..validation import check_eps, check_images, check_labels, check_positive_int

__all__ = ["accuracy", "curve_from_examples", "predictions", "robustness_curve", "robustness_table"]

CURVE_COLUMNS = ["eps", "eps_k", "budget", "accuracy", "n_correct", "n"]


def predictions(model: nn.Module, x: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """Predicted classes for images ``x`` (uint8 or [0, 1] floats), in eval mode, on the CPU."""
    check_positive_int(batch_size, "batch_size")
    x = as_float_images(x)
    check_images(x)
    device = model_device(model)
    out = []
    with frozen(model), torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            out.append(model(x[start:start + batch_size].to(device)).argmax(1).cpu())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 256) -> float:
    """Share of images in ``x`` whose predicted class equals ``y`` (eval mode)."""
    check_labels(y, x.shape[0])
    return float((predictions(model, x, batch_size=batch_size) == y.cpu()).float().mean())


def _row(eps: float, n_correct: int, n: int) -> dict:
    return {"eps": float(eps), "eps_k": float(eps) * 256, "budget": "clean" if eps == 0 else format_budget(eps),
            "accuracy": n_correct / n, "n_correct": int(n_correct), "n": int(n)}


def curve_from_examples(model: nn.Module, examples: Mapping[float, Mapping], *, include_clean: bool = True,
                        batch_size: int = 256) -> pd.DataFrame:
    """Accuracy on precomputed adversarial sets, one row per budget (plus the clean images).

    Parameters
    ----------
    model : nn.Module
    examples : mapping eps -> mapping with ``x``, ``y`` and ``x_adv``
        For example ``{eps: adversarial_examples(tm, "pgd", eps, cfg) for eps in cfg.attack.eps}``.
        Every set must hold the same clean images and labels (the clean row is computed once).
    include_clean : bool, default True
        Add the eps = 0 row: the accuracy on the clean images ``x``.
    batch_size : int, default 256

    Returns
    -------
    pandas.DataFrame
        Columns ``eps, eps_k`` (eps x 256), ``budget`` (both notations, ``"clean"`` at 0),
        ``accuracy, n_correct, n``, sorted by eps.
    """
    if not examples:
        raise ValueError("examples is empty; pass {eps: {'x': ..., 'y': ..., 'x_adv': ...}}.")
    first = next(iter(examples.values()))
    x0, y0 = first["x"], first["y"].cpu()
    rows = []
    for eps, run in examples.items():
        missing = {"x", "y", "x_adv"} - set(run)
        if missing:
            raise KeyError(f"the set for eps={eps} lacks {sorted(missing)}.")
        if run["y"].shape != y0.shape or not torch.equal(run["y"].cpu(), y0):
            raise ValueError("every adversarial set must attack the same images with the same labels.")
        check_eps(float(eps))
        pred = predictions(model, run["x_adv"], batch_size=batch_size)
        rows.append(_row(eps, int((pred == y0).sum()), len(y0)))
    if include_clean and not any(float(eps) == 0 for eps in examples):
        pred = predictions(model, x0, batch_size=batch_size)
        rows.append(_row(0.0, int((pred == y0).sum()), len(y0)))
    return pd.DataFrame(rows, columns=CURVE_COLUMNS).sort_values("eps", ignore_index=True)


def robustness_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Sequence[float], *,
                     attack: str = "pgd", steps: int = 10, seed: int | None = 0, batch_size: int = 256,
                     **attack_kwargs) -> pd.DataFrame:
    """Run an untargeted attack at every budget and return the accuracy on its output.

    Parameters
    ----------
    model : nn.Module
    x : torch.Tensor
        Clean images in [0, 1] (or uint8), (N, C, H, W).
    y : torch.Tensor
        True labels, (N,).
    eps : sequence of float
        Budgets on the [0, 1] scale; 0 means the clean images (no attack is run).
    attack : str, default "pgd"
        A name known to :func:`medadv_lib.attacks.get_attack`.
    steps : int, default 10
    seed : int, optional
    batch_size : int, default 256
    **attack_kwargs
        Further keyword arguments of the attack (``alpha``, ...). ``targeted`` is not allowed:
        this is the untargeted curve.

    Returns
    -------
    pandas.DataFrame
        As :func:`curve_from_examples`.
    """
    if "targeted" in attack_kwargs:
        raise TypeError("robustness_curve is the untargeted curve; do not pass `targeted`.")
    check_positive_int(batch_size, "batch_size")
    x = as_float_images(x)
    check_images(x)
    check_labels(y, x.shape[0])
    rows = []
    for e in eps:
        e = check_eps(float(e))
        if e == 0:
            n_correct = int((predictions(model, x, batch_size=batch_size) == y.cpu()).sum())
        else:
            atk = get_attack(attack, model, eps=e, seed=seed, steps=steps, **attack_kwargs)  # FGSM drops steps
            n_correct = 0
            for start in range(0, x.shape[0], batch_size):
                xb, yb = x[start:start + batch_size], y[start:start + batch_size]
                pred = predictions(model, atk(xb, yb), batch_size=batch_size)
                n_correct += int((pred == yb.cpu()).sum())
        rows.append(_row(e, n_correct, x.shape[0]))
    return pd.DataFrame(rows, columns=CURVE_COLUMNS).sort_values("eps", ignore_index=True)


def robustness_table(curves: Mapping[str, pd.DataFrame], *, value: str = "accuracy") -> pd.DataFrame:
    """Wide table: one row per data set, one column per budget (``"clean"`` first), cells = ``value``.

    ``curves`` maps a data-set name to a frame of :func:`robustness_curve` or
    :func:`curve_from_examples`.
    """
    rows = []
    for name, frame in curves.items():
        frame = frame.sort_values("eps")
        rows.append({"dataset": name, "n": int(frame["n"].iloc[0]),
                     **dict(zip(frame["budget"], frame[value].astype(float)))})
    return pd.DataFrame(rows)
