"""L-infinity budgets in both notations used by the source papers.

The HFC work (Yao et al., MICCAI 2021) states budgets as ``k/256`` while the SSAT work (Li et al.)
states absolute values on the [0, 1] scale (``0.001 ... 0.01``). Attacks take plain floats; these
helpers convert and print both notations so a chapter can say which one it used.
"""
from __future__ import annotations

import math

__all__ = ["budget", "format_budget"]


def budget(k: float, denominator: float = 256) -> float:
    """Return the budget ``k / denominator`` as a float on the [0, 1] pixel scale.

    Parameters
    ----------
    k : float
        Numerator, e.g. ``2`` for the HFC budget 2/256.
    denominator : float, default 256
        256 as in the HFC work; pass 255 for the torchattacks convention.

    Returns
    -------
    float

    Examples
    --------
    >>> budget(2)
    0.0078125
    """
    try:
        k, denominator = float(k), float(denominator)
    except (TypeError, ValueError):
        raise TypeError(f"budget() needs numbers, got k={k!r}, denominator={denominator!r}.") from None
    if not math.isfinite(k) or not math.isfinite(denominator) or denominator <= 0:
        raise ValueError(f"budget() needs a finite k and a positive denominator, got {k!r}/{denominator!r}.")
    if k < 0 or k > denominator:
        raise ValueError(f"budget {k:g}/{denominator:g} is outside [0, 1] on the pixel scale.")
    return k / denominator


def format_budget(eps: float, denominator: float = 256, digits: int = 4) -> str:
    """Format a budget in both notations, e.g. ``"2/256 (0.0078)"``.

    When ``eps * denominator`` is not (close to) an integer, the absolute value leads and the
    fractional ``k/denominator`` follows, e.g. ``"0.005 (1.28/256)"``.

    Parameters
    ----------
    eps : float
        Budget on the [0, 1] scale.
    denominator : float, default 256
    digits : int, default 4
        Decimals for the absolute value.
    """
    eps = float(eps)
    k = eps * denominator
    den = f"{denominator:g}"
    if abs(k - round(k)) < 1e-6:
        return f"{int(round(k))}/{den} ({eps:.{digits}f})"
    return f"{eps:g} ({k:.3g}/{den})"
