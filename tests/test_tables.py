"""DataFrame tables: data and model summaries, detector-benchmark tables and labels."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from _synthetic import synthetic_detection_results as _results

from medadv_lib import plotting, tables


def test_text_helpers():
    assert tables.ci_text(0.9712, 0.95, 0.99) == "0.97 (0.95\u20130.99)"
    assert tables.ci_text(float("nan"), 0, 1) == "-"
    assert tables.ci_text(0.5, float("nan"), float("nan"), decimals=1) == "0.5"
    assert tables.run_label("pgd", 8 / 256) == "PGD 8/256"
    assert tables.budget_label(0.005).startswith("0.005")


def test_ci_table_and_pivot():
    res = _results()
    t = tables.ci_table(res, "auroc", detectors=["MAHA", "KD"])
    assert list(t.columns[:4]) == ["dataset", "attack", "eps", "AEs"]
    assert list(t.columns[4:6]) == ["MAHA", "KD"] and len(t) == 6
    assert t.loc[(t["dataset"] == "med") & (t["attack"] == "PGD"), "LID"].item() == "-"
    p = tables.metric_pivot(res, "auroc")
    assert p.shape == (4, 4) and list(p.columns.get_level_values(0)) == ["med", "med", "cifar10", "cifar10"]
    row = res[(res["dataset"] == "med") & (res["attack"] == "bim") & (res["eps"] == 8 / 256) & (res["detector"] == "KD")]
    assert p.loc["KD", ("med", "BIM")] == pytest.approx(row["auroc"].item())
    flat = tables.metric_pivot(res, "auroc", attacks=["bim"], flatten=True)
    assert list(flat.columns) == ["detector", "med BIM", "cifar10 BIM"]
    every = tables.metric_pivot(res, "auroc", eps=None)
    assert every.shape[1] == 6


def test_best_detector_and_summary():
    res = _results()
    best = tables.best_detector(res, ["KD", "LID", "MAHA"], attacks=["bim", "pgd"])
    assert len(best) == 4 and set(best["eps"]) == {8 / 256}
    for r in best.itertuples():
        part = res[(res["dataset"] == r.dataset) & (res["attack"] == r.attack) & (res["eps"] == r.eps)
                   & res["detector"].isin(["KD", "LID", "MAHA"])]
        assert r.auroc == pytest.approx(part["auroc"].max())
    s = tables.attack_summary(res)
    assert len(s) == 6 and (s["success rate"] == 0.9).all() and (s["AEs (held out)"] == 30).all()
    with pytest.raises(KeyError, match="lack column"):
        tables.ci_table(res.drop(columns="auroc"))


def test_class_balance_shares_sum_to_one(toy_dataset):
    frame = tables.class_balance({"toy": toy_dataset(), "two": toy_dataset(classes=("p", "q"))})
    assert set(frame.columns) == {"dataset", "split", "class", "count", "share"}
    sums = frame.groupby(["dataset", "split"])["share"].sum()
    assert np.allclose(sums, 1.0)


def test_split_and_model_summaries(toy_dataset):
    ds = toy_dataset()
    tm = SimpleNamespace(dataset=ds, train=ds.train, test=ds.test, model=SimpleNamespace(spec={"arch": "smallcnn"}),
                         history=[{"epoch": 1, "loss": 1.0, "train_accuracy": 0.5}],
                         metrics={"accuracy": 0.5, "balanced_accuracy": 0.4, "auroc": 0.7, "n": len(ds.test)},
                         cache=SimpleNamespace(hit=True, key="model-x"))
    split = tables.split_summary({"toy": tm})
    assert split.loc[0, "train"] == 40 and split.loc[0, "px"] == "8\u21928"
    assert split.loc[0, "rarest class"] == pytest.approx(13 / 40)
    models = tables.model_summary({"toy": tm})
    assert models.loc[0, "chance (1/K)"] == pytest.approx(1 / 3) and models.loc[0, "model from"] == "cache"
    html = plotting.table(models, percent=["accuracy"]).to_html()
    assert "50.0%" in html and "medadv-table" in html
