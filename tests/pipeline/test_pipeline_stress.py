"""The cached stress-test stage (one model, every layer, direction and budget) and the datasets roles."""
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from _toy_model import toy_trained_model

from medadv_lib.cache import Cache
from medadv_lib.config import get_profile
from medadv_lib.pipeline import StressResult, dataset_roles, parse_datasets, stress_experiment


@pytest.fixture(scope="module")
def toy_tm():
    return toy_trained_model(120, 40, dropout=0.0, steps=20)


@pytest.fixture(scope="module")
def small_profile():
    cfg = get_profile("smoke")
    return replace(cfg, attack=replace(cfg.attack, stats_images=40, stress_images=4, stress_channels=2,
                                       stress_eps_k=(1, 8), steps=3))


def test_stress_experiment_result_and_cache(toy_tm, small_profile, tmp_path):
    cache = Cache(tmp_path)
    first = stress_experiment(toy_tm, small_profile, seed=0, cache=cache)
    assert isinstance(first, StressResult) and first.dataset == "toy"
    assert first.layers[-1] == "penultimate" and first.n_reference == 40
    frame = first.frame
    assert set(frame["layer"]) == set(first.layers) and set(frame["direction"]) == {"max", "min"}
    assert np.allclose(sorted(frame["eps_k"].unique()), [1.0, 8.0])
    n_pairs = sum(len(c) for c in first.channels.values())
    assert len(frame) == 2 * 2 * n_pairs * frame["image"].nunique()
    for lay, chans in first.channels.items():
        assert np.all(first.stats[lay].std[chans] > 0)  # only channels with clean variance
    assert frame["percentile"].between(0, 100).all()
    # pushing up moves the channel up on average, more at the larger budget
    mx = frame[frame["direction"] == "max"]
    shift = (mx["reached_value"] - mx["clean_value"]).groupby(mx["eps_k"]).mean()
    assert shift[8.0] > shift[1.0] >= -1e-6
    again = stress_experiment(toy_tm, small_profile, seed=0, cache=cache)
    assert again.cache_key == first.cache_key
    assert again.frame.equals(first.frame)
    other = stress_experiment(toy_tm, small_profile, seed=1, cache=cache)
    assert other.cache_key != first.cache_key


def test_stress_experiment_rejects_a_bad_layer(toy_tm, small_profile, tmp_path):
    with pytest.raises(ValueError, match="layer"):
        stress_experiment(toy_tm, small_profile, layer=" ", cache=Cache(tmp_path))


def test_parse_datasets_and_roles():
    assert parse_datasets(" chestxray, cifar10,,chestxray ") == ["chestxray", "cifar10"]
    roles = dataset_roles("cifar10,chestxray,breastmnist", need_natural=True)
    assert roles.names == ["cifar10", "chestxray", "breastmnist"]
    assert roles.natural == ["cifar10"] and roles.contrast == "cifar10"
    assert roles.medical == ["chestxray", "breastmnist"]
    assert dataset_roles("chestxray").contrast is None
    with pytest.raises(ValueError, match="natural"):
        dataset_roles("chestxray", need_natural=True)
    with pytest.raises(ValueError, match="medical"):
        dataset_roles("cifar10")
    with pytest.raises(ValueError, match="names no data set"):
        parse_datasets(" , ")
    with pytest.raises(TypeError):
        parse_datasets(["chestxray"])
    with pytest.raises(Exception, match="chestxray"):  # an unknown name lists the known ones
        parse_datasets("no_such_set")


def test_binary_and_multiclass_roles():
    from medadv_lib.pipeline import binary_and_multiclass

    assert binary_and_multiclass({"c": 10, "x": 2, "r": 5}) == ("x", ["c", "r"])
    with pytest.raises(ValueError, match="two classes"):
        binary_and_multiclass({"c": 10})
    with pytest.raises(ValueError, match="more than two"):
        binary_and_multiclass({"x": 2, "y": 2})


def test_direction_experiment_result_and_cache(toy_tm, small_profile, tmp_path):
    from dataclasses import replace as dc_replace

    from medadv_lib.pipeline import DirectionResult, direction_experiment

    toy = SimpleNamespace(**vars(toy_tm))
    toy.dataset = SimpleNamespace(name="toy", num_classes=2)
    profile = dc_replace(small_profile, attack=dc_replace(small_profile.attack, direction_images=6, eps_k=(2, 8)))
    cache = Cache(tmp_path)
    first = direction_experiment(toy, profile, seed=0, cache=cache)
    assert isinstance(first, DirectionResult) and set(first.runs) == {2 / 256, 8 / 256}
    assert first.grad_error < 1e-5  # the analytic feature gradient matches autograd
    assert np.allclose(first.frame["grad_cos"], 1.0, atol=1e-5)  # binary: exactly along w_t - w_y
    for eps, run in first.runs.items():
        assert float(run.linf.max()) <= eps + 1e-6
    assert first.n_reference == 40 and first.feature_dim > 0 and first.train_distance > 0
    again = direction_experiment(toy, profile, seed=0, cache=cache)
    assert again.cache_key == first.cache_key and again.frame.equals(first.frame)
    with pytest.raises(ValueError, match="attack"):
        direction_experiment(toy, profile, attack="fgsm", cache=cache)
