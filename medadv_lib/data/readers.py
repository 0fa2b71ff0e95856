"""Readers that turn files on disk into uint8 arrays (N, C, H, W) and int64 labels per split.

Image-folder sets are read from a folder, a ``.tar.gz`` or a ``.zip`` of one, as users download
them; images are decoded with Pillow and resized once to the requested size.
"""
from __future__ import annotations

import io
import pickle
import tarfile
import zipfile
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

SPLIT_ALIASES = {"train": "train", "test": "test", "val": "val", "valid": "val", "validation": "val"}
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp"}


class DataFormatError(ValueError):
    """A data file that opens but holds the wrong thing (dtype, shape, label range)."""


def _range(a: np.ndarray) -> str:
    return f"[{a.min()}, {a.max()}]" if a.size else "no values"


def check_split_arrays(where: str, images: np.ndarray, labels: np.ndarray, *, num_classes: int,
                       channels: int | None = None) -> None:
    """Reject arrays that would load but train on the wrong thing.

    ``images`` must be uint8 (N, C, H, W) (a float array would be cast, truncating [0, 1] images to
    0 and 1), ``labels`` integer (N,) within ``0..num_classes - 1`` (an out-of-range label is
    dropped by ``bincount(minlength=K)`` counts and crashes training much later with IndexError).

    Parameters
    ----------
    where : str
        Names the file and key(s) in the message, e.g. ``"x.npz: train_images / train_labels"``.
    """
    if images.dtype != np.uint8:
        raise DataFormatError(
            f"{where}: images have dtype {images.dtype} (values in {_range(images)}); expected uint8 in 0..255. "
            "Convert them with (x * 255).round().astype(np.uint8) if they are floats in [0, 1], or obtain the file again.")
    if images.ndim != 4 or (channels is not None and images.shape[1] != channels):
        want = f"(N, {channels}, H, W)" if channels is not None else "(N, C, H, W)"
        raise DataFormatError(f"{where}: images have shape {images.shape}; expected {want}")
    if len(images) == 0:
        raise DataFormatError(f"{where}: the split is empty (0 images); obtain the complete file again")
    if labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer):
        raise DataFormatError(f"{where}: labels have dtype {labels.dtype}; expected integer class indices")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataFormatError(f"{where}: labels have shape {labels.shape} for {len(images)} images; "
                              f"expected ({len(images)},) or ({len(images)}, 1)")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        bad = int(((labels < 0) | (labels >= num_classes)).sum())
        raise DataFormatError(f"{where}: {bad} label(s) outside 0..{num_classes - 1} (found range [{lo}, {hi}]) for "
                              f"a {num_classes}-class dataset; the file is not this dataset or is damaged: obtain it again")


def read_medmnist_npz(path: Path, num_classes: int | None = None,
                      channels: int | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Splits of a MedMNIST ``.npz``; labels may be stored as (N,) or (N, 1).

    With ``num_classes`` (and ``channels``) given, every split is checked by
    :func:`check_split_arrays` and a wrong array raises :class:`DataFormatError` naming the key.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            out = {}
            for split in ("train", "val", "test"):
                keys = f"{split}_images", f"{split}_labels"
                missing = [k for k in keys if k not in npz.files]
                if missing:
                    raise DataFormatError(f"{path} has no {' / '.join(missing)} (keys found: {sorted(npz.files)}); "
                                          "it is not a MedMNIST file: download it again")
                images, labels = npz[keys[0]], npz[keys[1]]
                where = f"{path}: {keys[0]} / {keys[1]}"
                if labels.ndim == 2 and labels.shape[1] > 1:
                    raise DataFormatError(f"{where}: multi-label targets (shape {labels.shape}); only single-label "
                                          "sets are supported")
                if images.ndim not in (3, 4):
                    raise DataFormatError(f"{where}: images have shape {images.shape}; expected (N, H, W) or (N, H, W, C)")
                labels = labels.reshape(-1) if labels.ndim == 2 else labels
                images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
                if num_classes is not None:
                    check_split_arrays(where, images, labels, num_classes=num_classes, channels=channels)
                out[split] = (np.ascontiguousarray(images, dtype=np.uint8), labels.astype(np.int64))
            return out
    except DataFormatError:
        raise
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise DataFormatError(f"{path} is not a readable MedMNIST file ({err}); download it again.") from err


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
        raise DataFormatError(f"{source} is neither a folder nor a .tar.gz/.zip archive")


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
            member = "/".join(parts)
            try:
                images[split].append(_decode(read(), channels, size))
            except (OSError, EOFError, ValueError, zipfile.BadZipFile, tarfile.TarError, zlib.error) as err:
                # PIL's own message names an anonymous BytesIO: say which member it was
                raise DataFormatError(f"cannot read the image {member!r} in {source}: {err}. The file or archive is "
                                      "damaged: obtain it again (or remove that image from the folder).") from err
            labels[split].append(index[cls])
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error) as err:
        raise DataFormatError(f"cannot read {source}: {err}. The archive is damaged: obtain it again.") from err
    if "train" not in images or "test" not in images:
        raise DataFormatError(
            f"{source} has no <split>/<class>/ image layout with train and test splits "
            f"(expected class folders {list(classes)} below train/ and test/); found splits {sorted(images)}."
        )
    return {s: (np.stack(images[s]), np.asarray(labels[s], dtype=np.int64)) for s in images}


def read_cifar_pickles(source: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read the official CIFAR-10 python pickles from ``cifar-10-batches-py/`` or its ``.tar.gz``."""
    batches = {}
    try:
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
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise DataFormatError(f"cannot read {source}: {err}. The archive is damaged: obtain it again.") from err
    out = {}
    for split, prefix in (("train", "data_batch"), ("test", "test_batch")):
        names = [k for k in sorted(batches) if k.startswith(prefix)]
        if not names:
            raise DataFormatError(f"{source} holds no {prefix}* files: not the CIFAR-10 python version")
        xs, ys = [], []
        for k in names:
            try:
                chunk = pickle.loads(batches[k], encoding="bytes")
                xs.append(np.asarray(chunk[b"data"]).reshape(-1, 3, 32, 32))
                ys.append(np.asarray(chunk[b"labels"]))
            except Exception as err:  # unpickling damaged bytes can raise almost anything
                raise DataFormatError(f"cannot read the CIFAR-10 batch {k!r} in {source} ({type(err).__name__}: {err}); "
                                      "obtain the archive again") from err
        x, y = np.concatenate(xs), np.concatenate(ys)
        check_split_arrays(f"{source}: {prefix}* data / labels", x, y, num_classes=10, channels=3)
        out[split] = (x, y.astype(np.int64))
    return out
