import dataclasses

import pytest

from medadv_lib.config import PROFILES, ConfigError, get_profile


def test_profiles_are_frozen_and_valid():
    assert set(PROFILES) == {"smoke", "cpu", "paper"}
    profile = get_profile("smoke")
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.train.epochs = 3
    assert get_profile("paper").data.image_size == 224


def test_unknown_profile_and_key_list_valid_ones():
    with pytest.raises(ConfigError, match="smoke, cpu, paper"):
        get_profile("fast")
    with pytest.raises(ConfigError, match="train.epochs"):
        get_profile("smoke", {"train.epoch": 3})


def test_overrides_are_coerced_and_validated():
    profile = get_profile("cpu", {"train.epochs": "2", "attack.eps_k": "1,2", "data.train_size": "none"})
    assert profile.train.epochs == 2 and profile.attack.eps == (1 / 256, 2 / 256) and profile.data.train_size is None
    with pytest.raises(ConfigError, match="train.arch"):
        get_profile("smoke", {"train.arch": "alexnet"})
    with pytest.raises(ConfigError, match="epochs"):
        get_profile("smoke", {"train.epochs": 0})
    with pytest.raises(ConfigError, match="device"):
        get_profile("smoke", {"device": "tpu"})


# --------------------------------------------------------------------------- bad values, one class per table
from medadv_lib.config import KNOWN_ATTACKS, AttackConfig, TrainConfig  # noqa: E402

BAD_OVERRIDES = [  # (overrides, the key the message must name)
    ({"train.augment": "maybe"}, "train.augment"),
    ({"train.augment": 1}, "train.augment"),
    ({"train.lr": "inf"}, "train.lr"),
    ({"train.lr": float("nan")}, "train.lr"),
    ({"data.val_fraction": "nan"}, "data.val_fraction"),
    ({"detect.maha_noise": float("inf")}, "detect.maha_noise"),
    ({"train.epochs": 2.5}, "train.epochs"),
    ({"train.epochs": "2.5"}, "train.epochs"),
    ({"train.epochs": True}, "train.epochs"),
    ({"train.epochs": "none"}, "train.epochs"),
    ({"train.epochs": None}, "train.epochs"),
    ({"train.lr": True}, "train.lr"),
    ({"attack.eps_k": ""}, "attack.eps_k"),
    ({"attack.eps_k": ()}, "attack.eps_k"),
    ({"attack.eps_k": "1,a"}, "attack.eps_k"),
    ({"attack.eps_k": [1, 2.5]}, "attack.eps_k"),
    ({"attack.eps_k": (1, True)}, "attack.eps_k"),
    ({"attack.eps_k": 4}, "attack.eps_k"),
    ({"attack.stress_eps_k": "0"}, "attack.stress_eps_k"),
    ({"detect.eps_k": "300"}, "detect.eps_k"),
    ({"device": "cuda:abc"}, "device"),
    ({"device": "gpu"}, "device"),
    ({"device": "cuda:"}, "device"),
    ({"device": None}, "device"),
    ({"detect.attacks": "pgd,deepfool"}, "detect.attacks"),
    ({"detect.sweep_attacks": "bim,nope"}, "detect.sweep_attacks"),
    ({"detect.attacks": ""}, "detect.attacks"),
    ({"train.arch": 3}, "train.arch"),
    ({"attack.batch_size": 0}, "attack.batch_size"),
    ({"detect.n_boot": 0}, "detect.n_boot"),
]


@pytest.mark.parametrize("overrides,key", BAD_OVERRIDES)
def test_bad_values_are_refused_naming_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        get_profile("smoke", overrides)


def test_values_are_normalised_to_their_declared_types():
    profile = get_profile("smoke", {"train.lr": 1, "train.augment": "off", "attack.eps_k": [2, 4],
                                    "detect.eps_k": "(8,)", "train.weights": "none", "device": "cuda:1"})
    assert profile.train.lr == 1.0 and isinstance(profile.train.lr, float)
    assert profile.train.augment is False and profile.attack.eps_k == (2, 4) and profile.detect.eps_k == (8,)
    assert profile.train.weights is None and profile.device == "cuda:1"
    assert get_profile("smoke", {"train.weights": "w.pt"}).train.weights == "w.pt"  # str | None takes a string
    with pytest.raises(ConfigError, match="train.epochs"):  # also when built from Python directly
        TrainConfig(epochs=2.5)
    with pytest.raises(ConfigError, match="attack.eps_k"):
        AttackConfig(eps_k=())


def test_validation_is_order_independent():
    a = {"detect.attacks": "pgd", "detect.sweep_attacks": "pgd"}
    b = {"detect.sweep_attacks": "pgd", "detect.attacks": "pgd"}
    assert get_profile("smoke", a) == get_profile("smoke", b)
    bad_a = {"detect.attacks": "pgd", "detect.sweep_attacks": "fgsm"}
    for overrides in (bad_a, dict(reversed(list(bad_a.items())))):
        with pytest.raises(ConfigError, match="subset"):
            get_profile("smoke", overrides)


@pytest.mark.parametrize("overrides", [[("train.epochs", "3")], (("train.epochs", 3),), [["train.epochs", 3]]])
def test_overrides_as_pairs_are_accepted(overrides):
    assert get_profile("smoke", overrides).train.epochs == 3


@pytest.mark.parametrize("overrides,match", [(["train.epochs"], "pairs"), ([("train.epochs", 1, 2)], "pairs"),
                                             ("train.epochs=2", "mapping"), (42, "mapping"),
                                             ({3: 1}, "dotted strings"), ([(None, 1)], "dotted strings")])
def test_malformed_overrides_are_refused(overrides, match):
    with pytest.raises(ConfigError, match=match):
        get_profile("smoke", overrides)


@pytest.mark.parametrize("name", [None, 3, ["smoke"], "SMOKE"])
def test_bad_profile_names(name):
    with pytest.raises(ConfigError, match="valid profiles"):
        get_profile(name)


def test_known_attacks_match_the_registry():
    from medadv_lib.attacks import ATTACKS

    assert tuple(sorted(ATTACKS)) == KNOWN_ATTACKS
