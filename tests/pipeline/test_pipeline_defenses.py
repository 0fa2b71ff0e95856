"""The regime stage of the SSAT chapter on a toy data set, the UAD preset and its calibrated FPR."""
import numpy as np
import pytest
import torch

from medadv_lib.cache import Cache
from medadv_lib.config import ConfigError, get_profile
from medadv_lib.detectors import GMMDetector, uad, UAD_SETTINGS
from medadv_lib.pipeline import defenses as stage
from medadv_lib.pipeline.ssat_uad import class_auprc, claim_flags, claim_text, clip_to_budget


def _profile(**extra):
    return get_profile("smoke", {"data.train_size": None, "data.test_size": None, "defense.labelled": 24,
                                 "defense.unlabelled": 12, "defense.epochs": 1, "defense.batch_size": 8, **extra})


@pytest.fixture
def toy(monkeypatch, toy_dataset):
    def make(classes=("a", "b", "c")):
        ds = toy_dataset(n=48, classes=classes, channels=1, size=16)
        ds.cache_key = f"dataset-toy{len(classes)}"
        monkeypatch.setattr(stage, "get_dataset", lambda *a, **k: ds)
        return ds
    return make


def test_regime_model_trains_caches_and_reports(toy, tmp_path):
    toy()
    cache = Cache(tmp_path)
    tm = stage.regime_model("toy", "ssat", _profile(), cache=cache, progress=False, device="cpu")
    assert not tm.cache.hit and len(tm.train) == 24 and tm.metrics["unlabelled"] == 12
    assert tm.metrics["train_seconds"] > 0 and 0 <= tm.metrics["accuracy"] <= 1
    again = stage.regime_model("toy", "ssat", _profile(), cache=cache, progress=False, device="cpu")
    assert again.cache.hit and again.cache.key == tm.cache.key


def test_ssat_with_a_teacher_trains_the_nt_model_first_and_keys_on_it(toy, tmp_path):
    toy()
    cache = Cache(tmp_path)
    online = stage.regime_model("toy", "ssat", _profile(**{"defense.pseudo_labels": "online"}), cache=cache,
                                progress=False, device="cpu")
    assert not any(p.name.startswith("regime_model") and p.name != online.cache.path.name
                   for p in tmp_path.iterdir())  # online targets need no NT model
    tm = stage.regime_model("toy", "ssat", _profile(), cache=cache, progress=False, device="cpu")
    nt = stage.regime_model("toy", "nt", _profile(), cache=cache, progress=False, device="cpu")
    assert nt.cache.hit and tm.cache.key != online.cache.key
    # the teacher's cache key is an upstream key of the SSAT model: another teacher, another SSAT model
    import json
    assert nt.cache.key in json.loads((tm.cache.path / "meta.json").read_text())["upstream"]


def test_regime_key_includes_the_split_and_the_regime(toy):
    ds = toy()
    p = _profile()
    _, split, _ = stage.regime_split(ds, p, 0)
    key = stage.regime_key_params("at", p, split, 0)
    _, split_seed1, _ = stage.regime_split(ds, p, 1)
    assert stage.regime_key_params("at", p, split_seed1, 0)["split"] != key["split"]
    _, bigger, _ = stage.regime_split(ds, _profile(**{"defense.labelled": 30}), 0)
    assert stage.regime_key_params("at", p, bigger, 0)["split"] != key["split"]
    assert stage.regime_key_params("nt", p, split, 0) != key
    # the split is class-balanced and disjoint
    assert split.counts["labelled"] == [8, 8, 8] and not set(split.labelled) & set(split.unlabelled)


def test_gce_on_a_binary_set_is_a_clear_error(toy):
    toy(classes=("neg", "pos"))
    with pytest.raises(ValueError, match="identically zero"):
        stage.regime_model("toy", "gce", _profile(), progress=False, device="cpu")
    assert stage.regimes_for(2, ["nt", "at", "gce", "ssat"]) == ["nt", "at", "ssat"]
    assert stage.regimes_for(5, ["gce"]) == ["gce"]
    with pytest.raises(ValueError, match="unknown regime"):
        stage.check_regime("mixup")


