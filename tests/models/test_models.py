import pytest
import torch
from torch import nn

from medadv_lib.models import ARCHITECTURES, PENULTIMATE, build_model, evaluate, train_model


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_taps_for_every_architecture(arch, channels, size):
    model = build_model(arch, in_channels=channels, num_classes=3, image_size=size).eval()
    x = torch.rand(2, channels, size, size)
    logits, feats = model.forward_features(x)
    assert logits.shape == (2, 3)
    assert list(feats) == model.feature_names and model.feature_names[-1] == PENULTIMATE
    assert feats[PENULTIMATE].shape == (2, model.classifier.in_features)
    for name, value in feats.items():
        assert value.shape[0] == 2 and torch.isfinite(value).all(), name
        if name != PENULTIMATE:
            assert value.dim() == 4 and min(value.shape[2:]) >= 1, name
    # taps do not change the output, and the penultimate vector really feeds the classifier
    assert torch.allclose(model(x), logits, atol=1e-5)
    assert torch.allclose(model.classifier(feats[PENULTIMATE]), logits, atol=1e-4)


def test_resnet_taps_include_inner_relus_and_block_outputs():
    model = build_model("resnet18", in_channels=1, num_classes=2, image_size=28)
    names = model.feature_names
    assert "layer1.0.relu1" in names and "layer4.1" in names and "stem" in names
    resnet50 = build_model("resnet50", in_channels=1, num_classes=2, image_size=28)
    assert "layer3.5.relu2" in resnet50.feature_names
    feats = model.eval().features(torch.rand(1, 1, 28, 28), ["layer4.1", "layer1.0.relu1"])
    assert list(feats) == ["layer1.0.relu1", "layer4.1"]  # forward order, whatever was asked
    assert (feats["layer1.0.relu1"] >= 0).all()


def test_unknown_layer_lists_valid_names():
    model = build_model("smallcnn", in_channels=1, num_classes=2, image_size=28)
    with pytest.raises(KeyError, match="block1"):
        model.features(torch.rand(1, 1, 28, 28), ["layer9"])


def test_gradients_flow_through_taps():
    model = build_model("resnet18", in_channels=3, num_classes=2, image_size=28).eval()
    x = torch.rand(2, 3, 28, 28, requires_grad=True)
    feats = model.features(x, ["layer3.0"])
    (grad,) = torch.autograd.grad(feats["layer3.0"].mean(), x)
    assert grad.abs().sum() > 0


def test_normalisation_inside_and_input_checks():
    model = build_model("smallcnn", in_channels=3, num_classes=2, image_size=28, mean=[0.2, 0.3, 0.4], std=[0.5, 0.5, 0.5])
    assert torch.allclose(model.normalize(torch.full((1, 3, 1, 1), 0.7)).flatten(), torch.tensor([1.0, 0.8, 0.6]))
    with pytest.raises(TypeError, match="float"):
        model.check_input(torch.zeros(1, 3, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model.check_input(torch.rand(1, 1, 28, 28))
    with pytest.raises(ValueError, match="NaN"):
        model.check_input(torch.full((1, 3, 28, 28), float("nan")))


def test_dropout_before_classifier_and_bad_arguments(tmp_path):
    model = build_model("resnet18", in_channels=1, num_classes=2, image_size=28, dropout=0.5)
    assert any(isinstance(m, nn.Dropout) and m.p == 0.5 for m in model.head.modules())
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("alexnet", in_channels=1, num_classes=2)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        build_model("resnet18", in_channels=3, num_classes=2, weights=tmp_path / "missing.pth")


def test_local_weights_file_is_loaded_and_adapted_to_grey(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = build_model("resnet18", in_channels=1, num_classes=2, image_size=224, weights=path)
    assert torch.allclose(model.backbone.conv1.weight, reference.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(model.backbone.layer2[0].conv1.weight, reference.layer2[0].conv1.weight)


def test_training_is_seeded_and_learns_separable_data():
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 2
    x = (torch.rand(200, 1, 16, 16, generator=gen) * 0.3 + 0.6 * y.view(-1, 1, 1, 1)).clamp(0, 1)

    def run():
        torch.manual_seed(7)  # initial weights come from the global generator
        model = build_model("smallcnn", in_channels=1, num_classes=2, image_size=16)
        hist = train_model(model, x, y, epochs=3, batch_size=32, lr=0.05, seed=7, progress=False)
        return model, hist

    (m1, h1), (m2, h2) = run(), run()
    assert h1 == h2 and len(h1) == 3
    metrics = evaluate(m1, x, y)
    assert metrics["accuracy"] > 0.95 and metrics["auroc"] > 0.95
    assert metrics["confusion"][0][0] + metrics["confusion"][1][1] == round(metrics["accuracy"] * 200)
    assert not m1.training
