"""Bad arguments raise errors that say what to fix."""
from __future__ import annotations

import pytest
import torch
from _attack_helpers import images, labels, linear_model, small_feature_model
from torch import nn

from medadv_lib.attacks import ATTACKS, BIM, CW, DI, FGSM, MIM, PGD, IterativeAttack, get_attack

MODEL = linear_model((1, 4, 4), 3)
X, Y = images(4), labels(4, 3)


@pytest.mark.parametrize("eps, match", [(-0.1, "outside"), (1.5, "outside"), (8, "8/255"),
                                        (float("nan"), "outside")])
def test_bad_eps(eps, match):
    with pytest.raises(ValueError, match=match):
        PGD(MODEL, eps=eps)


def test_eps_not_a_number():
    with pytest.raises(TypeError, match="number"):
        PGD(MODEL, eps="small")


@pytest.mark.parametrize("steps", [0, -3, 2.5, True])
def test_bad_steps(steps):
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        BIM(MODEL, eps=0.1, steps=steps)


@pytest.mark.parametrize("alpha", [0, -0.01, float("inf")])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        PGD(MODEL, eps=0.1, alpha=alpha)


def test_bad_hyperparameters_of_variants():
    with pytest.raises(ValueError, match="mu"):
        MIM(MODEL, eps=0.1, mu=-1)
    with pytest.raises(ValueError, match="p="):
        DI(MODEL, eps=0.1, p=1.5)
    with pytest.raises(ValueError, match="low"):
        DI(MODEL, eps=0.1, low=0)
    with pytest.raises(ValueError, match="kappa"):
        CW(MODEL, eps=0.1, kappa=-1)
    with pytest.raises(TypeError, match="seed"):
        PGD(MODEL, eps=0.1, seed=1.5)


def test_hyperparameters_are_keyword_only():
    with pytest.raises(TypeError):
        PGD(MODEL, 0.1)


def test_not_a_module():
    with pytest.raises(TypeError, match="nn.Module"):
        FGSM(lambda x: x, eps=0.1)


def test_batch_size_mismatch():
    with pytest.raises(ValueError, match="4 images"):
        PGD(MODEL, eps=0.1)(X, labels(3, 3))


def test_labels_out_of_range_plain_module():
    with pytest.raises(ValueError, match="3 classes"):
        PGD(MODEL, eps=0.1)(X, torch.tensor([0, 1, 2, 3]))


def test_labels_out_of_range_feature_model():
    model = small_feature_model(num_classes=3)
    with pytest.raises(ValueError, match="valid: 0..2"):
        FGSM(model, eps=0.1)(images(2, (1, 8, 8)), torch.tensor([0, -1]))


def test_float_labels():
    with pytest.raises(TypeError, match="integers"):
        PGD(MODEL, eps=0.1)(X, Y.float())


def test_uint8_images():
    with pytest.raises(TypeError, match="255"):
        PGD(MODEL, eps=0.1)((X * 255).to(torch.uint8), Y)


def test_wrong_rank():
    with pytest.raises(ValueError, match="unsqueeze"):
        PGD(MODEL, eps=0.1)(X[0, 0], Y[:1])
    model = small_feature_model(num_classes=3)
    with pytest.raises(ValueError, match=r"expects \(N, 1, H, W\)"):
        PGD(model, eps=0.1)(images(2, (3, 8, 8)), labels(2, 3))


def test_nan_input():
    x = X.clone()
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        PGD(MODEL, eps=0.1)(x, Y)


def test_out_of_range_pixels():
    with pytest.raises(ValueError, match="un-normalised"):
        PGD(MODEL, eps=0.1)(X * 3 - 1, Y)


def test_target_for_untargeted_attack():
    with pytest.raises(ValueError, match="targeted=True"):
        PGD(MODEL, eps=0.1)(X, Y, target=(Y + 1) % 3)


def test_target_shape_and_range():
    with pytest.raises(ValueError, match="target"):
        PGD(MODEL, eps=0.1, targeted=True)(X, Y, target=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="3 classes"):
        PGD(MODEL, eps=0.1, targeted=True)(X, Y, target=torch.tensor([0, 1, 2, 5]))


def test_target_equal_to_label_warns():
    with pytest.warns(UserWarning, match="equal the true label"):
        out = PGD(MODEL, eps=0.1, targeted=True, seed=0)(X, Y, target=Y)
    assert (out - X).abs().max() <= 0.1 + 1e-6


def test_unknown_attack_name_lists_valid():
    with pytest.raises(KeyError, match="valid names") as info:
        get_attack("pgdd", MODEL, eps=0.1)
    for name in ("fgsm", "bim", "pgd", "mim", "di", "cw"):
        assert name in str(info.value)


def test_get_attack_builds_every_registered_attack():
    for name in ("FGSM", "bim", "pgd", "mim", "di", "cw"):
        attack = get_attack(name, MODEL, eps=0.1, seed=0)
        assert isinstance(attack, ATTACKS[name.lower()])
        assert attack(X, Y).shape == X.shape


def test_feature_losses_need_feature_model():
    with pytest.raises(TypeError, match="forward_features"):
        IterativeAttack(MODEL, eps=0.1, feature_layers=["penultimate"])
    with pytest.raises(TypeError, match="record_features"):
        PGD(MODEL, eps=0.1).run(X, Y, record_features=True)


def test_unknown_feature_layer():
    model = small_feature_model()
    with pytest.raises(ValueError, match="block1"):
        IterativeAttack(model, eps=0.1, feature_layers=["nope"])


def test_inputs_without_spatial_dims_rejected():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    x = torch.rand(2, 4)
    with pytest.raises(ValueError, match="batch"):
        DI(model, eps=0.1, p=1.0)(x, torch.tensor([0, 1]))
