"""Weight files: hash checks, and `medadv weights download` on local fake files (never the network)."""
import hashlib
from urllib.error import URLError

import pytest

from medadv_lib import cli
from medadv_lib import weights as W


def _fake_torchvision_file(folder, arch="resnet18", payload=b"not really a state dict", good=True):
    """A file named as torchvision names its files: ``<arch>-<first 8 hex of sha256>.pth``."""
    digest = hashlib.sha256(payload).hexdigest()
    prefix = digest[:8] if good else ("0" if digest[0] != "0" else "1") + digest[1:8]
    path = folder / f"{arch}-{prefix}.pth"
    path.write_bytes(payload)
    return path, digest


def test_hash_prefix_is_read_from_the_name_as_torch_hub_does():
    assert W.hash_prefix_from_name("resnet18-f37072fd.pth") == "f37072fd"
    assert W.hash_prefix_from_name("/x/vgg16-397923af.pth") == "397923af"
    with pytest.raises(ValueError, match="no hash prefix"):
        W.hash_prefix_from_name("resnet18.pth")


def test_verify_hash_prefix_accepts_the_right_file_and_refuses_a_changed_one(tmp_path):
    path, digest = _fake_torchvision_file(tmp_path)
    assert W.verify_hash_prefix(path) == path
    assert W.sha256_file(path) == digest
    path.write_bytes(b"tampered")
    with pytest.raises(W.WeightsChecksumError, match="does not start with the published prefix"):
        W.verify_hash_prefix(path)
    with pytest.raises(W.WeightsChecksumError, match="expected"):
        W.verify_sha256(path, digest)


def test_published_urls_come_from_torchvision_offline():
    assert W.torchvision_weights_url("resnet18") == "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    assert W.hash_prefix_from_name(W.torchvision_weights_url("resnet50"))
    assert W.hash_prefix_from_name(W.torchvision_weights_url("vgg16"))
    with pytest.raises(ValueError, match="choose one of"):
        W.torchvision_weights_url("alexnet")
    with pytest.raises(ValueError, match="no weights variant"):
        W.torchvision_weights_url("resnet18", "IMAGENET1K_V9")


def test_download_verifies_and_saves(tmp_path):
    src, _ = _fake_torchvision_file(tmp_path)
    out = tmp_path / "weights"
    saved = W.download_torchvision_weights("resnet18", url=src.as_uri(), directory=out, progress=False)
    assert saved == out / src.name and saved.read_bytes() == src.read_bytes()
    # a second call reuses the verified file
    src.unlink()
    assert W.download_torchvision_weights("resnet18", url=src.as_uri(), directory=out, progress=False) == saved


def test_download_with_a_wrong_hash_leaves_nothing_behind(tmp_path):
    src, _ = _fake_torchvision_file(tmp_path, good=False)
    out = tmp_path / "weights"
    with pytest.raises(W.WeightsChecksumError):
        W.download_torchvision_weights("resnet18", url=src.as_uri(), directory=out, progress=False)
    assert list(out.iterdir()) == []


def test_offline_download_fails_with_a_clear_message(tmp_path, monkeypatch, capsys):
    def offline(url, dst, hash_prefix=None, progress=True):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("torch.hub.download_url_to_file", offline)
    with pytest.raises(W.WeightsDownloadError, match="works offline"):
        W.download_torchvision_weights("resnet50", directory=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []
    assert cli.main(["weights", "download", "vgg16", "--dir", str(tmp_path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "could not download https://download.pytorch.org/models/vgg16-" in err and "medadv weights download vgg16" in err


def test_cli_download_prints_the_path_to_use(tmp_path, monkeypatch, capsys):
    src, _ = _fake_torchvision_file(tmp_path, arch="resnet18")
    monkeypatch.setattr(W, "torchvision_weights_url", lambda arch, variant=W.DEFAULT_VARIANT: src.as_uri())
    assert cli.main(["weights", "download", "resnet18", "--dir", str(tmp_path / "w"), "--quiet"]) == 0
    assert f"weights={str(tmp_path / 'w' / src.name)!r}" in capsys.readouterr().out


def test_resolve_imagenet_per_architecture(tmp_path):
    assert W.resolve_imagenet("resnet18", None, tmp_path) == (None, "")
    assert W.resolve_imagenet("resnet18", "/my/file.pth", tmp_path) == ("/my/file.pth", "")
    assert W.resolve_imagenet("efficientnet_lite0", "imagenet", tmp_path)[0] == "imagenet"
    weights, note = W.resolve_imagenet("resnet50", "imagenet", tmp_path)
    assert weights is None and "trained from scratch" in note and "medadv weights download resnet50" in note
    with pytest.raises(ValueError, match="smallcnn has no ImageNet weights"):
        W.resolve_imagenet("smallcnn", "imagenet", tmp_path)


def test_resolve_imagenet_uses_a_present_file_only_if_it_verifies(tmp_path):
    name = W.torchvision_weights_url("resnet18").rsplit("/", 1)[-1]
    (tmp_path / name).write_bytes(b"a damaged download")
    with pytest.raises(W.WeightsChecksumError, match="published prefix"):
        W.resolve_imagenet("resnet18", "imagenet", tmp_path)


def test_profiles_refuse_imagenet_weights_for_the_small_cnn():
    from medadv_lib.config import ConfigError, get_profile

    with pytest.raises(ConfigError, match="smallcnn has none"):
        get_profile("smoke", {"train.weights": "imagenet"})
    assert get_profile("paper").train.weights == "imagenet"
