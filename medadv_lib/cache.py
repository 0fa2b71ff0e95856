"""Content-addressed cache of expensive stages (trained models, adversarial sets, features).

A stage's key hashes its name, its code version, the slice of configuration it depends on and
the keys of the stages it consumes, so changing any of them computes a new entry. Writes go to a
temporary folder that is renamed into place only once complete: a run killed half-way leaves a
``*.tmp-*`` folder that is never read, never a half-written entry that is later trusted. The
temporary folder's name carries the host and pid of its writer, so such debris is removed (on the
first open of a cache in a process, or by ``medadv cache clean``) once no live process owns it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import paths

log = logging.getLogger(__name__)

PAYLOAD = "payload.pt"
META = "meta.json"


class CacheMissError(RuntimeError):
    """Raised on a cache miss when computing is disabled (``MEDADV_ALLOW_COMPUTE=0``)."""


class CacheLocationError(NotADirectoryError):
    """The cache folder is not usable as a folder (e.g. it is a regular file)."""


# <key>.tmp-<host>-<pid>-<mkdtemp suffix>; mkdtemp suffixes never contain "-"
_TMP = re.compile(r"\.tmp-(?P<host>.+)-(?P<pid>\d+)-[^-]+$")
LEGACY_TMP_AGE_S = 24 * 3600  # ``.tmp-`` folders without an owner (older code): removed after a day
_cleaned_roots: set[Path] = set()


def _host() -> str:
    # "-" is the separator of the temporary name; keep the host part free of it
    return socket.gethostname().replace("-", "_") or "localhost"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # the pid exists but belongs to another user
        return True
    except OverflowError:
        return False
    return True


def _tree_size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


@dataclass(frozen=True)
class CleanReport:
    """What :meth:`Cache.clean_debris` removed (and kept, because a live or foreign process owns it)."""

    removed: tuple[Path, ...]
    bytes_removed: int
    kept: tuple[Path, ...]

    def __str__(self) -> str:
        text = f"removed {len(self.removed)} interrupted write(s), {self.bytes_removed / 2**20:.1f} MiB"
        return text + (f"; kept {len(self.kept)} still owned by a running process" if self.kept else "")


def _canonical(value: Any) -> Any:
    """JSON-able, order-independent form of a configuration slice."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float):
        return float(repr(value)) if value == value else "nan"
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict
        return _canonical(asdict(value))
    raise TypeError(f"cannot hash configuration value of type {type(value).__name__}: {value!r}")


def stage_key(stage: str, params: Mapping[str, Any], *, version: str, upstream: Sequence[str] = ()) -> str:
    """Key of a stage: ``<stage>-<sha256 prefix>`` of its name, version, parameters and upstream keys."""
    blob = json.dumps({"stage": stage, "version": version, "params": _canonical(params),
                       "upstream": list(upstream)}, sort_keys=True)
    return f"{stage}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


@dataclass(frozen=True)
class CacheEntry:
    key: str
    path: Path
    hit: bool


