"""The cached detector benchmark (one data set, several attacks and budgets) and its report helpers."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from torch.nn import functional as F

from medadv_lib.cache import Cache
from medadv_lib.config import get_profile
from medadv_lib.data import ImageSplit
from medadv_lib.detectors import standard_detectors
from medadv_lib.metrics import benchmark_runs, detection_benchmark, detector_spec, report, result_columns
from medadv_lib.models import build_model


def test_benchmark_runs():
    runs = benchmark_runs(["BIM", "pgd", "bim"], [8 / 256, 2 / 256], sweep_attacks=["bim"])
    assert runs == [("bim", 2 / 256), ("bim", 8 / 256), ("pgd", 8 / 256)]
    assert benchmark_runs(["fgsm"], [1 / 256, 4 / 256]) == [("fgsm", 1 / 256), ("fgsm", 4 / 256)]
    assert benchmark_runs(["bim", "pgd"], [0.1, 0.2], sweep_attacks=[]) == [("bim", 0.2), ("pgd", 0.2)]
    with pytest.raises(ValueError, match="not in attacks"):
        benchmark_runs(["bim"], [0.1], sweep_attacks=["pgd"])
    with pytest.raises(ValueError):
        benchmark_runs([], [0.1])
    with pytest.raises(ValueError):
        benchmark_runs(["bim"], [])


def test_detector_spec_is_hashable_description():
    spec = detector_spec(standard_detectors(include=["KD", "DNN"], dnn_layers=["block3"]))
    assert spec["KD"]["class"] == "KD" and spec["KD"]["bandwidth"] == 1.0
    assert spec["DNN"]["width"] == [96, 192, 192] and spec["DNN"]["layers"] == ["block3"]


def _toy(n, g):
    y = torch.randint(0, 2, (n,), generator=g)
    x = (0.42 + 0.16 * y.float()[:, None, None, None] + 0.12 * torch.randn(n, 1, 8, 8, generator=g)).clamp(0, 1)
    return ImageSplit((x * 255).round().to(torch.uint8), y)


@pytest.fixture(scope="module")
def toy_tm():
    g = torch.Generator().manual_seed(0)
    train, test = _toy(200, g), _toy(80, g)
    torch.manual_seed(0)
    model = build_model("smallcnn", in_channels=1, num_classes=2, image_size=8, dropout=0.3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xf = train.float()
    for _ in range(30):
        idx = torch.randint(0, 200, (32,), generator=g)
        loss = F.cross_entropy(model(xf[idx]), train.labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return SimpleNamespace(model=model, dataset=SimpleNamespace(name="toy"), train=train, test=test,
                           cache=SimpleNamespace(key="model-toy0000000000"))


def _detectors():
    return standard_detectors(include=["KD", "LID", "MAHA", "BU", "SVM"], bu_passes=4, lid_k=5, lid_minibatch=30)


def test_detection_benchmark_tables_and_cache(toy_tm, tmp_path):
    cache = Cache(tmp_path)
    profile = get_profile("smoke")
    runs = benchmark_runs(["bim", "fgsm"], [0.05, 0.15], sweep_attacks=["bim"])
    first = detection_benchmark(toy_tm, profile, runs, _detectors(), n_images=60, n_reference=120, n_boot=20,
                                cache=cache)
    res = first.results
    assert list(res.columns) == result_columns() + ["eps_k", "cached"]
    assert len(res) == len(runs) * 5 and not res["cached"].any()
    assert set(zip(res["attack"], res["eps"])) == set(runs)
    assert (res["dataset"] == "toy").all() and np.allclose(res["eps_k"], res["eps"] * 256)
    assert first.prepare_seconds > 0
    ok = res.dropna(subset=["auroc"])
    assert len(ok) > 0 and ok[["auroc", "tpr90"]].apply(lambda c: c.between(0, 1)).all().all()
    assert (res["n_normal"] == 2 * res["n_adv"]).all()
    assert {"detector", "kind", "score", "dataset", "attack", "eps"} <= set(first.scores.columns)
    assert first.cache_keys[0] == "model-toy0000000000"
    assert sum(k.startswith("detection-") for k in first.cache_keys) == len(runs)
    # every run shares one protocol preparation: same clean images, same split sizes
    assert res.groupby(["attack", "eps"])["n_kept"].first().nunique() == 1
    again = detection_benchmark(toy_tm, profile, runs, _detectors(), n_images=60, n_reference=120, n_boot=20,
                                cache=cache)
    assert again.results["cached"].all() and again.prepare_seconds == 0.0
    pd.testing.assert_frame_equal(again.results.drop(columns="cached"), res.drop(columns="cached"))
    # another detector setting is another cache entry
    other = detection_benchmark(toy_tm, profile, runs[:1], standard_detectors(include=["KD"], kd_bandwidth=0.3),
                                n_images=60, n_reference=120, n_boot=20, cache=cache)
    assert not other.results["cached"].any()


def _results():
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


def test_text_helpers():
    assert report.ci_text(0.9712, 0.95, 0.99) == "0.97 (0.95\u20130.99)"
    assert report.ci_text(float("nan"), 0, 1) == "-"
    assert report.ci_text(0.5, float("nan"), float("nan"), decimals=1) == "0.5"
    assert report.run_label("pgd", 8 / 256) == "PGD 8/256"
    assert report.budget_label(0.005).startswith("0.005")


def test_ci_table_and_pivot():
    res = _results()
    t = report.ci_table(res, "auroc", detectors=["MAHA", "KD"])
    assert list(t.columns[:4]) == ["dataset", "attack", "eps", "AEs"]
    assert list(t.columns[4:6]) == ["MAHA", "KD"] and len(t) == 6
    assert t.loc[(t["dataset"] == "med") & (t["attack"] == "PGD"), "LID"].item() == "-"
    p = report.metric_pivot(res, "auroc")
    assert p.shape == (4, 4) and list(p.columns.get_level_values(0)) == ["med", "med", "cifar10", "cifar10"]
    row = res[(res["dataset"] == "med") & (res["attack"] == "bim") & (res["eps"] == 8 / 256) & (res["detector"] == "KD")]
    assert p.loc["KD", ("med", "BIM")] == pytest.approx(row["auroc"].item())
    flat = report.metric_pivot(res, "auroc", attacks=["bim"], flatten=True)
    assert list(flat.columns) == ["detector", "med BIM", "cifar10 BIM"]
    every = report.metric_pivot(res, "auroc", eps=None)
    assert every.shape[1] == 6


def test_best_detector_and_summary():
    res = _results()
    best = report.best_detector(res, ["KD", "LID", "MAHA"], attacks=["bim", "pgd"])
    assert len(best) == 4 and set(best["eps"]) == {8 / 256}
    for r in best.itertuples():
        part = res[(res["dataset"] == r.dataset) & (res["attack"] == r.attack) & (res["eps"] == r.eps)
                   & res["detector"].isin(["KD", "LID", "MAHA"])]
        assert r.auroc == pytest.approx(part["auroc"].max())
    s = report.attack_summary(res)
    assert len(s) == 6 and (s["success rate"] == 0.9).all() and (s["AEs (held out)"] == 30).all()
    with pytest.raises(KeyError, match="lack column"):
        report.ci_table(res.drop(columns="auroc"))


def test_figures():
    res = _results()
    fig = report.detection_heatmap(res)
    assert isinstance(fig, Figure)
    assert len([ax for ax in fig.axes if ax.get_label() != "<colorbar>"]) >= 4
    scores = pd.DataFrame({"detector": "KD", "kind": ["clean", "noisy", "adv"] * 10, "index": np.arange(30),
                           "is_adv": [0, 0, 1] * 10, "score": np.linspace(0, 1, 30), "dataset": "med",
                           "attack": "bim", "eps": 8 / 256})
    assert isinstance(report.roc_figure(scores, detectors=["KD", "MAHA"], attack="bim"), Figure)
