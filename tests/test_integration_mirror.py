"""Integration tests on the real offline mirror (skipped with the reason when it is absent)."""
import numpy as np
import pytest

from medadv_lib.cli import main
from medadv_lib.config import get_profile
from medadv_lib.data import load_dataset
from medadv_lib.pipeline import trained_model

pytestmark = pytest.mark.mirror

# split sizes and class counts stated in the mirror's README
EXPECTED = {
    "pneumoniamnist": {"train": [1214, 3494], "val": [135, 389], "test": [234, 390]},
    "retinamnist": {"train": 1080, "val": 120, "test": 400},
    "breastmnist": {"train": 546, "val": 78, "test": 156},
    "chestxray": {"train+val": [1341, 3875], "test": [234, 390]},
    "cifar10": {"train+val": [5000] * 10, "test": [1000] * 10},
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_mirror_split_sizes_and_class_counts(mirror, name):
    ds = load_dataset(name, 28)
    for split, expected in EXPECTED[name].items():
        if split == "train+val":
            counts = (np.array(ds.train.class_counts(ds.num_classes)) + ds.val.class_counts(ds.num_classes)).tolist()
        else:
            counts = ds[split].class_counts(ds.num_classes)
        assert (counts if isinstance(expected, list) else sum(counts)) == expected, split
    assert ds.train.images.shape[1] == ds.channels


def test_smoke_model_beats_majority_on_pneumoniamnist(mirror):
    tm = trained_model("pneumoniamnist", get_profile("smoke"), progress=False)
    majority = np.bincount(tm.test.labels.numpy()).max() / len(tm.test)
    assert tm.metrics["accuracy"] > majority + 0.05, (tm.metrics, majority)
    assert tm.metrics["auroc"] > 0.85
    again = trained_model("pneumoniamnist", get_profile("smoke"), progress=False)
    assert again.cache.hit and again.cache.key == tm.cache.key


def test_cli_verify_fails_on_a_changed_byte(mirror, tmp_path, capsys):
    copy = tmp_path / "medmnist"
    copy.mkdir()
    data = bytearray((mirror / "medmnist" / "breastmnist.npz").read_bytes())
    (copy / "breastmnist.npz").write_bytes(bytes(data))
    (tmp_path / "SHA256SUMS").write_text((mirror / "SHA256SUMS").read_text())
    assert main(["data", "verify", "--data-dir", str(tmp_path)]) == 0
    data[1234] ^= 0x01
    (copy / "breastmnist.npz").write_bytes(bytes(data))
    assert main(["data", "verify", "--data-dir", str(tmp_path)]) == 1
    assert "MISMATCH" in capsys.readouterr().out
