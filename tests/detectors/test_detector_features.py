"""The single feature-extraction path: shapes, dtypes, values, batching and mode restoration."""
import numpy as np
import pytest
import torch

from medadv_lib.detectors import Features, extract_features, forward_maps, spatial_mean


def test_spatial_mean_shapes():
    assert spatial_mean(torch.ones(2, 3, 4, 5)).shape == (2, 3)
    assert spatial_mean(torch.ones(2, 3, 2, 4, 5)).shape == (2, 3)
    v = torch.randn(2, 7)
    assert spatial_mean(v) is v
    with pytest.raises(ValueError):
        spatial_mean(torch.ones(3))


def test_extract_features_values_and_dtypes(tiny_model):
    x = torch.rand(9, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    f = extract_features(tiny_model, x, batch_size=4, maps=True, keep_images=True,
                         labels=torch.zeros(9, dtype=torch.long))
    assert list(f.layers) == tiny_model.feature_names
    with torch.no_grad():
        logits, maps = tiny_model.forward_features(x)
    for name, fmap in maps.items():
        assert f.layers[name].dtype == np.float64 and f.layers[name].shape == (9, fmap.shape[1])
        np.testing.assert_allclose(f.layers[name], spatial_mean(fmap).numpy(), rtol=1e-5, atol=1e-6)
        assert f.maps[name].dtype == np.float32 and f.maps[name].shape == tuple(fmap.shape)
    np.testing.assert_allclose(f.logits, logits.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(f.pred, f.logits.argmax(1))
    assert f.images.shape == x.shape and len(f) == 9 and f.labels.dtype == np.int64
    # batching does not change the result
    g = extract_features(tiny_model, x, batch_size=64)
    for name in f.layers:
        np.testing.assert_allclose(f.layers[name], g.layers[name], rtol=1e-5, atol=1e-6)
    assert g.maps is None and g.images is None and g.labels is None


def test_layer_subset_in_forward_order_and_mode_restored(tiny_model):
    tiny_model.train()
    try:
        f = extract_features(tiny_model, torch.rand(3, 1, 8, 8), ["penultimate", "block2"])
        assert list(f.layers) == ["block2", "penultimate"]
        assert tiny_model.training and all(m.training for m in tiny_model.modules())
        _, maps = forward_maps(tiny_model, torch.rand(2, 1, 8, 8), ["block1"])
        assert list(maps) == ["block1"] and maps["block1"].dim() == 4 and not maps["block1"].requires_grad
        assert tiny_model.training
    finally:
        tiny_model.eval()


def test_input_validation(tiny_model):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        extract_features(tiny_model, torch.full((2, 1, 8, 8), 2.0))
    with pytest.raises(ValueError, match="expects"):
        extract_features(tiny_model, torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="labels"):
        extract_features(tiny_model, torch.rand(2, 1, 8, 8), labels=torch.zeros(3, dtype=torch.long))


def test_subset_and_concat(tiny_model):
    x = torch.rand(6, 1, 8, 8)
    f = extract_features(tiny_model, x, keep_images=True)
    parts = [f.subset(np.array([0, 2])), f.subset(np.array([1, 3, 4, 5]))]
    g = Features.concat(parts)
    order = [0, 2, 1, 3, 4, 5]
    for name in f.layers:
        np.testing.assert_array_equal(g.layers[name], f.layers[name][order])
    assert torch.equal(g.images, x[order])
    mask = np.array([True, False] * 3)
    assert len(f.subset(mask)) == 3
    with pytest.raises(KeyError, match="not extracted"):
        f.layer("nope")
