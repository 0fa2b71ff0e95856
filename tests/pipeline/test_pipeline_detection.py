"""The cached detector benchmark stage (one data set, several attacks and budgets)."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from medadv_lib.cache import Cache
from medadv_lib.config import get_profile
from medadv_lib.detectors import standard_detectors
from medadv_lib.metrics import result_columns
from medadv_lib.pipeline import benchmark_runs, detection_benchmark, detector_spec


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
