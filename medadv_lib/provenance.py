"""Where a chapter's numbers came from: versions, git commit, device, profile and cache keys.

The last cell of every chapter calls :func:`show` (or :func:`table`) so that a rendered page says
which code, which configuration and which cached stages produced it.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any

import pandas as pd

from . import __version__, paths

#: Distributions whose versions every provenance record lists (missing ones are reported as such).
PACKAGES = ("torch", "torchvision", "numpy", "scikit-learn", "scipy", "pandas", "matplotlib", "medmnist",
            "papermill", "jupyter-book", "myst-nb")


def package_versions(packages: Iterable[str] = PACKAGES) -> dict[str, str]:
    """Installed version of each distribution, or ``"not installed"``."""
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit(root=None) -> str:
    """Short commit of the checkout, with ``+dirty`` when tracked files differ; ``"unknown"`` outside git."""
    root = root or paths.REPO_ROOT
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "") if sha else "unknown"


def device_description(device: str | None = None) -> str:
    """The device a chapter ran on, with the GPU's name when it is a CUDA device."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return device or "unknown"
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"{device} ({torch.get_num_threads()} CPU threads)"


def profile_digest(profile: Any) -> str:
    """A short hash of a profile's complete settings: two runs with equal digests used equal settings."""
    settings = profile.to_dict() if hasattr(profile, "to_dict") else profile
    blob = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def collect(profile: Any = None, *, device: str | None = None, cache_keys: Iterable[str] = (),
            extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A provenance record (a flat dict of strings).

    Parameters
    ----------
    profile : medadv_lib.config.Profile, optional
        The configuration the chapter ran with (its name and digest are recorded).
    device : str, optional
        The device the chapter's computations used (default: CUDA if available, else CPU).
    cache_keys : iterable of str
        Keys of the cached stages the chapter loaded or computed (e.g. ``TrainedModel.cache.key``).
    extra : mapping, optional
        Further entries, e.g. the chapter's parameters.
    """
    record: dict[str, Any] = {
        "medadv": __version__,
        "git commit": git_commit(),
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.release()} ({platform.machine()})",
    }
    record.update(package_versions())
    if profile is not None:
        name = getattr(profile, "name", str(profile))
        record["profile"] = f"{name} (settings digest {profile_digest(profile)})"
    record["device"] = device_description(device)
    record["data folder"] = str(paths.data_dir())
    record["cache folder"] = str(paths.cache_dir())
    keys = list(dict.fromkeys(cache_keys))
    record["cache keys"] = ", ".join(keys) if keys else "none"
    for key, value in (extra or {}).items():
        record[str(key)] = value if isinstance(value, str) else json.dumps(value, default=str)
    record["run at (UTC)"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return record


VERIFIED_BY = {"sha256 (SHA256SUMS)": "SHA256SUMS", "md5 (official)": "official MD5"}


def data_provenance(names: Iterable[str], data_dir=None) -> pd.DataFrame:
    """Where each data set's file is and how it was verified, computed from the registry and checksums.

    One row per name: the file's name, its size in MB, its SHA-256 prefix, how
    its checksum was verified (``official MD5`` or ``SHA256SUMS``), and whether its MD5 ``matches``
    or ``differs`` from the official file's (``none known`` where the registry has no official
    checksum for this kind of copy). Missing files are reported as such, never raised.
    """
    from .data import get_info, verify
    from .data.checksums import file_digest
    from .data.datasets import DatasetNotFoundError, official_md5

    rows = []
    for name in names:
        info = get_info(name)
        row = {"dataset": info.name, "file": "missing", "MB": float("nan"), "sha256": "-", "verified by": "-",
               "official MD5": "-"}
        try:
            path, check = verify(info.name, data_dir)
        except DatasetNotFoundError:
            rows.append(row)
            continue
        row["file"] = path.name
        if path.is_file():
            row["MB"] = path.stat().st_size / 1e6
            row["sha256"] = file_digest(path)[:10] + "\u2026"
            row["verified by"] = VERIFIED_BY.get(check.how, check.how) if check.ok else "CHECKSUM MISMATCH"
            md5 = official_md5(info, path)
            if md5 is None:
                row["official MD5"] = "none known"
            else:
                row["official MD5"] = "matches" if file_digest(path, "md5") == md5 else "differs"
        else:
            row["verified by"] = "folder: not checksummed"
        rows.append(row)
    return pd.DataFrame(rows)


def settings_table(profile: Any, **parameters: Any) -> pd.DataFrame:
    """The configuration a chapter runs with: its parameters, then every setting of its profile.

    Columns ``source`` (``parameter`` or ``profile <name>``), ``setting`` and ``value``.
    """
    rows = [("parameter", key, value) for key, value in parameters.items()]
    settings = profile.to_dict() if hasattr(profile, "to_dict") else dict(profile)
    source = f"profile {settings.get('name', '')}".strip()
    for key, value in settings.items():
        if key == "name":
            continue
        if isinstance(value, Mapping):
            rows += [(source, f"{key}.{sub}", v) for sub, v in value.items()]
        else:
            rows.append((source, key, value))
    return pd.DataFrame([(s, k, "None" if v is None else str(v)) for s, k, v in rows],
                        columns=["source", "setting", "value"])


def table(record: Mapping[str, Any] | None = None, **kwargs) -> pd.DataFrame:
    """The record as a two-column table (``item``, ``value``); builds one with :func:`collect` if not given."""
    record = record if record is not None else collect(**kwargs)
    return pd.DataFrame({"item": list(record), "value": [str(v) for v in record.values()]})


def show(profile: Any = None, **kwargs) -> None:
    """Display the provenance table of a chapter (its last cell); outside a notebook, print it.

    Returns None on purpose, so that the table is the cell's only output.
    """
    frame = table(collect(profile, **kwargs))
    try:
        from IPython import get_ipython
        from IPython.display import display
        if get_ipython() is not None:
            from .plotting import table as styled

            display(styled(frame, caption="Provenance of this page"))
            return
    except ImportError:  # pragma: no cover
        pass
    sys.stdout.write(frame.to_string(index=False) + "\n")
