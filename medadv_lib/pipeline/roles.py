"""The ``datasets`` parameter every chapter takes: a comma-separated list, split into its roles.

A chapter that contrasts medical with natural images reads the roles from the registry
(:attr:`~medadv_lib.data.DatasetInfo.domain`), not from a hard-coded ``"cifar10"``, so a reader can
rerun it on other data with one flag: ``medadv run CHAPTER -p datasets breastmnist,cifar10``.
"""
from __future__ import annotations

from dataclasses import dataclass


def parse_datasets(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``, each name checked against the registry (order kept, repeats dropped)."""
    from ..data import get_info

    if not isinstance(text, str):
        raise TypeError(f"datasets must be a comma-separated string such as 'chestxray,cifar10', got {text!r}")
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise ValueError(f"datasets={text!r} names no data set; pass e.g. 'chestxray,cifar10'")
    return [get_info(n).name for n in names]  # an unknown name raises, listing the known ones


@dataclass(frozen=True)
class DatasetRoles:
    """The data sets of a chapter by role: ``names`` in the given order, ``medical`` and ``natural`` among them."""

    names: list
    medical: list
    natural: list

    @property
    def contrast(self) -> str | None:
        """The natural-image contrast set (the first natural one), or None when there is none."""
        return self.natural[0] if self.natural else None


def dataset_roles(text: str, *, need_natural: bool = False, need_medical: int = 1) -> DatasetRoles:
    """Parse ``datasets`` and sort the names into medical and natural sets by their registry ``domain``.

    Parameters
    ----------
    text : str
        The chapter's ``datasets`` parameter.
    need_natural : bool
        Whether the chapter needs a natural contrast set (raises when none is given).
    need_medical : int
        The least number of medical sets the chapter needs.
    """
    from ..data.registry import natural_names

    names = parse_datasets(text)
    natural = natural_names(names)
    medical = [n for n in names if n not in natural]
    if need_natural and not natural:
        raise ValueError(f"datasets={text!r} has no natural-image set; this chapter contrasts medical with natural "
                         "images, so add one, e.g. 'cifar10'")
    if len(medical) < need_medical:
        raise ValueError(f"datasets={text!r} has {len(medical)} medical set(s); this chapter needs at least "
                         f"{need_medical}, e.g. 'chestxray'")
    return DatasetRoles(names, medical, natural)


def binary_and_multiclass(num_classes: dict) -> tuple[str, list]:
    """The first two-class data set and the others, from ``{name: number of classes}`` (order kept).

    The fixed-direction chapter needs one two-class set (where the direction is exactly fixed) and
    at least one with more classes (where it is a mix).
    """
    binary = [n for n, k in num_classes.items() if k == 2]
    if not binary:
        raise ValueError(f"none of the data sets {list(num_classes)} has two classes; add one to datasets, "
                         "e.g. 'chestxray'")
    multi = [n for n in num_classes if n != binary[0]]
    if not any(num_classes[n] > 2 for n in multi):
        raise ValueError(f"none of the data sets {list(num_classes)} has more than two classes; add one to "
                         "datasets, e.g. 'retinamnist'")
    return binary[0], multi
