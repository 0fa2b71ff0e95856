"""Synthetic tables shared by the table and plotting tests (imported by file name, like _attack_helpers)."""
import numpy as np
import pandas as pd


def synthetic_detection_results():
    """A detector-benchmark result table: two data sets, three runs, four detectors, one NaN cell."""
    rows = []
    rng = np.random.default_rng(0)
    for dataset in ("med", "cifar10"):
        for attack, eps in (("bim", 2 / 256), ("bim", 8 / 256), ("pgd", 8 / 256)):
            for det in ("KD", "LID", "MAHA", "DNN"):
                a = float(rng.uniform(0.5, 1.0))
                rows.append({"detector": det, "attack": attack, "dataset": dataset, "eps": eps, "auroc": a,
                             "auroc_lo": a - 0.05, "auroc_hi": min(1.0, a + 0.05), "tpr90": a - 0.3,
                             "tpr90_lo": a - 0.4, "tpr90_hi": a - 0.2, "n_adv": 30, "n_normal": 60, "n_fit_adv": 70,
                             "n_kept": 100, "attack_success_rate": 0.9})
    frame = pd.DataFrame(rows)
    frame.loc[(frame["dataset"] == "med") & (frame["detector"] == "LID") & (frame["attack"] == "pgd"), "auroc"] = np.nan
    return frame
