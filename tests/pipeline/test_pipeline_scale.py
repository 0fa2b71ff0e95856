"""The scale study's derived profiles, its answer table and the chapter's sentences (synthetic frames)."""
import math

import numpy as np
import pandas as pd
import pytest

from medadv_lib import verdicts
from medadv_lib.config import ConfigError, get_profile
from medadv_lib.pipeline.scale import (ARCH, INITS, STUDY_SETTINGS, ScaleStudy, fragility_table, study_profile,
                                       study_settings)


def test_study_profile_changes_only_the_study_settings():
    cpu = get_profile("cpu")
    s = study_settings(cpu)
    for init, weights in INITS.items():
        p = study_profile(cpu, 128, init)
        assert p.data.image_size == 128 and p.data.train_size == s["train_size"]
        assert p.train.arch == ARCH and p.train.weights == weights and p.train.lr == s[f"lr_{init}"]
        assert p.train.epochs == s["epochs"] and p.train.min_steps == 0
        assert p.attack.stress_eps_k == tuple(s["stress_eps_k"]) and p.attack.eps_k == tuple(s["curve_eps_k"])
        # the rest is the profile's own
        assert p.train.batch_size == cpu.train.batch_size and p.train.dropout == cpu.train.dropout
        assert p.attack.steps == cpu.attack.steps and p.detect == cpu.detect and p.name == "cpu"


def test_study_settings_fall_back_to_cpu_and_reject_unknown_inits():
    assert study_settings(get_profile("smoke")) == STUDY_SETTINGS["smoke"]
    from dataclasses import replace

    assert study_settings(replace(get_profile("cpu"), name="mine")) == STUDY_SETTINGS["cpu"]
    with pytest.raises(ConfigError, match="init must be one of"):
        study_profile(get_profile("smoke"), 28, "random")
    with pytest.raises(ConfigError, match="image_size"):
        study_profile(get_profile("smoke"), 4, "scratch")


def _study(shifts):
    """A ScaleStudy from {(size, init): {dataset: penultimate max shift}}; other rows mirror the shifts."""
    stress, curves, models = [], [], []
    for (size, init), by_set in shifts.items():
        for name, shift in by_set.items():
            for layer in ("intermediate", "penultimate"):
                for direction, sign in (("max", 1), ("min", -1)):
                    stress.append({"image_px": size, "init": init, "dataset": name, "layer": layer, "eps_k": 1.0,
                                   "direction": direction, "median_z": sign * shift, "median_shift_z": sign * shift,
                                   "share_beyond": min(shift / 4, 1.0)})
            for k, acc in ((0.0, 0.9), (1.0, 0.9 - shift / 10)):
                curves.append({"image_px": size, "init": init, "dataset": name, "eps_k": k, "accuracy": acc, "n": 10})
            models.append({"image_px": size, "init": init, "dataset": name, "accuracy": 0.8})
    settings = {"sizes": sorted({s for s, _ in shifts}), "stress_eps_k": (1,), "curve_eps_k": (1,)}
    return ScaleStudy(pd.DataFrame(models), pd.DataFrame(stress), pd.DataFrame(curves), "stage7.0", settings, [], {})


def test_fragility_table_ratio_counts_and_drops():
    study = _study({(28, "scratch"): {"chestxray": 0.2, "pneumoniamnist": 0.4, "cifar10": 0.4},
                    (128, "imagenet"): {"chestxray": 3.0, "pneumoniamnist": 2.0, "cifar10": 1.0}})
    table = fragility_table(study, "cifar10").set_index(["image_px", "init"])
    low, high = table.loc[(28, "scratch")], table.loc[(128, "imagenet")]
    assert math.isclose(low["medical / natural"], 0.2 / 0.4) and math.isclose(high["medical / natural"], 2.0 / 1.0)
    # 2 layers x 2 directions at one budget; the min direction mirrors the max one
    assert (low["n_farther"], low["n_comparisons"]) == (0, 4) and high["farther"] == "4 of 4"
    assert math.isclose(high["drop chestxray"], 0.3) and math.isclose(low["drop cifar10"], 0.04)
    assert high["acc cifar10"] == 0.8 and math.isclose(high["beyond p99 chestxray"], 0.75)
    with pytest.raises(ValueError, match="natural set"):
        fragility_table(study, "svhn")


def test_fragility_ratio_is_undefined_when_the_natural_set_does_not_move():
    study = _study({(28, "scratch"): {"chestxray": 0.2, "cifar10": 0.0}})
    assert np.isnan(fragility_table(study, "cifar10")["medical / natural"].iloc[0])


def test_scale_numbers_sentences():
    study = _study({(28, "scratch"): {"chestxray": 0.2, "cifar10": 0.4}, (28, "imagenet"): {"chestxray": 0.3, "cifar10": 0.3},
                    (128, "scratch"): {"chestxray": 0.8, "cifar10": 0.4}, (128, "imagenet"): {"chestxray": 3.0, "cifar10": 1.0}})
    answer = fragility_table(study, "cifar10")
    numbers = verdicts.scale_numbers(answer, study.models, natural="cifar10", eps_k=1)
    assert numbers["scale_holds"] == 2 and numbers["scale_cells"] == 4
    assert numbers["scale_where"] == "in 2 of the 4 cells (128 px scratch, 128 px imagenet)"
    assert numbers["ratio_range"] == "0.50 to 3.00"
    assert "from 0.20 to 0.80 (scratch)" in numbers["scale_resolution"]
    assert "3.00 from ImageNet against 0.80 from scratch at 128 px" in numbers["scale_pretraining"]
    assert math.isclose(numbers["pretraining_gain"], math.sqrt(0.3 / 0.2 * 3.0 / 0.8))
    assert math.isclose(numbers["resolution_gain"], math.sqrt(0.8 / 0.2 * 3.0 / 0.3))
    assert numbers["scale_factor"].startswith("Of the two factors, resolution (28 to 128 px)")
    assert "(10.0 from ImageNet and 4.0 from scratch)" in numbers["scale_factor"]
    assert numbers["ratio_imagenet"] == "1.00 at 28 px, 3.00 at 128 px"
    none = fragility_table(_study({(28, "scratch"): {"chestxray": 0.1, "cifar10": 0.4}}), "cifar10")
    assert verdicts.scale_numbers(none, study.models, natural="cifar10", eps_k=1)["scale_where"] == "in none of the 1 cell"
    with pytest.raises(ValueError, match="empty"):
        verdicts.scale_numbers(none.iloc[:0], study.models, natural="cifar10", eps_k=1)
