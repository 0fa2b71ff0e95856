"""Data that opens but is wrong, damaged containers, bad sizes and bad checksum lists: each is refused
at load time with a message naming the file, the key and what was found."""
import hashlib
import io
import os
import urllib.error
import zipfile

import numpy as np
import pytest
from PIL import Image

from medadv_lib.data import ChecksumError, DataFormatError, DownloadError, download, get_info, load_dataset
from medadv_lib.data.checksums import read_sums

DL = __import__("medadv_lib.data.download", fromlist=["download"])


def _arrays(n=(40, 10, 20), classes=2):
    rng = np.random.default_rng(0)
    out = {}
    for split, count in zip(("train", "val", "test"), n):
        out[f"{split}_images"] = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        out[f"{split}_labels"] = (np.arange(count) % classes)[:, None].astype(np.uint8)
    return out


def _save_trusted(path, arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (path.parent / "SHA256SUMS").write_text(f"{digest}  {path.name}\n")
    return path


def _labels_out_of_range(a):
    a["train_labels"][3] = 7
    return a


def _negative_label(a):
    a["test_labels"] = a["test_labels"].astype(np.int64)
    a["test_labels"][0] = -1
    return a


def _float_images(a):
    a["train_images"] = a["train_images"] / 255.0
    return a


def _float_labels(a):
    a["val_labels"] = a["val_labels"].astype(np.float32) + 0.5
    return a


def _bool_labels(a):
    a["val_labels"] = a["val_labels"].astype(bool)
    return a


def _wrong_channels(a):
    a["train_images"] = np.zeros((40, 28, 28, 3), np.uint8)
    return a


def _wrong_rank(a):
    a["test_images"] = np.zeros((20, 28), np.uint8)
    return a


def _length_mismatch(a):
    a["train_labels"] = a["train_labels"][:-1]
    return a


def _empty_split(a):
    a["test_images"], a["test_labels"] = np.zeros((0, 28, 28), np.uint8), np.zeros((0, 1), np.uint8)
    return a


def _missing_key(a):
    del a["val_labels"]
    return a


def _multilabel(a):
    a["train_labels"] = np.zeros((40, 3), np.uint8)
    return a


BAD_NPZ = [  # (how the trusted file is broken, key the message names, what it must say was found)
    (_labels_out_of_range, "train_labels", r"outside 0\.\.1 \(found range \[0, 7\]\)"),
    (_negative_label, "test_labels", r"found range \[-1, 1\]"),
    (_float_images, "train_images", "dtype float64"),
    (_float_labels, "val_labels", "dtype float32"),
    (_bool_labels, "val_labels", "dtype bool"),
    (_wrong_channels, "train_images", r"shape \(40, 3, 28, 28\)"),
    (_wrong_rank, "test_images", r"shape \(20, 28\)"),
    (_length_mismatch, "train_labels", "for 40 images"),
    (_empty_split, "test_images", "0 images"),
    (_missing_key, "val_labels", "keys found"),
    (_multilabel, "train_labels", "multi-label"),
]


@pytest.mark.parametrize("breakage,key,found", BAD_NPZ, ids=[b[0].__name__ for b in BAD_NPZ])
def test_trusted_npz_with_wrong_arrays_is_refused(tmp_path, breakage, key, found):
    path = _save_trusted(tmp_path / "medmnist" / "breastmnist.npz", breakage(_arrays()))
    with pytest.raises(DataFormatError, match=found) as err:
        load_dataset("breastmnist", data_dir=tmp_path)
    assert str(path) in str(err.value) and key in str(err.value)


def test_derived_task_checks_the_base_labels(tmp_path):
    arrays = _arrays(classes=5)
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = np.zeros((len(arrays[f"{split}_labels"]), 28, 28, 3), np.uint8)
    arrays["test_labels"][0] = 5  # grade 5 does not exist; the label map would raise IndexError
    _save_trusted(tmp_path / "medmnist" / "retinamnist.npz", arrays)
    with pytest.raises(DataFormatError, match="test_labels.*outside 0..4"):
        load_dataset("retinamnist_binary", data_dir=tmp_path)


@pytest.mark.parametrize("size,error", [(0, ValueError), (7, ValueError), (-28, ValueError), (28.9, TypeError),
                                        (True, TypeError), (False, TypeError), ("28", TypeError)])
def test_bad_sizes_are_refused(tmp_path, size, error):
    _save_trusted(tmp_path / "medmnist" / "breastmnist.npz", _arrays())
    with pytest.raises(error, match="size"):
        load_dataset("breastmnist", size, data_dir=tmp_path)
    assert load_dataset("breastmnist", None, data_dir=tmp_path).size == 28
    assert load_dataset("breastmnist", np.int64(16), data_dir=tmp_path).size == 16


@pytest.mark.parametrize("name", [None, 3, ["breastmnist"]])
def test_dataset_name_must_be_a_string(name):
    with pytest.raises(TypeError, match="dataset name"):
        get_info(name)


def _png(value=128):
    buf = io.BytesIO()
    Image.new("L", (12, 12), value).save(buf, format="PNG")
    return buf.getvalue()


def _chest_zip(path, damaged_member=None, payload=b"not an image at all"):
    with zipfile.ZipFile(path, "w") as zf:
        for split in ("train", "test"):
            for cls in ("NORMAL", "PNEUMONIA"):
                for i in range(3):
                    name = f"chest_xray/{split}/{cls}/img{i}.png"
                    zf.writestr(name, payload if name == damaged_member else _png())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (path.parent / "SHA256SUMS").write_text(f"{digest}  {path.name}\n")


def test_damaged_zip_member_is_named(tmp_path):
    member = "chest_xray/train/PNEUMONIA/img1.png"
    _chest_zip(tmp_path / "chest_xray.zip", member)
    with pytest.raises(DataFormatError) as err:
        load_dataset("chestxray", 16, data_dir=tmp_path)
    assert member in str(err.value) and "BytesIO" not in str(err.value).split(":", 1)[0]


def test_damaged_compressed_member_is_named(tmp_path):
    path = tmp_path / "chest_xray.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for split in ("train", "test"):
            for cls in ("NORMAL", "PNEUMONIA"):
                zf.writestr(f"chest_xray/{split}/{cls}/a.png", _png())
    data = bytearray(path.read_bytes())
    start = data.find(b"chest_xray/test/PNEUMONIA/a.png") + len("chest_xray/test/PNEUMONIA/a.png") + 5
    data[start:start + 8] = b"\xff" * 8  # inside the first local file entry's compressed bytes
    path.write_bytes(bytes(data))
    digest = hashlib.sha256(bytes(data)).hexdigest()
    (tmp_path / "SHA256SUMS").write_text(f"{digest}  {path.name}\n")
    with pytest.raises(DataFormatError) as err:
        load_dataset("chestxray", 16, data_dir=tmp_path)
    assert "chest_xray/test/PNEUMONIA/a.png" in str(err.value)


def test_binary_sha256sums_is_a_clear_error(tmp_path):
    path = _save_trusted(tmp_path / "medmnist" / "breastmnist.npz", _arrays())
    (path.parent / "SHA256SUMS").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ChecksumError, match="SHA256SUMS is not a text checksum list"):
        load_dataset("breastmnist", data_dir=tmp_path)
    with pytest.raises(ChecksumError, match="sha256sum"):
        read_sums(path.parent / "SHA256SUMS")


