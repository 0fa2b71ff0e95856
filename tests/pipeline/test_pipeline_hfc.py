"""The HFC stages: the cached mixture fit, the two-setting detection experiment, the sweep, the PCA view."""

import numpy as np
import pandas as pd
import pytest

from medadv_lib.attacks import HFCConstraint
from medadv_lib.cache import Cache
from medadv_lib.config import get_profile
from medadv_lib.detectors import standard_detectors
from medadv_lib.metrics import result_columns
from medadv_lib.pipeline.hfc import (KINDS, attack_label, hfc_experiment, hfc_fit, hfc_sweep, pca_view)


def test_attack_label():
    assert [attack_label("BIM", k) for k in KINDS] == ["bim", "hfc_bim", "adaptive_kd_bim", "adaptive_maha_bim"]
    with pytest.raises(ValueError, match="kind"):
        attack_label("bim", "nope")


def test_hfc_fit_is_cached_and_keyed(toy_tm, tmp_path):
    cache = Cache(tmp_path)
    first = hfc_fit(toy_tm, n_components=1, n_reference=120, cache=cache)
    assert isinstance(first.constraint, HFCConstraint) and not first.cached
    assert first.constraint.state_key == first.cache_key
    assert first.layers == ["block1", "block2", "block3"]  # default: every tap but the penultimate
    assert first.seconds > 0 and set(first.layer_seconds["layer"]) == set(first.layers)
    assert set(first.layer_seconds["class"]) == {0, 1}
    again = hfc_fit(toy_tm, n_components=1, n_reference=120, cache=cache, lam=3.0)
    assert again.cached and again.cache_key == first.cache_key and again.constraint.lam == 3.0  # lam not in the key
    assert hfc_fit(toy_tm, n_components=2, n_reference=120, cache=cache).cache_key != first.cache_key
    assert hfc_fit(toy_tm, n_components=1, n_reference=100, cache=cache).cache_key != first.cache_key
    assert hfc_fit(toy_tm, n_components=1, n_reference=120, seed=1, cache=cache).cache_key != first.cache_key
    assert hfc_fit(toy_tm, layers=["block3"], n_reference=120, cache=cache).layers == ["block3"]
    with pytest.raises(ValueError, match="layers"):
        hfc_fit(toy_tm, layers=[], cache=cache)


@pytest.fixture(scope="module")
def experiment(toy_tm, tmp_path_factory):
    cache = Cache(tmp_path_factory.mktemp("hfc"))
    dets = standard_detectors(include=["KD", "LID", "MAHA", "SVM"], lid_k=5, lid_minibatch=30)
    exp = hfc_experiment(toy_tm, get_profile("smoke"), dets, eps=0.1, bases=("bim",), n_images=60, n_reference=120,
                         n_boot=10, step_fraction=1 / 10, cache=cache)
    return exp, cache, dets


def test_hfc_experiment_both_settings(experiment):
    exp, _, dets = experiment
    res = exp.results
    assert list(res.columns) == result_columns() + ["fit_attack", "setting", "base", "kind", "eps_k"]
    paper, adapted = res[res["setting"] == "paper"], res[res["setting"] == "adapted"]
    assert set(paper["kind"]) == set(KINDS) and len(paper) == len(KINDS) * len(dets)
    assert (paper["fit_attack"] == "bim").all()
    assert set(adapted["kind"]) == {"hfc"} and (adapted["fit_attack"] == "hfc_bim").all()
    assert len(adapted) == len(dets)
    # the unsupervised KD is fitted on clean training features only: refitting on HFC AEs changes nothing
    kd = res[(res["detector"] == "KD") & (res["kind"] == "hfc")].set_index("setting")
    assert kd.loc["paper", "auroc"] == pytest.approx(kd.loc["adapted", "auroc"])
    # the base row of setting 1 is the ordinary protocol: fitted and scored on base AEs
    assert (paper[paper["kind"] == "base"]["n_fit_adv"] >= 2).all()
    ok = res.dropna(subset=["auroc"])
    assert ((ok["auroc"] >= 0) & (ok["auroc"] <= 1)).all()
    att = exp.attacks.set_index("kind")
    assert set(att.index) == set(KINDS)
    assert (att["linf"] <= 0.1 + 1e-6).all() and (att["l2"] > 0).all()
    assert (att["seconds_per_image"] > 0).all()
    assert {"setting", "base", "attack"} <= set(exp.scores.columns)


def test_hfc_experiment_reads_the_cache(experiment, toy_tm):
    exp, cache, dets = experiment
    again = hfc_experiment(toy_tm, get_profile("smoke"), dets, eps=0.1, bases=("bim",), n_images=60,
                           n_reference=120, n_boot=10, step_fraction=1 / 10, cache=cache)
    assert again.fit.cached and again.cache_keys == exp.cache_keys
    assert np.allclose(again.results["auroc"].to_numpy(float), exp.results["auroc"].to_numpy(float), equal_nan=True)


