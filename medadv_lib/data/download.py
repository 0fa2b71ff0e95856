"""Download MedMNIST files with MD5 verification: only when a user asks (``medadv data download``)."""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .. import paths
from .checksums import ChecksumError, verify_file
from .registry import get_info

log = logging.getLogger(__name__)
SIZES = (28, 64, 128, 224)


class DownloadError(OSError):
    """The file could not be fetched (no network, server error); the message says what to do."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _remove_stale_parts(target: Path) -> int:
    """Delete ``<target>.<pid>.*.part`` files of interrupted downloads whose process is gone."""
    removed = 0
    pattern = re.compile(re.escape(target.name) + r"\.(\d+)\.[^.]+\.part$")
    for part in target.parent.glob(f"{target.name}.*.part"):
        match = pattern.match(part.name)
        if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
            try:
                part.unlink()
                removed += 1
            except OSError:
                pass
    return removed


def download(name: str, data_dir: str | os.PathLike | None = None, size: int = 28, overwrite: bool = False) -> Path:
    """Fetch MedMNIST set ``name`` (28 px, or the 64/128/224 px MedMNIST+ file) and verify its MD5.

    The file is written under a temporary name and renamed only after the MD5 matches, so an
    interrupted or corrupted download never sits where the loader would find it. A file already
    in place is verified first (official MD5 or a SHA256SUMS entry) and replaced when it fails.

    Raises
    ------
    ValueError
        For a set that cannot be downloaded or a size MedMNIST does not publish.
    DownloadError
        When the server cannot be reached (offline, proxy, HTTP error).
    ChecksumError
        When the downloaded bytes do not have the official MD5.
    """
    info = get_info(name)
    if info.kind != "medmnist":
        raise ValueError(f"{name!r} cannot be downloaded automatically; to obtain it: {info.obtain}")
    if isinstance(size, bool) or size not in SIZES:
        raise ValueError(f"MedMNIST publishes sizes {', '.join(map(str, SIZES))}; got size={size!r}")
    url, md5 = (info.url, info.md5) if size == 28 else (info.extra["urls"].get(size), info.extra["md5s"].get(size))
    if not url:
        raise ValueError(f"MedMNIST has no {size}-px file for {name}; sizes: {', '.join(map(str, SIZES))}")
    stem = info.extra.get("base", info.name)  # derived tasks share their base set's file
    root = paths.data_dir(data_dir)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"the data folder {root} is a regular file; point --data-dir or "
                                 f"${paths.DATA_ENV} at a folder")
    target = root / "medmnist" / (f"{stem}.npz" if size == 28 else f"{stem}_{size}.npz")
    if target.is_file() and not overwrite:
        check = verify_file(target, official_md5=md5, root=root)
        if check.ok:
            log.info("%s already present and verified (%s)", target, check.how)
            return target
        log.warning("%s is already present but fails its checksum (%s); downloading it again", target, check.how)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(target)
    # the pid in the name lets a later download tell an abandoned part from one being written
    fd, tmp = tempfile.mkstemp(prefix=f"{target.name}.{os.getpid()}.", suffix=".part", dir=target.parent)
    digest = hashlib.md5()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as resp:
                    total = int(resp.headers.get("Content-Length") or 0) or None
                    with tqdm(total=total, unit="B", unit_scale=True, desc=target.name) as bar:
                        for chunk in iter(lambda: resp.read(1 << 20), b""):
                            out.write(chunk)
                            digest.update(chunk)
                            bar.update(len(chunk))
            except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as err:
                reason = getattr(err, "reason", None) or err
                raise DownloadError(
                    f"cannot download {name} from {url.split('?')[0]}: {reason}. Check the network connection "
                    f"(or proxy settings) and run `medadv data download {name}` again; offline, copy the file "
                    f"to {target} (MD5 {md5})") from None
        if digest.hexdigest() != md5:
            raise ChecksumError(f"downloaded {url} has MD5 {digest.hexdigest()}, expected {md5}; the transfer was "
                                "damaged or the server sent another file: try again later")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return target
