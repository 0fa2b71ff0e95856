"""The risk stage (Li, Pan & Zhu, Eq. 2 and 3) on a toy data set: table, counts, cache, verdicts, errors."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from medadv_lib.cache import Cache
from medadv_lib.config import get_profile
from medadv_lib.detectors import uad
from medadv_lib.metrics.risk import adversarial_risk
from medadv_lib.models import predict_proba
from medadv_lib.pipeline import adversarial_examples, attack_subset
from medadv_lib.pipeline import defenses as stage
from medadv_lib.pipeline import risk

ATTACKS = ("fgsm", "pgd", "hfc", "adaptive_kd")
DETECTORS = ("UAD", "KD", "MAHA", "LID", "DNN")


def _profile():
    return get_profile("smoke", {"data.train_size": None, "data.test_size": None, "defense.labelled": 48,
                                 "defense.unlabelled": 12, "defense.epochs": 1, "defense.batch_size": 8,
                                 "defense.eval_images": 24, "defense.regimes": "nt,ssat", "detect.dnn_iterations": 3})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One toy experiment (two regimes, every detector, four attacks), shared by the tests."""
    from types import SimpleNamespace

    from medadv_lib.data import ImageSplit

    gen = torch.Generator().manual_seed(0)

    def split(m):  # random images, classes cycling 0, 1, 2 (as the toy_dataset fixture)
        return ImageSplit(torch.randint(0, 256, (m, 1, 16, 16), generator=gen, dtype=torch.uint8), torch.arange(m) % 3)

    splits = {"train": split(96), "val": split(24), "test": split(48)}
    ds = SimpleNamespace(name="toy", classes=("a", "b", "c"), num_classes=3, channels=1, size=16,
                         info=SimpleNamespace(native_size=16), splits=splits, **splits)
    ds.cache_key = "dataset-toyrisk"
    mp = pytest.MonkeyPatch()
    mp.setattr(stage, "get_dataset", lambda *a, **k: ds)
    mp.setattr(risk, "get_dataset", lambda *a, **k: ds)
    cache = Cache(tmp_path_factory.mktemp("risk-cache"))
    kw = {"attacks": ATTACKS, "detectors": DETECTORS, "n_boot": 30, "cache": cache, "device": "cpu", "progress": False}
    result = risk.risk_experiment("toy", _profile(), **kw)
    yield {"result": result, "cache": cache, "kw": kw, "mp": mp}
    mp.undo()


def test_table_shape_columns_and_bounds(run):
    t = run["result"].table
    assert list(t.columns) == risk.TABLE_COLUMNS
    assert len(t) == 2 * (len(DETECTORS) + 1) * len(ATTACKS)  # regimes x (none + detectors) x attacks
    assert set(t["detector"]) == {"none", *DETECTORS} and set(t["attack"]) == set(ATTACKS)
    assert t["r"].between(0, 2).all() and (t["r_lo"] <= t["r"] + 1e-12).all() and (t["r"] <= t["r_hi"] + 1e-12).all()
    assert (t["cln_inc"] + t["cln_rej"] <= t["n"]).all() and (t["adv_inc"] + t["adv_rej"] <= t["n"]).all()
    none = t[t["detector"] == "none"]
    assert none["cln_rej"].eq(0).all() and none["adv_rej"].eq(0).all()
    # the same measured images for every detector and attack of a regime: one clean error count
    # for the detector-free system, one n everywhere
    assert none.groupby("regime")["cln_inc"].nunique().eq(1).all() and t["n"].nunique() == 1


def test_risk_is_the_recount_of_the_stored_counts(run):
    t = run["result"].table
    assert np.allclose(t["r"], (t["cln_inc"] + t["cln_rej"] + t["adv_inc"]) / t["n"])


