import os
from pathlib import Path

import pytest

MIRROR = Path(os.environ.get("MEDADV_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch, request):
    """Unit tests get a private cache folder; mirror tests share one per session (decoding is slow)."""
    if request.node.get_closest_marker("mirror"):
        monkeypatch.setenv("MEDADV_CACHE_DIR", os.environ.get("MEDADV_CACHE_DIR") or str(tmp_path_factory.getbasetemp() / "mirror-cache"))
    else:
        monkeypatch.setenv("MEDADV_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def mirror(monkeypatch):
    """The offline data mirror; tests that need it are skipped with the reason when it is absent."""
    if not (MIRROR / "SHA256SUMS").is_file():
        pytest.skip(f"offline data mirror not found at {MIRROR}; set MEDADV_DATA_DIR")
    monkeypatch.setenv("MEDADV_DATA_DIR", str(MIRROR))
    return MIRROR
