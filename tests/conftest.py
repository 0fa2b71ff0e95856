import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

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


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One intra-op thread: on a loaded 2-core machine OpenMP workers spin against other jobs and
    tiny convolutions slow down a hundredfold; restored after each module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class _ToyDataset(SimpleNamespace):
    """The parts of medadv_lib.data.Dataset that the tables and figures read."""

    def __getitem__(self, split):
        return self.splits[split]


@pytest.fixture
def toy_dataset():
    """A factory of tiny seeded uint8 datasets with train/val/test splits (classes cycle 0, 1, ...)."""
    from medadv_lib.data import ImageSplit

    def make(n=40, classes=("a", "b", "c"), channels=1, size=8, seed=0):
        gen = torch.Generator().manual_seed(seed)

        def split(m):
            images = torch.randint(0, 256, (m, channels, size, size), generator=gen, dtype=torch.uint8)
            return ImageSplit(images, torch.arange(m) % len(classes))

        splits = {"train": split(n), "val": split(n // 4), "test": split(n // 2)}
        return _ToyDataset(name="toy", classes=classes, num_classes=len(classes), channels=channels, size=size,
                           info=SimpleNamespace(native_size=size), splits=splits, **splits)

    return make
