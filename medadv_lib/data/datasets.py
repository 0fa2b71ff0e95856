"""Load a dataset by name at a square size, with train / val / test splits.

Decoding and resizing happen once per (file, size) and are cached as uint8 arrays; later calls
load the cached arrays in well under a second.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import paths
from ..cache import Cache
from .checksums import file_digest, verify_file
from .readers import DataFormatError, check_split_arrays, read_cifar_pickles, read_image_folder, read_medmnist_npz
from .registry import DatasetInfo, get_info, is_volume
from .subsets import stratified_split

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
LOADER_VERSION = "1"


class DatasetNotFoundError(FileNotFoundError):
    """No file of the requested dataset in the data folder."""


@dataclass
class ImageSplit:
    """One split: uint8 images (N, C, H, W) and int64 labels (N,), as torch tensors."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def float(self) -> torch.Tensor:
        """Images as float32 in [0, 1]."""
        return self.images.float().div_(255)

    def subset(self, indices) -> "ImageSplit":
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return ImageSplit(self.images[idx], self.labels[idx])

    def class_counts(self, num_classes: int) -> list[int]:
        return torch.bincount(self.labels, minlength=num_classes).tolist()


@dataclass
class Dataset:
    """A loaded dataset: its registry entry, the size it was resized to, its splits and source file."""

    info: DatasetInfo
    size: int
    splits: dict[str, ImageSplit]
    source: Path
    cache_key: str

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    @property
    def channels(self) -> int:
        return self.info.channels

    def __getitem__(self, split: str) -> ImageSplit:
        if split not in self.splits:
            raise KeyError(f"unknown split {split!r}; this dataset has {list(self.splits)}")
        return self.splits[split]

    @property
    def train(self) -> ImageSplit:
        return self.splits["train"]

    @property
    def val(self) -> ImageSplit:
        return self.splits["val"]

    @property
    def test(self) -> ImageSplit:
        return self.splits["test"]


def _sized_candidates(info: DatasetInfo, size: int | None) -> list[str]:
    if info.kind == "medmnist" and size in (64, 128, 224):
        # MedMNIST+ ships larger files; prefer one over upsampling the 28-px images
        sized = [c.replace(".npz", f"_{size}.npz") for c in info.candidates]
        return sized + list(info.candidates)
    return list(info.candidates)


def locate(name: str, data_dir: str | os.PathLike | None = None, size: int | None = None) -> Path:
    """Path of the file or folder holding dataset ``name``.

    Raises
    ------
    DatasetNotFoundError
        Listing every place looked at and how to obtain the data.
    """
    info = get_info(name)
    root = paths.data_dir(data_dir)
    where = "the argument data_dir" if data_dir is not None else (
        f"${paths.DATA_ENV}" if os.environ.get(paths.DATA_ENV) else f"the default (set ${paths.DATA_ENV} to change it)")
    if root.exists() and not root.is_dir():
        raise DatasetNotFoundError(f"the data folder {root} ({where}) is a regular file, not a folder; "
                                   f"point {paths.DATA_ENV} or --data-dir at the folder holding the datasets")
    tried = []
    for rel in _sized_candidates(info, size):
        path = root / rel
        tried.append(str(path))
        if path.exists():
            return path
    if not root.is_dir():
        where += ", and that folder does not exist"
    raise DatasetNotFoundError(
        f"dataset {name!r} not found in {root} ({where}). Looked for:\n  " + "\n  ".join(tried)
        + f"\nTo obtain it: {info.obtain}."
    )


def official_md5(info: DatasetInfo, path: Path) -> str | None:
    if info.kind == "medmnist":
        for size, md5 in info.extra.get("md5s", {}).items():
            if path.name.endswith(f"_{size}.npz"):
                return md5
        return info.md5
    return info.extra.get("official_md5", {}).get(path.name)


def verify(name: str, data_dir=None, size: int | None = None):
    """Locate dataset ``name`` and check its checksum; folders are reported as unverifiable (None)."""
    info = get_info(name)
    path = locate(name, data_dir, size)
    if path.is_dir():
        return path, None
    return path, verify_file(path, official_md5=official_md5(info, path), root=paths.data_dir(data_dir))