def test_hfc_sweep_and_pca(experiment, toy_tm):
    exp, cache, dets = experiment
    sweep = hfc_sweep(toy_tm, get_profile("smoke"), dets, eps=0.1, n_components=(1,), lams=(0.0, 1.0), n_images=60,
                      n_reference=120, n_boot=10, step_fraction=1 / 10, cache=cache)
    assert set(sweep["lam"]) == {0.0, 1.0} and set(sweep["detector"]) == set(dets)
    views = pca_view(toy_tm, exp, base="bim", layers=["block2", "penultimate"], n_reference=120)
    assert list(views) == ["block2: BIM", "block2: HFC (BIM)", "penultimate: BIM", "penultimate: HFC (BIM)"]
    view = views["penultimate: HFC (BIM)"]
    assert set(view["set"]) == {"clean training", "clean attacked", "adversarial"}
    # the PCA is centred on the clean target-class training features
    assert abs(view[view["set"] == "clean training"]["pc1"].mean()) < 1e-6
    assert (view[view["set"] == "clean attacked"]["image"].to_numpy()
            == view[view["set"] == "adversarial"]["image"].to_numpy()).all()


def test_claims_and_labels(experiment):
    from medadv_lib.pipeline.hfc import claims_text, display_label, for_display, hfc_claims

    exp = experiment[0]
    assert display_label("bim", "hfc") == "HFC (BIM)" and display_label("pgd", "base") == "PGD"
    assert "HFC (BIM)" in set(for_display(exp.results)["attack"])
    claims = hfc_claims(exp.results, exp.attacks)
    assert len(claims) == 1 and {"success_gap", "fs_drop", "tpr_all_fall", "hfc_vs_adaptive_kd"} <= set(claims)
    att = exp.attacks.set_index("kind")
    assert claims["success_gap"].iloc[0] == pytest.approx(100 * (att.loc["base", "success_rate"]
                                                                 - att.loc["hfc", "success_rate"]))
    assert claims["fs_drop_ok"].iloc[0] == (claims["fs_drop"].iloc[0] >= 0.15)
    assert "of 1 runs" in claims_text(claims)


def test_adaptive_attacks_on_some_bases_only(experiment, toy_tm):
    from medadv_lib.pipeline.hfc import claims_text, hfc_claims, steps_text

    _, cache, dets = experiment
    exp = hfc_experiment(toy_tm, get_profile("smoke"), dets, eps=0.1, bases=("bim", "pgd"), adaptive=("bim",),
                         n_images=60, n_reference=120, n_boot=10, step_fraction=1 / 10, cache=cache)
    kinds = exp.results[exp.results["setting"] == "paper"].groupby("base")["kind"].unique().map(set).to_dict()
    assert kinds == {"bim": set(KINDS), "pgd": {"base", "hfc"}}
    claims = hfc_claims(exp.results, exp.attacks).set_index("base")
    assert claims.loc["pgd", ["hfc_vs_adaptive_kd"]].isna().all() and claims.loc["bim", ["hfc_vs_adaptive_kd"]].notna().all()
    assert "of 1 runs with that attack" in claims_text(claims.reset_index())
    with pytest.raises(ValueError, match="not among the bases"):
        hfc_experiment(toy_tm, get_profile("smoke"), dets, eps=0.1, bases=("bim",), adaptive=("pgd",), n_images=60,
                       cache=cache)
    assert steps_text(1 / 40) == "step eps/40, 80 steps (the authors' rule)"


def test_beside_the_paper_has_the_paper_first_then_one_row_per_run(experiment):
    from medadv_lib.pipeline.hfc import PAPER_RESULT, beside_the_paper, hfc_claims

    claims = hfc_claims(experiment[0].results, experiment[0].attacks)
    side = beside_the_paper(claims, arch="resnet18", image_size=28)
    assert side.iloc[0].to_dict() == PAPER_RESULT and len(side) == 1 + len(claims)
    assert side.iloc[1]["data"] == "resnet18, 28 px" and "toy, BIM" in side.iloc[1]["source"]


def test_sweep_table_one_row_per_setting():
    from medadv_lib.pipeline.hfc import sweep_table

    sweep = pd.DataFrame({"n_components": [1, 1, 2, 2], "lam": [1.0, 1.0, 1.0, 1.0], "detector": ["KD", "MAHA"] * 2,
                          "auroc": [0.6, 0.7, 0.5, 0.8], "attack_success_rate": [0.9, 0.9, 0.8, 0.8]})
    table = sweep_table(sweep)
    assert list(table.columns) == ["K", "lambda", "AUROC KD", "AUROC MAHA", "HFC success"]
    assert table["HFC success"].tolist() == [0.9, 0.8] and table["AUROC MAHA"].tolist() == [0.7, 0.8]
