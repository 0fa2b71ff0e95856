"""Download MedMNIST files with MD5 verification: only when a user asks (``medadv data download``)."""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .. import paths
from .registry import get_info


def download(name: str, data_dir: str | os.PathLike | None = None, size: int = 28, overwrite: bool = False) -> Path:
    """Fetch MedMNIST set ``name`` (28 px, or the 64/128/224 px MedMNIST+ file) and verify its MD5.

    The file is written under a temporary name and renamed only after the MD5 matches, so an
    interrupted or corrupted download never sits where the loader would find it.
    """
    info = get_info(name)
    if info.kind != "medmnist":
        raise ValueError(f"{name!r} cannot be downloaded automatically; to obtain it: {info.obtain}")
    url, md5 = (info.url, info.md5) if size == 28 else (info.extra["urls"].get(size), info.extra["md5s"].get(size))
    if not url:
        raise ValueError(f"MedMNIST has no {size}-px file for {name}; sizes: 28, 64, 128, 224")
    stem = info.extra.get("base", info.name)  # derived tasks share their base set's file
    target = paths.data_dir(data_dir) / "medmnist" / (f"{stem}.npz" if size == 28 else f"{stem}_{size}.npz")
    if target.exists() and not overwrite:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, os.fdopen(fd, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name) as bar:
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        if digest.hexdigest() != md5:
            raise ValueError(f"downloaded {url} has MD5 {digest.hexdigest()}, expected {md5}; try again later")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return target
