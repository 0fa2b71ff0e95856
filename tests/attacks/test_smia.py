"""SMIA: its kernel, its reduction to BIM, the KL term's gradient, the budget, 3-D inputs."""
import pytest
import torch
from torch import nn
from _attack_helpers import images, labels, small_feature_model

from medadv_lib.attacks import BIM, get_attack
from medadv_lib.attacks.smia import SMIA, gaussian_kernel, smooth


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("size, sigma", [(3, 1.0), (5, 0.7)])
def test_kernel_symmetric_centred_normalised(dims, size, sigma):
    k = gaussian_kernel(size, sigma, dims, dtype=torch.float64)
    assert k.shape == (size,) * dims
    assert k.sum().item() == pytest.approx(1.0, abs=1e-12)
    for axis in range(dims):
        assert torch.equal(k, k.flip(axis))
    centre = (size // 2,) * dims
    assert k[centre] == k.max()


def test_smooth_keeps_channels_apart_and_constants_fixed():
    x = torch.zeros(2, 3, 6, 6)
    x[:, 1, 3, 3] = 1.0
    out = smooth(x, gaussian_kernel(3, 1.0, 2))
    assert out.shape == x.shape
    assert out[:, 0].abs().max() == 0 and out[:, 2].abs().max() == 0
    assert out[0, 1].sum().item() == pytest.approx(1.0, abs=1e-6)  # mass kept away from the border
    const = torch.full((1, 2, 5, 5), 0.3)
    torch.testing.assert_close(smooth(const, gaussian_kernel(3, 1.0, 2)), const)
    with pytest.raises(ValueError, match="2-D kernel"):
        smooth(torch.zeros(1, 1, 4, 4, 4), gaussian_kernel(3, 1.0, 2))


@pytest.mark.parametrize("targeted", [False, True])
def test_beta2_zero_is_bim_exactly(targeted):
    model = small_feature_model(num_classes=3)
    x, y = images(6, (1, 8, 8)), labels(6, 3)
    ours = SMIA(model, eps=8 / 256, steps=6, beta2=0.0, targeted=targeted, seed=0)(x, y)
    bim = BIM(model, eps=8 / 256, steps=6, targeted=targeted, seed=0)(x, y)
    assert torch.equal(ours, bim)


def test_stabilisation_changes_the_attack_and_its_gradient_matches_finite_differences():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 5 * 5, 3)).double()
    x = torch.rand(2, 1, 5, 5, dtype=torch.float64) * 0.5 + 0.25
    y = torch.tensor([0, 2])
    attack = SMIA(model, eps=0.05, beta2=2.0, fuse_bn=False)
    r = 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype).sign()
    state = {"layers": None, "delta_step": r, "step": 1}

    def objective(z):
        return attack.objective(z, y, None, state)[0]

    assert torch.autograd.gradcheck(objective, (x.clone().requires_grad_(True),), eps=1e-6, atol=1e-6)
    plain = SMIA(model, eps=0.05, beta2=0.0, fuse_bn=False).objective(x, y, None, state)[0]
    gap = plain - objective(x)  # untargeted: task - beta2 * KL, and KL >= 0
    assert (gap >= 0).all() and gap.max() > 1e-4  # the KL term is really there
    # the KL term is >= 0 and is 0 when the smoothed step does not change the prediction
    zero = {"layers": None, "delta_step": torch.zeros_like(x), "step": 1}
    torch.testing.assert_close(attack.objective(x, y, None, zero)[0], plain)


@pytest.mark.parametrize("divergence", ["kl", "ce_hard"])
def test_stays_in_budget_for_many_steps(divergence):
    model = small_feature_model(num_classes=2)
    x, y = images(4, (1, 8, 8)), labels(4, 2)
    before = x.clone()
    eps = 2 / 256
    res = SMIA(model, eps=eps, steps=60, beta2=5.0, divergence=divergence, seed=0).run(x, y, record=("linf",))
    assert torch.equal(x, before)
    assert (res.x_adv - x).abs().max() <= eps + 1e-7
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert (res.records["linf"] <= eps + 1e-7).all()


def test_volumes_with_a_3d_cnn():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                          nn.Linear(4, 2))
    x = torch.rand(3, 1, 6, 6, 6)
    y = torch.tensor([0, 1, 0])
    out = SMIA(model, eps=4 / 256, steps=4, beta2=1.0, seed=0)(x, y)
    assert out.shape == x.shape and (out - x).abs().max() <= 4 / 256 + 1e-7


def test_registry_and_errors():
    model = small_feature_model(num_classes=2)
    attack = get_attack("smia", model, eps=0.01, beta2=3.0)
    assert isinstance(attack, SMIA) and attack.hyperparameters()["beta2"] == 3.0
    for kwargs, match in [({"beta2": -1}, "beta2"), ({"divergence": "js"}, "divergence"),
                          ({"kernel_size": 4}, "odd"), ({"sigma": 0}, "sigma")]:
        with pytest.raises(ValueError, match=match):
            SMIA(model, eps=0.01, **kwargs)
