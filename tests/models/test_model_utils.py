"""The shared model utilities: modes restored exactly, spatial means, tap resolution, image scaling."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from medadv_lib.models import build_model
from medadv_lib.models.utils import (PENULTIMATE, as_float_images, eval_mode, frozen, model_device, resolve_layers,
                                     spatial_mean)


def _mixed():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 2))
    model.train()
    model[1].eval()  # a deliberately mixed mode, as when BatchNorm is kept frozen in fine-tuning
    model[3].weight.requires_grad_(False)
    return model


def _state(model):
    return [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()]


def test_eval_mode_sets_eval_and_restores_mixed_flags():
    model = _mixed()
    before = _state(model)
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
        assert [p.requires_grad for p in model.parameters()] == before[1]
    assert _state(model) == before


def test_frozen_freezes_and_restores_exactly_even_on_error():
    model = _mixed()
    before = _state(model)
    with pytest.raises(RuntimeError, match="boom"):
        with frozen(model):
            assert not any(m.training for m in model.modules())
            assert not any(p.requires_grad for p in model.parameters())
            raise RuntimeError("boom")
    # the weight that was frozen before stays frozen; the others are trainable again
    assert _state(model) == before


def test_frozen_still_gives_input_gradients():
    model = _mixed()
    x = torch.randn(5, 3, requires_grad=True)
    with frozen(model):
        model(x).sum().backward()
    assert x.grad is not None and model[0].weight.grad is None


def test_model_device():
    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(nn.ReLU()) == torch.device("cpu")  # no parameters, no buffers


def test_spatial_mean_shapes_and_values():
    t = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 2, 2)
    assert torch.equal(spatial_mean(t), t.mean((2, 3)))
    v = torch.randn(2, 5)
    assert spatial_mean(v) is v
    assert spatial_mean(torch.randn(2, 3, 2, 2, 2)).shape == (2, 3)
    with pytest.raises(ValueError, match="no channel axis"):
        spatial_mean(torch.randn(4))


NAMES = ["stem", "block1", "block2", "block3", PENULTIMATE]


@given(st.lists(st.sampled_from(NAMES), max_size=8))
def test_resolve_layers_returns_each_tap_once_in_forward_order(layers):
    out = resolve_layers(NAMES, layers)
    assert out == [n for n in NAMES if n in set(layers)]


def test_resolve_layers_names_the_unknown_tap_and_the_valid_ones():
    model = build_model("smallcnn", in_channels=1, num_classes=2, image_size=8)
    assert resolve_layers(model, None) == model.feature_names
    assert resolve_layers(model, PENULTIMATE) == [PENULTIMATE]
    with pytest.raises(KeyError, match=r"\['nope'\]; this model has: \['block1'"):
        resolve_layers(model, ["block1", "nope"])
    with pytest.raises(KeyError, match="this model has"):
        resolve_layers(NAMES, "nope")


def test_as_float_images():
    x = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    out = as_float_images(x)
    assert out.dtype == torch.float32 and out.flatten().tolist() == [0.0, 1.0]
    f = torch.rand(1, 1, 2, 2)
    assert as_float_images(f) is f
