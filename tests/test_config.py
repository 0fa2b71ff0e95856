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
