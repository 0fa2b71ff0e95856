"""Tables for readers: human column labels, budgets in the papers' notation, rates as percentages.

The library's result tables are tidy frames with snake_case columns (``median_projection_pct_last``),
budgets as floats (``0.03125``) and rates as fractions (``0.874``). A chapter shows them through
:func:`reader_table`, which turns them into what a reader of the papers expects:

- budgets as ``8/256``, the notation of the HFC work (Yao et al., MICCAI 2021), or as absolute
  values ``0.005`` on the [0, 1] scale, the notation of the SSAT work (Li, Pan, Zhu, ISBI 2021);
  see the Methods page, section ``methods-notation``;
- rates (accuracy, success rate, TPR) as percentages, ``87.4 %``;
- human column labels from a mapping (:data:`COLUMN_LABELS`, extended per call), else derived from
  the snake_case name;
- no index noise: a default ``RangeIndex`` is dropped, a meaningful index becomes columns.

Only presentation happens here; numbers are never recomputed, so a formatted table shows exactly
the values of the frame it came from.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from numbers import Integral, Real

import pandas as pd

__all__ = ["COLUMN_LABELS", "NOTATIONS", "budget_label", "rate_label", "human_label", "format_frame",
           "reader_table"]

#: Budget notations: ``k/256`` (HFC), ``absolute`` (SSAT), ``both`` (``8/256 (0.03125)``).
NOTATIONS = ("k/256", "absolute", "both")
#: What a missing value shows.
MISSING = "\u2013"
#: Column names treated as budgets when ``budgets`` is not given.
BUDGET_COLUMNS = ("eps", "epsilon", "budget")

#: Human labels of the column names used across the library's result tables.
COLUMN_LABELS: dict[str, str] = {
    "eps": "budget \u03b5", "epsilon": "budget \u03b5", "budget": "budget \u03b5",
    "dataset": "data set", "datasets": "data sets", "attack": "attack", "detector": "detector",
    "model": "model", "arch": "architecture", "layer": "layer", "seed": "seed", "profile": "profile",
    "accuracy": "accuracy", "clean_accuracy": "clean accuracy", "adv_accuracy": "accuracy under attack",
    "success_rate": "attack success", "asr": "attack success",
    "auroc": "AUROC", "auprc": "AUPRC", "tpr90": "TPR at 90 % TNR",
    "auroc_lo": "AUROC low", "auroc_hi": "AUROC high",
    "n": "images", "n_images": "images", "n_adv": "AEs", "n_clean": "clean images",
    "steps": "steps", "alpha": "step \u03b1", "kappa": "\u03ba", "mu": "\u03bc", "lambda": "\u03bb",
    "risk": "risk r", "risk_uad": "risk r with UAD", "risk_no_uad": "risk r without UAD",
    "seconds": "seconds", "minutes": "minutes",
}

#: Word-level replacements used when a column has no entry in the mapping.
_WORDS = {"pct": "%", "percent": "%", "eps": "\u03b5", "acc": "accuracy", "adv": "adversarial",
          "cln": "clean", "std": "s.d.", "cos": "cosine", "auroc": "AUROC", "auprc": "AUPRC",
          "tpr": "TPR", "fpr": "FPR", "tnr": "TNR", "pca": "PCA", "ce": "CE", "kd": "KD", "bu": "BU",
          "lid": "LID", "maha": "MAHA", "dnn": "DNN", "svm": "SVM", "gmm": "GMM", "uad": "UAD",
          "hfc": "HFC", "smia": "SMIA", "ssat": "SSAT", "num": "number of", "n": "number of"}

_GRID_TOL = 1e-6


def _finite(value, name: str) -> float | None:
    """``float(value)``, or None for a missing value (None, NaN, pandas NA)."""
    if value is None or (not isinstance(value, (str, bytes)) and pd.isna(value)):
        return None
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if math.isinf(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def budget_label(eps, notation: str = "k/256", *, denominator: int = 256, digits: int = 4) -> str:
    """A budget as the papers write it.

    Parameters
    ----------
    eps : float
        The L-infinity budget on the [0, 1] pixel scale.
    notation : {"k/256", "absolute", "both"}
        ``"k/256"``: the HFC work's ``8/256`` (a budget off the grid keeps two decimals of k,
        ``1.28/256``, rather than being rounded onto it); ``"absolute"``: the SSAT work's ``0.005``
        (``digits`` significant digits); ``"both"``: ``"8/256 (0.03125)"``.
    denominator : int, default 256
        The grid of the fractional notation.

    Returns
    -------
    str
        ``"0"`` for a zero budget (the clean images), :data:`MISSING` for a missing value.
    """
    if notation not in NOTATIONS:
        raise ValueError(f"notation={notation!r} is not one of {NOTATIONS}")
    if not isinstance(denominator, int) or isinstance(denominator, bool) or denominator <= 0:
        raise ValueError(f"denominator={denominator!r} must be a positive integer, e.g. 256")
    value = _finite(eps, "eps")
    if value is None:
        return MISSING
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"eps={eps!r} is not a budget on the [0, 1] pixel scale; pass k/256 as a float "
                         "(medadv_lib.attacks.budget(k) converts)")
    if value == 0.0:
        return "0"
    k = value * denominator
    on_grid = abs(k - round(k)) <= _GRID_TOL * max(1.0, k)
    fraction = f"{int(round(k))}/{denominator}" if on_grid else f"{k:.2f}".rstrip("0").rstrip(".") + f"/{denominator}"
    absolute = f"{value:.{digits}g}"
    if notation == "k/256":
        return fraction
    if notation == "absolute":
        return absolute
    return f"{fraction} ({absolute})"


def rate_label(rate, decimals: int = 1, *, upper: float = 1.0) -> str:
    """A fraction as a percentage, ``0.874 -> "87.4 %"`` (the house style puts a space before %).

    ``upper`` is the largest fraction accepted (1 for accuracies and detection rates; the SSAT
    risk r = R / N can exceed 1, pass ``upper=2``). A value already in percent (``87.4``) is thus
    refused instead of shown as ``8740 %``.
    """
    value = _finite(rate, "rate")
    if value is None:
        return MISSING
    if not 0.0 <= value <= upper:
        raise ValueError(f"rate={rate!r} is outside [0, {upper:g}]; rates are fractions (0.874, not 87.4); "
                         "pass upper=... for a rate that can exceed 1")
    return f"{100.0 * value:.{int(decimals)}f} %"


def human_label(name, labels: Mapping[str, str] | None = None) -> str:
    """The reader's label of a column: ``labels``, then :data:`COLUMN_LABELS`, then the words of the name.

    >>> human_label("median_projection_pct_last")
    'median projection % last'
    >>> human_label("auroc")
    'AUROC'
    """
    if isinstance(name, tuple):  # a flattened MultiIndex column
        return " ".join(human_label(part, labels) for part in name if str(part) != "")
    key = str(name)
    for mapping in (labels or {}, COLUMN_LABELS):
        if key in mapping:
            return str(mapping[key])
    words = [w for w in re.split(r"[_\s]+", key) if w]
    if not words:
        return key
    return " ".join(_WORDS.get(w.lower(), w) for w in words)


def _columns(frame: pd.DataFrame, names: Iterable[str] | None, what: str) -> list:
    if names is None:
        return []
    names = [names] if isinstance(names, str) else list(names)
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise KeyError(f"{what} column(s) {missing} are not in the table; its columns are {list(frame.columns)}")
    return names


def _number(value, decimals: int) -> str:
    if value is None or (not isinstance(value, (str, bytes)) and pd.api.types.is_scalar(value) and pd.isna(value)):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Integral):  # Python and NumPy integers: counts, seeds, steps
        return f"{int(value):d}"
    if isinstance(value, Real):
        return f"{float(value):.{decimals}f}"
    return str(value)


def format_frame(frame: pd.DataFrame, *, budgets: Iterable[str] | None = None, rates: Iterable[str] = (),
                 labels: Mapping[str, str] | None = None, notation: str = "k/256", decimals: int = 3,
                 rate_decimals: int = 1, rate_upper: float = 1.0) -> pd.DataFrame:
    """A copy of ``frame`` as the reader sees it: every cell a string, human column labels, no index.

    Parameters
    ----------
    frame : DataFrame
        A result table of the library (not modified).
    budgets : iterable of str, optional
        Budget columns, shown in ``notation`` (:func:`budget_label`); default: the columns named
        ``eps``, ``epsilon`` or ``budget``.
    rates : iterable of str
        Fraction columns shown as percentages (:func:`rate_label`).
    labels : mapping, optional
        Column labels that override :data:`COLUMN_LABELS` (``{"median_projection_pct_last": ...}``).
    notation : {"k/256", "absolute", "both"}
        Budget notation: the HFC work's ``k/256`` or the SSAT work's absolute values.
    decimals : int
        Decimals of the other float columns (integers are shown without decimals).

    Returns
    -------
    DataFrame
        String cells, a fresh ``RangeIndex``. An unnamed integer index (positions, also after a
        filter) is dropped; a named index, a MultiIndex or string labels become leading columns.
        MultiIndex columns are joined with spaces.
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    if notation not in NOTATIONS:
        raise ValueError(f"notation={notation!r} is not one of {NOTATIONS}")
    table = frame.copy()
    # an unnamed integer index is positions (0..n-1, or what is left of them after a filter): noise;
    # a named index, a MultiIndex or string labels (detectors as rows) carry data and become columns
    plain_index = (not isinstance(table.index, pd.MultiIndex) and table.index.name is None
                   and pd.api.types.is_integer_dtype(table.index.dtype))
    table = table.reset_index(drop=plain_index)
    if isinstance(table.columns, pd.MultiIndex):
        table.columns = [tuple(str(p) for p in col if str(p) != "") for col in table.columns]
        table.columns = [col[0] if len(col) == 1 else col for col in table.columns]
    budget_cols = (_columns(table, budgets, "budget") if budgets is not None
                   else [c for c in table.columns if str(c).lower() in BUDGET_COLUMNS])
    rate_cols = _columns(table, rates, "rate")
    both = set(budget_cols) & set(rate_cols)
    if both:
        raise ValueError(f"column(s) {sorted(both)} are given both as budgets and as rates")
    out = {}
    for col in table.columns:
        values = table[col].tolist()
        if col in budget_cols:
            cells = [budget_label(v, notation) for v in values]
        elif col in rate_cols:
            cells = [rate_label(v, rate_decimals, upper=rate_upper) for v in values]
        else:
            cells = [_number(v, decimals) for v in values]
        out[human_label(col, labels)] = cells
    if len(out) != len(table.columns):
        seen = [human_label(c, labels) for c in table.columns]
        raise ValueError(f"two columns get the same label: {sorted({s for s in seen if seen.count(s) > 1})}; "
                         "give one of them its own label with labels={...}")
    return pd.DataFrame(out, index=pd.RangeIndex(len(table)))


def reader_table(frame: pd.DataFrame, *, caption: str | None = None, **options):
    """:func:`format_frame` displayed in the house table style, index hidden.

    Takes the options of :func:`format_frame`; returns a pandas ``Styler`` (the notebook shows it
    as an HTML table; ``.data`` is the formatted frame).
    """
    from . import plotting

    shown = format_frame(frame, **options)
    styler = shown.style.hide(axis="index").set_table_attributes('class="medadv-table"')
    styles = getattr(plotting, "TABLE_STYLES", None)
    if styles:
        styler = styler.set_table_styles(styles)
    numeric = [human_label(c, options.get("labels")) for c in frame.columns
               if pd.api.types.is_numeric_dtype(frame[c])]
    numeric = [c for c in numeric if c in shown.columns]
    if numeric:
        styler = styler.set_properties(subset=numeric, **{"text-align": "right"})
    if caption:
        styler = styler.set_caption(caption)
    return styler
