"""The fixed-direction measurements swept over budgets, summarised, and viewed in 2-D.

Methods page, :ref:`methods-fixed-direction` (the HFC work, Yao et al., MICCAI 2021, Sec. 2). :func:`fixed_direction_sweep`
runs a targeted iterative attack that records the penultimate features at every step, once per
budget, and returns the rows of :func:`~medadv_lib.analysis.fixed_direction_frame` for all of them;
:func:`direction_summary` reduces them to the numbers a chapter quotes and :func:`pca_view` gives a
2-D picture of clean training, clean attacked and adversarial features.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..attacks import AttackResult, format_budget, get_attack
from ..models.utils import PENULTIMATE, as_float_images
from ..validation import check_eps, check_images, check_labels, check_positive_int
from .feature_stress import channel_activations
from .fixed_direction import ClassGaussian, fixed_direction_frame

__all__ = ["concat_results", "direction_summary", "fixed_direction_sweep", "pca_view", "penultimate_features"]

_RESULT_BATCH_FIELDS = ("x_adv", "y", "target", "success", "logits", "final_loss", "linf", "l2")


def penultimate_features(model: nn.Module, x: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """Penultimate feature vectors of images ``x`` (uint8 or [0, 1]), shape (N, D), on the CPU."""
    return channel_activations(model, as_float_images(x), PENULTIMATE, batch_size=batch_size)


def concat_results(parts: Sequence[AttackResult]) -> AttackResult:
    """Join the :class:`~medadv_lib.attacks.AttackResult` of consecutive batches into one.

    Per-image tensors are joined along images (dimension 0; dimension 1 for the per-step
    ``loss`` and ``features`` records); ``attack`` and ``params`` come from the first part.
    """
    parts = list(parts)
    if not parts:
        raise ValueError("no results to join.")
    if len(parts) == 1:
        return parts[0]

    def join(name, dim):
        values = [getattr(p, name) for p in parts]
        if all(v is None for v in values):
            return None
        if any(v is None for v in values):
            raise ValueError(f"some results have {name!r} and others do not.")
        return torch.cat(values, dim=dim)

    fields = {name: join(name, 0) for name in _RESULT_BATCH_FIELDS}
    return AttackResult(**fields, loss=join("loss", 1), features=join("features", 1), attack=parts[0].attack,
                        params=dict(parts[0].params))


def fixed_direction_sweep(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Sequence[float], *,
                          attack: str = "bim", steps: int = 10, seed: int | None = 0,
                          gaussian: ClassGaussian | None = None, reference=None, batch_size: int = 256,
                          targeted: bool = True, **attack_kwargs) -> tuple[pd.DataFrame, dict[float, AttackResult]]:
    """Run ``attack`` at every budget with recorded features and measure the fixed-direction effect.

    Parameters
    ----------
    model : FeatureModel
    x : torch.Tensor
        Clean images in [0, 1] (or uint8), (N, C, H, W).
    y : torch.Tensor
        True labels, (N,).
    eps : sequence of float
        Budgets on the [0, 1] scale (each > 0).
    attack : str, default "bim"
        A name known to :func:`medadv_lib.attacks.get_attack`.
    steps : int, default 10
    seed : int, optional
        Seeds the attack (targets for more than two classes: a seeded random other class, the
        same at every budget).
    gaussian : ClassGaussian, optional
        Fitted on clean training penultimate features; adds the Mahalanobis columns.
    reference : (features, labels), optional
        Clean training penultimate features (N, D) and labels (N,); adds ``projection_pct``, the
        percentile of each projection among the projections of the clean training features of
        the **target** class on the same direction (above 99: beyond the target class's range
        along ``w_t - w_y``).
    batch_size : int, default 256
    targeted : bool, default True
        The HFC setting (the direction is then ``w_t - w_y``).
    **attack_kwargs
        Further keyword arguments of the attack.

    Returns
    -------
    frame : pandas.DataFrame
        The rows of :func:`~medadv_lib.analysis.fixed_direction_frame` for every budget, plus
        ``eps``, ``eps_k`` (eps x 256), ``budget``, ``success`` (the image's final success, on
        every step's row), ``projection_gain`` (projection minus its value at step 0) and, with
        ``gaussian``, ``maha_gain`` (``maha_min`` minus its value at step 0).
    results : dict
        eps -> the joined :class:`~medadv_lib.attacks.AttackResult` (features recorded).
    """
    check_positive_int(batch_size, "batch_size")
    x = as_float_images(x)
    check_images(x)
    check_labels(y, x.shape[0])
    frames, results = [], {}
    for e in eps:
        e = check_eps(float(e))
        if e == 0:
            raise ValueError("budgets must be > 0 here: at eps = 0 the features do not move.")
        atk = get_attack(attack, model, eps=e, steps=steps, seed=seed, targeted=targeted, **attack_kwargs)
        parts = [atk.run(x[s:s + batch_size], y[s:s + batch_size], record_features=True)
                 for s in range(0, x.shape[0], batch_size)]
        result = concat_results(parts)
        frame = fixed_direction_frame(result, model, gaussian=gaussian)
        frame["eps"] = e
        frame["eps_k"] = e * 256
        frame["budget"] = format_budget(e)
        frame["success"] = result.success.cpu().numpy()[frame["image"].to_numpy()]
        first = frame.loc[frame["step"] == 0].set_index("image")
        frame["projection_gain"] = frame["projection"].to_numpy() - first["projection"].loc[frame["image"]].to_numpy()
        if "maha_min" in frame:
            frame["maha_gain"] = frame["maha_min"].to_numpy() - first["maha_min"].loc[frame["image"]].to_numpy()
        if reference is not None:
            frame["projection_pct"] = _projection_percentile(frame, result, model, *reference)
        frames.append(frame)
        results[e] = result
    return pd.concat(frames, ignore_index=True), results


def _projection_percentile(frame: pd.DataFrame, result: AttackResult, model, h_ref, y_ref) -> np.ndarray:
    """Percentile (0-100, ties half) of each row's projection among the target class's clean projections."""
    from .fixed_direction import classifier_weights

    h_ref = np.asarray(h_ref.detach().cpu() if hasattr(h_ref, "detach") else h_ref, dtype=np.float64)
    y_ref = np.asarray(y_ref.cpu() if hasattr(y_ref, "cpu") else y_ref).astype(np.int64)
    if h_ref.ndim != 2 or y_ref.shape != (h_ref.shape[0],):
        raise ValueError(f"reference must be features (N, D) and labels (N,), got {h_ref.shape} and {y_ref.shape}.")
    weight, _ = classifier_weights(model)
    out = np.full(len(frame), np.nan)
    ys, ts, proj = frame["y"].to_numpy(), frame["target"].to_numpy(), frame["projection"].to_numpy()
    for y, t in set(zip(ys.tolist(), ts.tolist())):
        ref = h_ref[y_ref == t]
        if y == t or ref.size == 0:
            continue
        unit = (weight[t] - weight[y]) / np.linalg.norm(weight[t] - weight[y])
        column = np.sort(ref @ unit)
        mask = (ys == y) & (ts == t)
        below = np.searchsorted(column, proj[mask], side="left")
        at_or_below = np.searchsorted(column, proj[mask], side="right")
        out[mask] = 100.0 * (below + at_or_below) / (2.0 * len(column))
    return out


def direction_summary(frame: pd.DataFrame, *, by: Sequence[str] = ("dataset",), distance: str = "maha_min",
                      aligned: float = 0.9) -> pd.DataFrame:
    """Per group: how well the feature steps follow ``w_t - w_y`` and how far the features travel.

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows of :func:`fixed_direction_sweep` (with the columns named in ``by``).
    by : sequence of str, default ("dataset",)
    distance : str, default "maha_min"
        Mahalanobis column compared between the first and the last step (``maha_min``: distance to
        the nearest clean class, the Lee et al. score; ``maha_true``; ``maha_target``).
    aligned : float, default 0.9
        Threshold for ``share_cos_step_above``.

    Returns
    -------
    pandas.DataFrame
        ``by`` columns plus ``images``, ``success_rate``, ``mean_cos_step`` / ``median_cos_step``
        (per-step feature change against ``w_t - w_y``, steps >= 1), ``share_cos_step_above``,
        ``mean_cos_total`` (``h_T - h_0`` at the last step), ``mean_grad_cos`` / ``min_grad_cos``
        (the analytic feature-space step direction), ``median_projection_gain`` (at the last
        step), with ``projection_pct`` ``median_projection_pct_first`` / ``_last`` and
        ``share_projection_beyond`` (last-step projections above the clean target class's 99th
        percentile), and with Mahalanobis columns ``median_distance_first`` /
        ``median_distance_last`` and ``share_distance_grew`` (images whose distance at the last
        step exceeds step 0's).
    """
    by = list(by)
    rows = []
    for keys, g in frame.groupby(by, sort=False) if by else [((), frame)]:
        keys = keys if isinstance(keys, tuple) else (keys,)
        last_step = g["step"].max()
        moving = g[g["step"] >= 1]
        first, last = g[g["step"] == 0], g[g["step"] == last_step]
        record = dict(zip(by, keys))
        record.update({
            "images": int(first.shape[0]),
            "success_rate": float(last["success"].mean()) if "success" in g else np.nan,
            "mean_cos_step": float(np.nanmean(moving["cos_step"])),
            "median_cos_step": float(np.nanmedian(moving["cos_step"])),
            "share_cos_step_above": float(np.mean(moving["cos_step"].to_numpy() > aligned)),
            "mean_cos_total": float(np.nanmean(last["cos_total"])),
            "mean_grad_cos": float(np.nanmean(g["grad_cos"])),
            "min_grad_cos": float(np.nanmin(g["grad_cos"])),
            "median_projection_gain": float(np.nanmedian(last["projection_gain"])) if "projection_gain" in g
            else np.nan,
        })
        if "projection_pct" in g:
            record.update({"median_projection_pct_first": float(np.nanmedian(first["projection_pct"])),
                           "median_projection_pct_last": float(np.nanmedian(last["projection_pct"])),
                           "share_projection_beyond": float(np.mean(last["projection_pct"].to_numpy() > 99.0))})
        if distance in g:
            ordered = [part.sort_values([c for c in ("eps", "image") if c in part]) for part in (first, last)]
            d0, d1 = (part[distance].to_numpy() for part in ordered)
            record.update({"median_distance_first": float(np.median(d0)), "median_distance_last": float(np.median(d1)),
                           "share_distance_grew": float(np.mean(d1 > d0))})
        rows.append(record)
    return pd.DataFrame(rows)


def pca_view(train_features, train_labels, result: AttackResult, *, step: int | None = None,
             max_train: int = 2000, seed: int = 0) -> pd.DataFrame:
    """2-D PCA (fitted on clean training features) of clean training, clean attacked and adversarial features.

    Parameters
    ----------
    train_features : array or tensor (N, D)
        Clean training penultimate features.
    train_labels : array or tensor (N,)
    result : AttackResult
        With recorded ``features`` (steps + 1, M, D).
    step : int, optional
        Step shown as "adversarial"; default the last one.
    max_train : int, default 2000
        At most this many (seeded random) training points are returned (all are used for the fit).
    seed : int, default 0

    Returns
    -------
    pandas.DataFrame
        Columns ``set`` ("clean training", "clean attacked", "adversarial"), ``image`` (-1 for
        training points), ``label`` (true class), ``target``, ``pc1``, ``pc2``; the explained
        variance ratios are in ``frame.attrs["explained_variance_ratio"]``.
    """
    from sklearn.decomposition import PCA

    if result.features is None:
        raise ValueError("the AttackResult has no features; run the attack with record_features=True.")
    h_train = np.asarray(train_features.detach().cpu() if hasattr(train_features, "detach") else train_features,
                         dtype=np.float64)
    y_train = np.asarray(train_labels.cpu() if hasattr(train_labels, "cpu") else train_labels).astype(np.int64)
    pca = PCA(n_components=2).fit(h_train)
    feats = result.features.detach().cpu().double().numpy()
    step = feats.shape[0] - 1 if step is None else int(step)
    y = result.y.cpu().numpy().astype(np.int64)
    target = result.target.cpu().numpy().astype(np.int64) if result.target is not None else np.full_like(y, -1)
    keep = np.arange(len(h_train))
    if len(keep) > max_train:
        keep = np.sort(np.random.default_rng(seed).choice(keep, size=max_train, replace=False))
    parts = []
    for name, h, image, label, tgt in (
            ("clean training", h_train[keep], np.full(len(keep), -1), y_train[keep], np.full(len(keep), -1)),
            ("clean attacked", feats[0], np.arange(len(y)), y, target),
            ("adversarial", feats[step], np.arange(len(y)), y, target)):
        pcs = pca.transform(h)
        parts.append(pd.DataFrame({"set": name, "image": image, "label": label, "target": tgt,
                                   "pc1": pcs[:, 0], "pc2": pcs[:, 1]}))
    frame = pd.concat(parts, ignore_index=True)
    frame.attrs["explained_variance_ratio"] = tuple(float(v) for v in pca.explained_variance_ratio_)
    return frame