def _read(info: DatasetInfo, path: Path, size: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if is_volume(info):
        raise DataFormatError(
            f"{info.name} holds 3-D volumes ({path.name}: train_images of shape (N, {info.native_size}, "
            f"{info.native_size}, {info.native_size})); load_dataset reads 2-D images only. Read the file with "
            "numpy.load and add the channel axis, (N, 1, D, H, W): the attacks, penalties (HFC) and the torch "
            "density accept volumes with a 3-D model, but the 2-D data and model zoo do not.")
    if info.kind == "medmnist":
        # a derived task (label_map) checks the base set's labels, before they index the map
        label_map = info.extra.get("label_map")
        return read_medmnist_npz(path, len(label_map) if label_map is not None else info.num_classes, info.channels)
    if info.kind == "cifar10" and ("batches-py" in path.name or path.name == "cifar-10-python.tar.gz"):
        return read_cifar_pickles(path)
    decode_size = size if size <= info.native_size else None  # upsample later, in one place
    return read_image_folder(path, info.classes, info.channels, decode_size)


def resize_uint8(images: np.ndarray, size: int) -> np.ndarray:
    """Antialiased bilinear resize of uint8 (N, C, H, W) images to ``size`` x ``size``."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = np.empty(images.shape[:2] + (size, size), dtype=np.uint8)
    for start in range(0, len(images), 1024):  # bounded memory for large sets, written in place
        x = torch.from_numpy(images[start:start + 1024]).float()
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start:start + 1024] = x.round_().clamp_(0, 255).to(torch.uint8).numpy()
    return out


def check_size(size, native_size: int) -> int:
    """The square side to load: ``None`` means the native size; otherwise an int >= 8.

    Strict because ``int(28.9)`` silently loads 28 px and ``0`` or ``False`` used to mean "native".
    """
    if size is None:
        return native_size
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"size must be an integer number of pixels (or None for the native {native_size}), "
                        f"got {size!r} ({type(size).__name__})")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels (or None for the native {native_size}), got {size}")
    return int(size)


#: The last upsampled data set (CIFAR-10 at 128 px is 3 GB and takes seconds to compute), by key.
_LAST_UPSAMPLED: dict = {}


def load_dataset(name: str, size: int | None = None, *, data_dir: str | os.PathLike | None = None,
                 val_fraction: float = 0.1, seed: int = 0, cache: Cache | None = None,
                 verify_checksum: bool = True) -> Dataset:
    """Load dataset ``name`` resized to ``size`` x ``size`` with train / val / test splits.

    Parameters
    ----------
    name : str
        A name from :func:`medadv_lib.data.dataset_names` (e.g. ``"pneumoniamnist"``, ``"chestxray"``).
    size : int, optional
        Square side in pixels (an int >= 8); default (None) the dataset's native size.
    data_dir : path, optional
        Overrides ``MEDADV_DATA_DIR``.
    val_fraction, seed : float, int
        For sets without a validation split (chest X-ray, CIFAR-10): a seeded, stratified fraction
        of train becomes val.
    cache : Cache, optional
        Where decoded arrays are kept (default cache folder).
    verify_checksum : bool
        Refuse files whose checksum matches no known one (default True).

    Raises
    ------
    TypeError, ValueError
        For a ``size`` that is not an int >= 8.
    DatasetNotFoundError, ChecksumError
        For a missing or untrusted file.
    DataFormatError
        For a file that opens but holds wrong arrays (dtype, shape, labels outside the class
        range), naming the file and key.
    """
    info = get_info(name)
    size = check_size(size, info.native_size)
    path = locate(name, data_dir, size)
    if size > info.native_size and path == locate(name, data_dir, None):
        # Upsampling (no file of this size, e.g. MedMNIST+ 64 px) adds no information, so it is not
        # cached: it is redone from the cached native arrays on each load (CIFAR-10 at 128 px would be
        # a 4 GB cache entry, and writing it peaked near 20 GB of memory). Same pixels as before: the
        # readers always decoded at the native size and resized afterwards.
        native = load_dataset(name, None, data_dir=data_dir, val_fraction=val_fraction, seed=seed, cache=cache,
                              verify_checksum=verify_checksum)
        key = f"{native.cache_key}-upsampled-{size}px"
        if key not in _LAST_UPSAMPLED:  # one entry: a loop over models of one set reuses it
            splits = {s: ImageSplit(torch.from_numpy(resize_uint8(split.images.numpy(), size)), split.labels)
                      for s, split in native.splits.items()}
            _LAST_UPSAMPLED.clear()
            _LAST_UPSAMPLED[key] = Dataset(info, size, splits, native.source, key)
        return _LAST_UPSAMPLED[key]
    if path.is_dir():
        fingerprint = f"folder:{path}:{sum(1 for _ in path.rglob('*'))}"
    else:
        if verify_checksum:
            verify_file(path, official_md5=official_md5(info, path), root=paths.data_dir(data_dir)).raise_if_bad()
        fingerprint = file_digest(path)
    cache = cache or Cache()

    def compute():
        raw = _read(info, path, size)
        if "val" not in raw:
            x, y = raw["train"]
            keep, held = stratified_split(y, val_fraction, seed)
            raw["train"], raw["val"] = (x[keep], y[keep]), (x[held], y[held])
        label_map = info.extra.get("label_map")
        if label_map is not None:  # derived task, e.g. RetinaMNIST grades binarised as grade > 0
            raw = {s: (x, np.asarray(label_map, dtype=np.int64)[y]) for s, (x, y) in raw.items()}
        return {s: (resize_uint8(raw[s][0], size), raw[s][1]) for s in SPLITS}

    params = dict(name=info.name, size=size, source=fingerprint, val_fraction=val_fraction if not info.has_val else None,
                  seed=seed if not info.has_val else None)
    arrays, entry = cache.get_or_compute("dataset", params, compute, version=LOADER_VERSION,
                                         command=f"medadv data list  # or load_dataset({name!r}, {size})")
    for split, (x, y) in arrays.items():
        # cheap, and also covers entries cached before the readers checked their arrays
        check_split_arrays(f"{path} ({split} split)", x, y, num_classes=info.num_classes, channels=info.channels)
    splits = {s: ImageSplit(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)) for s, (x, y) in arrays.items()}
    return Dataset(info, size, splits, path, entry.key)