def test_split_sizes_shrink_in_proportion():
    assert stage.split_sizes(1080, 1200, 400) == (810, 270)
    assert stage.split_sizes(5000, 1200, 400) == (1200, 400)


def test_defense_section_is_validated_and_leaves_train_alone():
    with pytest.raises(ConfigError, match="defense.regimes"):
        get_profile("cpu", {"defense.regimes": "nt,mixup"})
    assert get_profile("cpu").train == get_profile("cpu", {"defense.epochs": 1}).train
    assert get_profile("cpu").defense.eps[-1] == pytest.approx(0.01)


def test_uad_preset_is_a_gmm_with_the_documented_settings():
    det = uad(fpr=0.1)
    assert isinstance(det, GMMDetector)
    assert {k: det.get_params()[k] for k in UAD_SETTINGS} == UAD_SETTINGS and det.fpr == 0.1
    assert uad(n_components=1).n_components == 1
    with pytest.raises(TypeError, match="unknown parameter"):
        uad(components=3)


@pytest.mark.parametrize("fpr", [0.05, 0.1, 0.2])
def test_uad_threshold_keeps_the_calibrated_fpr(fpr):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(400, 4)), np.repeat([0, 1], 200)
    X[y == 1] += 3
    det = uad(fpr=fpr).fit(X, y)
    calib = rng.normal(size=(2000, 4)) + 3 * np.repeat([0, 1], 1000)[:, None]
    pred = np.repeat([0, 1], 1000)
    det.calibrate(calib, pred)
    assert det.predict(calib, pred).mean() <= fpr  # exactly floor(fpr * n) above the threshold
    fresh = rng.normal(size=(4000, 4)) + 3 * np.repeat([0, 1], 2000)[:, None]
    assert abs(det.predict(fresh, np.repeat([0, 1], 2000)).mean() - fpr) < 0.03  # held out: close to it
    far = rng.normal(size=(200, 4)) + 12
    assert det.predict(far, np.ones(200, int)).mean() > 0.9


def test_class_auprc_groups_by_predicted_class():
    table = class_auprc([0.0, 0.1, 5.0], [0, 0, 1], [1.0, 2.0], [0, 2], 3)
    assert table.loc[0, "auprc"] == 1.0 and table.loc[0, "n_adv"] == 1 and table.loc[0, "n_clean"] == 2
    assert np.isnan(table.loc[1, "auprc"]) and np.isnan(table.loc[2, "auprc"])


def test_clip_to_budget_stays_in_the_ball():
    x = torch.rand(4, 1, 5, 5)
    out = clip_to_budget(x, torch.rand(4, 1, 5, 5), 0.01)
    assert (out - x).abs().max() <= 0.01 + 1e-7 and out.min() >= 0 and out.max() <= 1


def test_claims_read_the_numbers():
    import pandas as pd

    summary = pd.DataFrame({"regime": ["NT", "AT", "SSAT"], "pgd_accuracy": [0.1, 0.3, 0.5],
                            "mean_auprc": [0.8, 0.7, 0.9], "chance_auprc": [0.2, 0.1, 0.05],
                            "n_successful": [40, 30, 10], "n_attacked": [50, 50, 50]})
    regimes = pd.DataFrame({"regime": ["NT", "AT", "SSAT"], "accuracy": [0.8, 0.8, 0.76]})
    flags = claim_flags(summary, regimes)
    assert flags["ssat_most_robust"] and not flags["ssat_clean_close"] and flags["uad_better_on_ssat"]
    text = claim_text("toy", flags)
    assert "4.0 points below" in text and "random ranking scores 0.050 and 0.200" in text
    assert "on 10 and 40 successful AEs" in text
    flags = claim_flags(summary.assign(pgd_accuracy=[0.1, 0.56, 0.5]), regimes)
    assert not flags["ssat_most_robust"]
    assert "AT is: 56.0 % against SSAT's 50.0 %), a difference of 3 images of 50" in claim_text("toy", flags)