def test_detector_free_risk_equals_adversarial_risk_on_the_predictions(run):
    p, cache = _profile(), run["cache"]
    tm = stage.regime_model("toy", "nt", p, cache=cache, device="cpu", progress=False)
    subset = attack_subset(tm, p.defense.eval_images, 0)
    adv = adversarial_examples(tm, "pgd", p.defense.table_eps, p, seed=0, n_images=p.defense.eval_images,
                               steps=p.defense.pgd_steps, cache=cache)
    measured = ~risk.split_halves(subset.labels.numpy(), 0)
    clean_pred = predict_proba(tm.model, subset.float()).argmax(1).numpy()
    adv_pred = predict_proba(tm.model, adv["x_adv"]).argmax(1).numpy()
    expected = adversarial_risk(subset.labels.numpy()[measured], clean_pred[measured], adv_pred[measured])
    t = run["result"].table
    row = t[(t["regime"] == "NT") & (t["detector"] == "none") & (t["attack"] == "pgd")].iloc[0]
    assert row["r"] == pytest.approx(expected.r) and row["adv_inc"] == expected.counts["adv_inc"]
    assert row["accuracy_under_attack"] == pytest.approx((adv_pred[measured] == subset.labels.numpy()[measured]).mean())


def test_budget_and_fpr_curves(run):
    res = run["result"]
    b = res.budget
    assert set(b["detector"]) == {"none", "UAD"} and set(b["eps"]) == set(_profile().defense.eps)
    # eps = 0 is the unattacked system: without a detector each clean error costs twice
    zero = b[(b["eps"] == 0) & (b["detector"] == "none")].set_index("regime")
    none = res.table[(res.table["detector"] == "none") & (res.table["attack"] == "pgd")].set_index("regime")
    assert np.allclose(zero["r"], 2 * none.loc[zero.index, "cln_inc"] / none.loc[zero.index, "n"])
    c = res.fpr_curve
    assert c.groupby("regime")["best"].sum().eq(1).all()
    assert np.allclose(c[c["fpr"] == 0].set_index("regime")["r"], none.loc[c["regime"].unique(), "r"])
    assert c.loc[c["best"], "r"].to_numpy() == pytest.approx(c.groupby("regime")["r"].min().to_numpy())
    assert (res.fits["n_fit"] + res.fits["n_measured"] == _profile().defense.eval_images).all()


def test_second_call_reads_the_cache(run, monkeypatch):
    def fail(*a, **k):
        raise AssertionError("recomputed a cached risk entry")

    monkeypatch.setattr(risk, "_regime_result", fail)
    again = risk.risk_experiment("toy", _profile(), **run["kw"])
    pd.testing.assert_frame_equal(again.table, run["result"].table)
    assert again.cache_keys == run["result"].cache_keys


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match=r"unknown detector.*'GMMX'.*UAD"):
        risk.risk_experiment("toy", _profile(), detectors=("UAD", "GMMX"))
    with pytest.raises(ValueError, match=r"unknown attack.*'deepfool'.*fgsm"):
        risk.risk_experiment("toy", _profile(), attacks=("pgd", "deepfool"))
    with pytest.raises(ValueError, match="eps must be"):
        risk.risk_experiment("toy", _profile(), eps=0.0)


def test_hfc_constraint_is_uad_density():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(120, 3)), np.repeat([0, 1], 60)
    X[y == 1] += 2
    det = uad().fit(X, y)
    tm = type("TM", (), {"cache": type("C", (), {"key": "model-x"})()})()
    c = risk._uad_constraint(det, tm, 0)
    assert c.classes == [0, 1] and c.layers == ("penultimate",) and c.state_key.startswith("risk_uad_mixtures-")
    q = rng.normal(size=(5, 3))
    got = c.densities[1]["penultimate"].log_prob(torch.as_tensor(q)).numpy()
    assert np.allclose(-got, det.decision_function(q, np.ones(5, int)))


def test_split_halves_is_stratified_disjoint_and_seeded():
    y = np.repeat([0, 1, 2], [6, 5, 3])
    fit = risk.split_halves(y, 3)
    assert [int(fit[y == c].sum()) for c in range(3)] == [3, 2, 1]
    assert np.array_equal(fit, risk.split_halves(y, 3)) and not np.array_equal(fit, risk.split_halves(y, 4))