class Cache:
    """A folder of completed stages, each ``<root>/<key>/{payload.pt, meta.json}``.

    Parameters
    ----------
    root : path, optional
        Defaults to :func:`medadv_lib.paths.cache_dir` (``MEDADV_CACHE_DIR`` or ``<repo>/.cache``).
    """

    def __init__(self, root: str | os.PathLike | None = None, *, clean: bool = True):
        self.root = paths.cache_dir(root)
        if self.root.exists() and not self.root.is_dir():
            raise CacheLocationError(
                f"the cache folder {self.root} is a regular file, not a folder; remove or rename it, or point "
                f"${paths.CACHE_ENV} at a folder")
        if clean and self.root not in _cleaned_roots:  # once per process and folder: a listdir is cheap
            _cleaned_roots.add(self.root)
            try:
                report = self.clean_debris()
            except OSError as err:  # cleaning is a courtesy: an unreadable folder fails later, with its own error
                log.warning("cache %s: could not look for interrupted writes (%s)", self.root, err)
            else:
                if report.removed:
                    log.info("cache %s: %s", self.root, report)

    def clean_debris(self, legacy_age_s: float = LEGACY_TMP_AGE_S) -> CleanReport:
        """Remove the ``*.tmp-*`` folders of interrupted writes that no live process owns.

        A folder named by this host is removed when its pid is not running; one from another host
        (a shared file system) or without an owner in its name is removed only when it has not
        changed for ``legacy_age_s`` seconds, since its writer cannot be checked.
        """
        removed, kept, size = [], [], 0
        if not self.root.is_dir():
            return CleanReport((), 0, ())
        host, now = _host(), time.time()
        for path in self.root.iterdir():
            if ".tmp-" not in path.name or not path.is_dir():
                continue
            match = _TMP.search(path.name)
            if match and match["host"] == host:
                stale = int(match["pid"]) != os.getpid() and not _pid_alive(int(match["pid"]))
            else:
                try:
                    stale = now - path.stat().st_mtime > legacy_age_s
                except OSError:
                    continue
            if not stale:
                kept.append(path)
                continue
            bytes_ = _tree_size(path)
            shutil.rmtree(path, ignore_errors=True)
            if not path.exists():
                removed.append(path)
                size += bytes_
        return CleanReport(tuple(removed), size, tuple(kept))

    def path(self, key: str) -> Path:
        return self.root / key

    def contains(self, key: str) -> bool:
        # meta.json is written last inside the temporary folder, so its presence marks completeness
        return (self.path(key) / META).is_file()

    def load(self, key: str) -> Any:
        return torch.load(self.path(key) / PAYLOAD, map_location="cpu", weights_only=False)

    def meta(self, key: str) -> dict:
        return json.loads((self.path(key) / META).read_text())

    def store(self, key: str, value: Any, meta: Mapping[str, Any] | None = None) -> Path:
        """Atomically store ``value`` (anything ``torch.save`` accepts) under ``key``."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.path(key)
        tmp = Path(tempfile.mkdtemp(prefix=f"{key}.tmp-{_host()}-{os.getpid()}-", dir=self.root))
        try:
            torch.save(value, tmp / PAYLOAD)
            (tmp / META).write_text(json.dumps({"key": key, "created": time.time(), **(meta or {})}, indent=1, default=str))
            if final.exists() and not self.contains(key):
                shutil.rmtree(final, ignore_errors=True)  # debris of a crashed run, never trusted
            try:
                os.replace(tmp, final)
            except OSError:
                if not self.contains(key):  # a complete entry from a concurrent run is as good as ours
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final

    def get_or_compute(self, stage: str, params: Mapping[str, Any], compute: Callable[[], Any], *,
                       version: str, upstream: Sequence[str] = (), command: str | None = None,
                       meta: Mapping[str, Any] | None = None) -> tuple[Any, CacheEntry]:
        """Load the stage if cached, else compute, store and return it.

        Parameters
        ----------
        stage : str
            Stage name, e.g. ``"model"`` or ``"adversarial"``.
        params : mapping
            The configuration slice the result depends on.
        compute : callable
            Produces the value on a miss.
        version : str
            Bump when the stage's code changes its result.
        upstream : sequence of str
            Keys of the cached stages this one consumes.
        command : str, optional
            Shell command that fills this entry, quoted in the error when computing is disabled.
        """
        key = stage_key(stage, params, version=version, upstream=upstream)
        if self.contains(key):
            try:
                value = self.load(key)
                log.info("cache hit %s", key)
                return value, CacheEntry(key, self.path(key), True)
            except Exception as err:  # a corrupt entry is recomputed, never trusted
                log.warning("cache entry %s unreadable (%s); recomputing", key, err)
                shutil.rmtree(self.path(key), ignore_errors=True)
        if not paths.compute_allowed():
            hint = f" Run `{command}` to fill it," if command else ""
            raise CacheMissError(
                f"cache miss for stage {stage!r} (key {key}) in {self.root} and computing is disabled "
                f"by {paths.ALLOW_COMPUTE_ENV}=0.{hint} or unset {paths.ALLOW_COMPUTE_ENV}."
            )
        value = compute()
        self.store(key, value, {"stage": stage, "version": version, "params": _canonical(params),
                                "upstream": list(upstream), **(meta or {})})
        return value, CacheEntry(key, self.path(key), False)