class _FakeResponse(io.BytesIO):
    headers = {"Content-Length": "0"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_offline_download_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError(OSError(-2, "Name or service not known"))

    monkeypatch.setattr(DL.urllib.request, "urlopen", offline)
    with pytest.raises(DownloadError, match="cannot download breastmnist.*network connection"):
        download("breastmnist", tmp_path)
    assert list((tmp_path / "medmnist").iterdir()) == []


def test_download_verifies_an_existing_file_and_replaces_a_corrupt_one(tmp_path, monkeypatch):
    good = b"the published bytes"
    md5 = hashlib.md5(good).hexdigest()
    info = get_info("breastmnist")
    monkeypatch.setattr(DL, "get_info", lambda name: type(info)(**{**info.__dict__, "md5": md5}))
    calls = []
    monkeypatch.setattr(DL.urllib.request, "urlopen", lambda url, timeout: calls.append(url) or _FakeResponse(good))
    target = tmp_path / "medmnist" / "breastmnist.npz"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"corrupt")
    stale = target.parent / f"{target.name}.999999999.abc.part"  # an interrupted download of a dead process
    stale.write_bytes(b"half")
    assert download("breastmnist", tmp_path) == target and target.read_bytes() == good and len(calls) == 1
    assert not stale.exists()
    assert download("breastmnist", tmp_path) == target and len(calls) == 1  # verified, not fetched again
    monkeypatch.setattr(DL.urllib.request, "urlopen", lambda url, timeout: _FakeResponse(b"other bytes"))
    target.write_bytes(b"corrupt again")
    with pytest.raises(ChecksumError, match="expected " + md5):
        download("breastmnist", tmp_path)
    assert target.read_bytes() == b"corrupt again" and not list(target.parent.glob("*.part"))


@pytest.mark.parametrize("size", [0, 32, True, "28"])
def test_download_refuses_unpublished_sizes(tmp_path, size):
    with pytest.raises(ValueError, match="sizes"):
        download("breastmnist", tmp_path, size=size)


def test_data_dir_that_is_a_file(tmp_path):
    afile = tmp_path / "data"
    afile.write_text("")
    from medadv_lib.data import DatasetNotFoundError

    with pytest.raises(DatasetNotFoundError, match="regular file"):
        load_dataset("breastmnist", data_dir=afile)
    assert os.path.isfile(afile)  # untouched
