"""Numbers reported by published work that the book compares its own results with.

Kept here, with their source, rather than typed into chapters, so every page quotes the same
values and a correction happens in one place.
"""
from __future__ import annotations

#: MedMNIST v2 benchmark, ResNet-18 at 28 px, test ACC and AUC (Yang et al., "MedMNIST v2 - A
#: large-scale lightweight benchmark for 2D and 3D biomedical image classification", Scientific
#: Data 10:41, 2023, Table of 2-D results). Trained there on the full official training split for
#: 100 epochs (Adam, lr 0.001, batch 128), no class balancing, model chosen on the validation split.
MEDMNIST_V2_RESNET18_28: dict[str, dict[str, float]] = {
    "pneumoniamnist": {"accuracy": 0.854, "auroc": 0.944},
    "breastmnist": {"accuracy": 0.863, "auroc": 0.901},
    "retinamnist": {"accuracy": 0.524, "auroc": 0.717},
    "octmnist": {"accuracy": 0.743, "auroc": 0.943},
}

#: Every reported table by name: ``{table: {"source": citation, "values": {dataset: {metric: value}}}}``.
REPORTED: dict[str, dict] = {
    "medmnist_v2_resnet18_28": {
        "source": "Yang et al., MedMNIST v2, Scientific Data 2023 (ResNet-18, 28 px)",
        "values": MEDMNIST_V2_RESNET18_28,
    },
}


def reported(table: str, dataset: str) -> dict[str, float] | None:
    """The reported metrics of ``dataset`` in ``table`` (None when the table has no such row)."""
    if table not in REPORTED:
        raise KeyError(f"unknown reported table {table!r}; tables: {', '.join(REPORTED)}")
    return REPORTED[table]["values"].get(dataset)


def comparison_frame(metrics: dict[str, dict], table: str = "medmnist_v2_resnet18_28"):
    """Ours beside the reported values: one row per data set of ``metrics`` that the table covers.

    ``metrics`` maps a data set to our test metrics (``accuracy``, ``auroc``); the AUROC gap is
    ours minus theirs (negative: below the published baseline).
    """
    import pandas as pd

    rows = []
    for name, ours in metrics.items():
        theirs = reported(table, name)
        if theirs is None:
            continue
        rows.append({"dataset": name, "accuracy (ours)": ours["accuracy"], "accuracy (reported)": theirs["accuracy"],
                     "AUROC (ours)": ours["auroc"], "AUROC (reported)": theirs["auroc"],
                     "AUROC gap": ours["auroc"] - theirs["auroc"]})
    return pd.DataFrame(rows, columns=["dataset", "accuracy (ours)", "accuracy (reported)", "AUROC (ours)",
                                       "AUROC (reported)", "AUROC gap"])
