"""Readers that turn files on disk into uint8 arrays (N, C, H, W) and int64 labels per split.

Image-folder sets are read from a folder, a ``.tar.gz`` or a ``.zip`` of one, as users download
them; images are decoded with Pillow and resized once to the requested size.
"""
from __future__ import annotations

import io
import pickle
import tarfile
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

SPLIT_ALIASES = {"train": "train", "test": "test", "val": "val", "valid": "val", "validation": "val"}
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp"}


def read_medmnist_npz(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Splits of a MedMNIST ``.npz``; labels may be stored as (N,) or (N, 1)."""
    try:
        with np.load(path) as npz:
            out = {}
            for split in ("train", "val", "test"):
                images, labels = npz[f"{split}_images"], npz[f"{split}_labels"]
                if labels.ndim == 2 and labels.shape[1] > 1:
                    raise ValueError(f"{path} has multi-label targets (shape {labels.shape}); only single-label sets are supported")
                labels = labels.reshape(-1).astype(np.int64)
                images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
                out[split] = (np.ascontiguousarray(images, dtype=np.uint8), labels)
            return out
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a readable MedMNIST file ({err}); download it again.") from err


def _decode(data: bytes, channels: int, size: int | None) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        img = img.convert("L" if channels == 1 else "RGB")
        if size is not None and img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR, reducing_gap=None)
        arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def _iter_files(source: Path):
    """Yield (relative path parts, bytes reader) for every image below a folder or inside an archive."""
    if source.is_dir():
        for file in sorted(source.rglob("*")):
            if file.suffix.lower() in IMAGE_SUFFIXES and file.is_file():
                yield file.relative_to(source).parts, file.read_bytes
    elif source.name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(source) as tar:
            for member in tar:
                if member.isfile() and Path(member.name).suffix.lower() in IMAGE_SUFFIXES:
                    data = tar.extractfile(member).read()
                    yield Path(member.name).parts, (lambda d=data: d)
    elif source.suffix == ".zip":
        with zipfile.ZipFile(source) as zf:
            for name in sorted(zf.namelist()):
                if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                    yield Path(name).parts, (lambda n=name: zf.read(n))
    else:
        raise ValueError(f"{source} is neither a folder nor a .tar.gz/.zip archive")


def read_image_folder(source: Path, classes: tuple[str, ...], channels: int, size: int | None,
                      class_aliases: dict[str, str] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read ``<...>/<split>/<class>/<image>`` from a folder or archive.

    Parameters
    ----------
    source : Path
        Folder, ``.tar.gz`` or ``.zip``. Any prefix before the split folder is ignored, so the
        Kaggle zip's nested ``chest_xray/chest_xray/...`` and macOS ``__MACOSX`` copies are handled.
    classes : tuple of str
        Class folder names in label order (matched case-insensitively).
    size : int, optional
        Resize every image to ``size`` x ``size`` while decoding.
    """
    index = {c.lower(): i for i, c in enumerate(classes)}
    index.update({k.lower(): index[v.lower()] for k, v in (class_aliases or {}).items()})
    images, labels = defaultdict(list), defaultdict(list)
    seen = defaultdict(set)
    try:
        for parts, read in _iter_files(source):
            if any(p.startswith(".") or p == "__MACOSX" for p in parts):
                continue
            if len(parts) < 3:
                continue
            split, cls, fname = SPLIT_ALIASES.get(parts[-3].lower()), parts[-2].lower(), parts[-1]
            if split is None or cls not in index or fname in seen[(split, cls)]:
                continue  # the Kaggle zip holds two copies of the tree: keep the first
            seen[(split, cls)].add(fname)
            images[split].append(_decode(read(), channels, size))
            labels[split].append(index[cls])
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as err:
        raise ValueError(f"cannot read {source}: {err}. The archive is damaged: obtain it again.") from err
    if "train" not in images or "test" not in images:
        raise ValueError(
            f"{source} has no <split>/<class>/ image layout with train and test splits "
            f"(expected class folders {list(classes)} below train/ and test/); found splits {sorted(images)}."
        )
    return {s: (np.stack(images[s]), np.asarray(labels[s], dtype=np.int64)) for s in images}


def read_cifar_pickles(source: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read the official CIFAR-10 python pickles from ``cifar-10-batches-py/`` or its ``.tar.gz``."""
    batches = {}
    if source.is_dir():
        for f in source.iterdir():
            if f.name.startswith(("data_batch", "test_batch")):
                batches[f.name] = f.read_bytes()
    else:
        with tarfile.open(source) as tar:
            for m in tar:
                name = Path(m.name).name
                if m.isfile() and name.startswith(("data_batch", "test_batch")):
                    batches[name] = tar.extractfile(m).read()
    out = {}
    for split, prefix in (("train", "data_batch"), ("test", "test_batch")):
        chunks = [pickle.loads(batches[k], encoding="bytes") for k in sorted(batches) if k.startswith(prefix)]
        if not chunks:
            raise ValueError(f"{source} holds no {prefix}* files: not the CIFAR-10 python version")
        x = np.concatenate([c[b"data"] for c in chunks]).reshape(-1, 3, 32, 32).astype(np.uint8)
        y = np.concatenate([np.asarray(c[b"labels"]) for c in chunks]).astype(np.int64)
        out[split] = (x, y)
    return out
