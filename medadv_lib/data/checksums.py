"""Checksums: a data file is trusted only when its hash is a known one.

Known hashes are the official MD5 from the ``medmnist`` package's metadata, entries of any
``SHA256SUMS`` file between the file's folder and the data root, and the repository's own
``data/SHA256SUMS`` (the offline mirror's files, matched by name).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .. import paths

REPO_SUMS = paths.REPO_ROOT / "data" / "SHA256SUMS"


class ChecksumError(ValueError):
    """A data file's hash matches none of the known ones."""


@lru_cache(maxsize=64)
def _digest(path: str, algorithm: str, size: int, mtime_ns: int) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, memoised on (path, size, mtime) so repeated checks are free."""
    st = os.stat(path)
    return _digest(str(Path(path).resolve()), algorithm, st.st_size, st.st_mtime_ns)


def read_sums(sums_file: Path) -> dict[str, str]:
    """Parse a ``sha256sum``-style file into {relative path: hash}.

    Raises
    ------
    ChecksumError
        When the file is not text (a binary or mis-encoded SHA256SUMS would otherwise surface as a
        bare UnicodeDecodeError from deep inside the loader).
    """
    try:
        text = sums_file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ChecksumError(
            f"{sums_file} is not a text checksum list ({err.reason} at byte {err.start}); it must hold lines "
            "'<sha256>  <file name>' as written by `sha256sum FILE > SHA256SUMS`: regenerate or remove it") from None
    entries = {}
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and len(parts[0]) == 64:
            entries[os.path.normpath(parts[1].lstrip("*"))] = parts[0].lower()
    return entries


@dataclass
class Verification:
    path: Path
    ok: bool
    how: str
    actual_sha256: str
    expected: list[str] = field(default_factory=list)

    def raise_if_bad(self) -> None:
        if not self.ok:
            expected = ", ".join(self.expected) or "none known"
            raise ChecksumError(
                f"checksum mismatch for {self.path}: expected {expected}, got sha256 {self.actual_sha256}. "
                "The file is corrupt, truncated or not the published one: download it again "
                "(`medadv data download NAME` for MedMNIST), or, if you trust this copy, add the line "
                f"'{self.actual_sha256}  {self.path.name}' to a SHA256SUMS file in its folder."
            )


def known_sha256(path: Path, root: Path | None = None) -> list[str]:
    """SHA-256 values listed for ``path`` in SHA256SUMS files from its folder up to ``root``."""
    path = path.resolve()
    folders = [path.parent]
    if root is not None and root.resolve() in path.parents:
        while folders[-1] != root.resolve():
            folders.append(folders[-1].parent)
    found = []
    for folder in folders:
        sums = folder / "SHA256SUMS"
        if sums.is_file():
            entry = read_sums(sums).get(os.path.normpath(os.path.relpath(path, folder)))
            if entry:
                found.append(entry)
    if REPO_SUMS.is_file():
        found += [h for rel, h in read_sums(REPO_SUMS).items() if Path(rel).name == path.name]
    return list(dict.fromkeys(found))


def verify_file(path: str | os.PathLike, *, official_md5: str | None = None, root: Path | None = None) -> Verification:
    """Check ``path`` against its official MD5 and any known SHA-256 entry."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    actual = file_digest(path)
    expected = known_sha256(path, root)
    if actual in expected:
        return Verification(path, True, "sha256 (SHA256SUMS)", actual, expected)
    shown = [f"sha256 {h}" for h in expected]
    if official_md5:
        if file_digest(path, "md5") == official_md5:
            return Verification(path, True, "md5 (official)", actual, shown)
        shown.append(f"md5 {official_md5} (official)")
    return Verification(path, False, "mismatch" if shown else "no known checksum", actual, shown)
