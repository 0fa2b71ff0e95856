"""Registry of datasets: name -> where its files may lie, classes, channels, how to obtain it.

MedMNIST names, classes, URLs and MD5s come from the ``medmnist`` package's metadata rather than
being copied here, so new MedMNIST releases are picked up by upgrading that package.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache


@dataclass(frozen=True)
class DatasetInfo:
    """What the loader needs to know about one dataset.

    Attributes
    ----------
    name : str
    kind : {"medmnist", "chestxray", "cifar10"}
        MedMNIST 3-D sets are ``"medmnist"`` with ``extra["ndim"] == 3`` (:func:`is_volume`).
    classes : tuple of str
    channels : int
        Channels of the loaded images (1 or 3).
    native_size : int
    candidates : tuple of str
        Paths relative to the data folder that may hold it, in order of preference.
    obtain : str
        How to get it, quoted in the missing-file error.
    has_val : bool
        Whether the files carry a validation split (else one is carved from train).
    md5 : str or None
        Official MD5 of the default-size file.
    url : str or None
    domain : {"medical", "natural"}
        What the images show. Chapters and figures contrast the medical sets with the natural
        one (the HFC work's claim is that medical images are *more* vulnerable), so this is a
        property of the data set, not a name list typed in each caller.
    """

    name: str
    kind: str
    classes: tuple[str, ...]
    channels: int
    native_size: int
    candidates: tuple[str, ...]
    obtain: str
    has_val: bool = True
    md5: str | None = None
    url: str | None = None
    task: str = "multi-class"
    domain: str = "medical"
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


CHESTXRAY_CLASSES = ("NORMAL", "PNEUMONIA")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _medmnist_info() -> dict[str, dict]:
    from medmnist.info import INFO
    # the 3-D sets (organmnist3d, ...) are registered too (download and checksum like the 2-D
    # ones); the image loader reads 2-D images only and says so for a volume set
    return dict(INFO)


def is_volume(info: DatasetInfo) -> bool:
    """Whether a registry entry holds 3-D volumes (MedMNIST 3-D: (N, 28, 28, 28) arrays)."""
    return info.extra.get("ndim", 2) == 3


@lru_cache(maxsize=1)
def registry() -> dict[str, DatasetInfo]:
    """All known datasets by name."""
    sets: dict[str, DatasetInfo] = {}
    for name, info in _medmnist_info().items():
        labels = info["label"]
        classes = tuple(labels[str(i)] for i in range(len(labels)))
        sets[name] = DatasetInfo(
            name=name, kind="medmnist", classes=classes, channels=int(info["n_channels"]), native_size=28,
            candidates=(f"medmnist/{name}.npz", f"{name}.npz"),
            obtain=f"run `medadv data download {name}` (fetches {info['url'].split('?')[0]}, checks its MD5)",
            md5=info["MD5"], url=info["url"], task=info["task"],
            extra={"n_samples": dict(info["n_samples"]), "urls": {s: info.get(f"url_{s}") for s in (64, 128, 224)},
                   "md5s": {s: info.get(f"MD5_{s}") for s in (64, 128, 224)}, "description": info["description"],
                   **({"ndim": 3} if name.endswith("3d") else {})},
        )
    sets["chestxray"] = DatasetInfo(
        name="chestxray", kind="chestxray", classes=CHESTXRAY_CLASSES, channels=1, native_size=224,
        candidates=("kermany_chest_xray_224.tar.gz", "chest_xray", "chest_xray.zip", "chest-xray-pneumonia.zip",
                    "chest_xray.tar.gz"),
        obtain="download 'Chest X-Ray Images (Pneumonia)' from https://www.kaggle.com/datasets/paultimothymooney/"
               "chest-xray-pneumonia (Kermany et al. 2018) and put the zip, or its extracted chest_xray/ folder, in the data folder",
        has_val=False, task="binary-class",
    )
    sets["cifar10"] = DatasetInfo(
        name="cifar10", kind="cifar10", classes=CIFAR10_CLASSES, channels=3, native_size=32,
        candidates=("cifar10_jpg.tar.gz", "cifar10", "cifar-10-batches-py", "cifar-10-python.tar.gz"),
        obtain="download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (MD5 c58f30108f718f92721af3b95e74349a) "
               "into the data folder, or an image-folder copy cifar10/{train,test}/<class>/*.png",
        has_val=False, md5=None, domain="natural",
        extra={"official_md5": {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"}},
    )
    # The HFC work's fundus task (APTOS) is binary: no retinopathy against any grade > 0.
    base = sets["retinamnist"]
    sets["retinamnist_binary"] = DatasetInfo(
        name="retinamnist_binary", kind="medmnist", classes=("no DR (grade 0)", "DR (grade > 0)"), channels=3,
        native_size=28, candidates=base.candidates, obtain=base.obtain, md5=base.md5, url=base.url,
        task="binary-class", extra={**base.extra, "base": "retinamnist", "label_map": (0, 1, 1, 1, 1)},
    )
    return sets


def natural_names(names: Iterable[str]) -> list[str]:
    """The names in ``names`` whose registry entry has ``domain == "natural"``, in the given order.

    Names the registry does not know (a toy set in a test) count as medical, so a caller can pass
    any list of names; :func:`get_info` is the strict lookup.
    """
    sets = registry()
    return [n for n in names if sets.get(str(n).lower().strip()) is not None
            and sets[str(n).lower().strip()].domain == "natural"]


def dataset_names() -> list[str]:
    return sorted(registry())


def get_info(name: str) -> DatasetInfo:
    """Registry entry for ``name``; an unknown name lists the valid ones."""
    sets = registry()
    if not isinstance(name, str):
        raise TypeError(f"a dataset name must be a string, got {name!r} ({type(name).__name__}); "
                        f"known datasets: {', '.join(sorted(sets))}")
    key = name.lower().strip()
    if key not in sets:
        raise KeyError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(sets))}")
    return sets[key]