def _table(rows):
    keys = ["dataset", "regime", "detector", "attack", "r"]
    t = pd.DataFrame([dict(zip(keys, r)) for r in rows])
    return t.assign(eps=0.005, accuracy_under_attack=0.5)


def test_table2_verdict_on_hand_made_tables():
    t = _table([("d", "NT", "none", "pgd", 0.9), ("d", "NT", "UAD", "pgd", 0.8),
                ("d", "SSAT", "none", "pgd", 0.3), ("d", "SSAT", "UAD", "pgd", 0.3)])
    v = risk.table2_verdict(t)
    assert not v["all_lowered"] and v["n_lowered"] == 1 and v["n"] == 2 and "SSAT on d" in v["text"]
    t.loc[3, "r"] = 0.25
    assert risk.table2_verdict(t)["all_lowered"]
    with pytest.raises(ValueError, match="no PGD rows"):
        risk.table2_verdict(t[t["attack"] != "pgd"])


def test_hfc_verdict_reads_the_gap():
    t = _table([("d", "SSAT", "none", "pgd", 1.0), ("d", "SSAT", "UAD", "pgd", 0.6),
                ("d", "SSAT", "none", "hfc", 1.0), ("d", "SSAT", "UAD", "hfc", 0.9)])
    v = risk.hfc_verdict(t)
    row = v["rows"].iloc[0]
    assert v["all_raised"] and row["gap_closed"] == pytest.approx(0.75) and "75 %" in v["text"]
    t.loc[1, "r"] = 1.2  # UAD made PGD worse: no benefit to remove
    assert math.isnan(risk.hfc_verdict(t)["rows"]["gap_closed"].iloc[0])
    with pytest.raises(ValueError, match="no SSAT rows"):
        risk.hfc_verdict(t.assign(regime="NT"))


def test_deployment_text_names_the_lowest_worst_case():
    t = _table([("d", "NT", "none", "pgd", 1.0), ("d", "NT", "none", "hfc", 0.7),
                ("d", "SSAT", "UAD", "pgd", 0.2), ("d", "SSAT", "UAD", "hfc", 0.5)])
    w = risk.worst_case(t)
    assert w.iloc[0][["regime", "detector", "worst_attack"]].tolist() == ["SSAT", "UAD", "hfc"]
    text = risk.deployment_text(t)
    assert "SSAT with UAD: r = 0.50" in text and "HFC" in text and "undefended NT: r = 1.00 under PGD" in text


def test_table2_frame_puts_the_paper_beside():
    t = _table([("d", r, det, "pgd", v) for r, det, v in
                [("NT", "none", 0.9), ("NT", "UAD", 0.8), ("SSAT", "none", 0.3), ("SSAT", "UAD", 0.2)]])
    b = _table([("d", "SSAT", "none", "pgd", 0.7), ("d", "SSAT", "UAD", "pgd", 0.4)]).assign(eps=0.01)
    f = risk.table2_frame(t, b)
    assert f[["regime", "eps"]].values.tolist() == [["NT", 0.005], ["SSAT", 0.005], ["SSAT", 0.01]]
    assert f["paper_r_uad"].tolist() == [0.892, 0.215, 0.450] and f["r_uad"].tolist() == [0.8, 0.2, 0.4]


def test_mark_best_is_per_dataset_and_regime_and_takes_the_smallest_fpr_on_ties():
    curve = pd.DataFrame({"dataset": ["a"] * 3 + ["b"] * 3, "regime": ["NT"] * 6, "fpr": [0.1, 0.0, 0.05] * 2,
                          "r": [0.5, 0.9, 0.5, 0.3, 0.2, 0.4]})
    best = risk.mark_best(curve)
    assert best.loc[best["best"], ["dataset", "fpr"]].values.tolist() == [["a", 0.05], ["b", 0.0]]
