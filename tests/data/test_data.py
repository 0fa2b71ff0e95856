import hashlib
import io
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from medadv_lib.data import (ChecksumError, DatasetNotFoundError, dataset_names, get_info, load_dataset, locate,
                             stratified_subset, verify_file)
from medadv_lib.data.datasets import resize_uint8


def _write_npz(path, n=(40, 10, 20), channels=1, classes=2, flat_labels=False, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n):
        shape = (count, 28, 28) if channels == 1 else (count, 28, 28, 3)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        labels = np.arange(count) % classes
        arrays[f"{split}_labels"] = labels if flat_labels else labels[:, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def _trust(path):
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (path.parent / "SHA256SUMS").write_text(f"{digest}  {path.name}\n")


def test_registry_uses_medmnist_metadata():
    names = dataset_names()
    for name in ("pneumoniamnist", "retinamnist", "breastmnist", "octmnist", "chestxray", "cifar10"):
        assert name in names
    assert {"organmnist3d", "nodulemnist3d", "fracturemnist3d"} <= set(names)
    info = get_info("retinamnist")
    assert info.num_classes == 5 and info.channels == 3 and info.md5 == "bd4c0672f1bba3e3a89f0e4e876791e4"
    with pytest.raises(KeyError, match="known datasets"):
        get_info("imagenet")


@pytest.mark.parametrize("flat", [False, True])
def test_npz_shapes_dtypes_and_label_shapes(tmp_path, flat):
    _trust(_write_npz(tmp_path / "medmnist" / "breastmnist.npz", flat_labels=flat))
    ds = load_dataset("breastmnist", data_dir=tmp_path)
    assert [len(ds[s]) for s in ("train", "val", "test")] == [40, 10, 20]
    assert ds.train.images.dtype.is_floating_point is False and ds.train.images.shape == (40, 1, 28, 28)
    assert ds.train.labels.dtype.is_floating_point is False and ds.train.labels.tolist()[:4] == [0, 1, 0, 1]
    x = ds.test.float()
    assert x.dtype.is_floating_point and float(x.min()) >= 0 and float(x.max()) <= 1


def test_resize_to_any_size_keeps_channels(tmp_path):
    _trust(_write_npz(tmp_path / "retinamnist.npz", channels=3, classes=5))
    for size in (16, 64):
        ds = load_dataset("retinamnist", size, data_dir=tmp_path)
        assert ds.train.images.shape[1:] == (3, size, size)


def test_upsampling_is_computed_from_the_cached_native_arrays_not_cached(tmp_path):
    from medadv_lib.cache import Cache

    _trust(_write_npz(tmp_path / "breastmnist.npz"))
    cache = Cache(tmp_path / "cache")
    native = load_dataset("breastmnist", data_dir=tmp_path, cache=cache)
    entries = sorted(p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith("dataset-"))
    big = load_dataset("breastmnist", 64, data_dir=tmp_path, cache=cache)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith("dataset-")) == entries
    for split in ("train", "val", "test"):
        assert np.array_equal(big[split].images.numpy(), resize_uint8(native[split].images.numpy(), 64))
        assert big[split].labels.equal(native[split].labels)
    assert big.size == 64 and big.cache_key != native.cache_key and big.cache_key.startswith(native.cache_key)
    # a file of that very size (MedMNIST+) is read as it is, not upsampled
    _write_npz(tmp_path / "breastmnist_64.npz", seed=1)
    arrays = np.load(tmp_path / "breastmnist_64.npz")
    np.savez(tmp_path / "breastmnist_64.npz", **{k: (np.repeat(np.repeat(v, 64 // 28 + 1, 1), 64 // 28 + 1, 2)[:, :64, :64]
                                                     if k.endswith("images") else v) for k, v in arrays.items()})
    digest = hashlib.sha256((tmp_path / "breastmnist_64.npz").read_bytes()).hexdigest()
    with open(tmp_path / "SHA256SUMS", "a") as sums:
        sums.write(f"{digest}  breastmnist_64.npz\n")
    own = load_dataset("breastmnist", 64, data_dir=tmp_path, cache=cache)
    assert own.source.name == "breastmnist_64.npz" and not np.array_equal(own.train.images.numpy(),
                                                                           big.train.images.numpy())


def test_resize_preserves_constant_images():
    img = np.full((2, 1, 28, 28), 137, dtype=np.uint8)
    assert (resize_uint8(img, 64) == 137).all() and (resize_uint8(img, 14) == 137).all()


def test_checksum_mismatch_names_file_and_hashes(tmp_path):
    path = _write_npz(tmp_path / "breastmnist.npz")
    _trust(path)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError) as err:
        load_dataset("breastmnist", data_dir=tmp_path)
    message = str(err.value)
    assert "breastmnist.npz" in message and "expected" in message and hashlib.sha256(bytes(data)).hexdigest() in message


def test_file_without_known_checksum_is_refused(tmp_path):
    _write_npz(tmp_path / "breastmnist.npz")
    with pytest.raises(ChecksumError, match="md5"):
        load_dataset("breastmnist", data_dir=tmp_path)
    assert not verify_file(tmp_path / "breastmnist.npz", official_md5=get_info("breastmnist").md5).ok


def test_missing_dataset_lists_places_and_how_to_obtain(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        locate("pneumoniamnist", data_dir=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "medmnist" / "pneumoniamnist.npz") in message and "medadv data download pneumoniamnist" in message
    with pytest.raises(DatasetNotFoundError, match="kaggle"):
        locate("chestxray", data_dir=tmp_path)


def test_data_dir_from_environment(tmp_path, monkeypatch):
    _trust(_write_npz(tmp_path / "medmnist" / "breastmnist.npz"))
    monkeypatch.setenv("MEDADV_DATA_DIR", str(tmp_path))
    assert locate("breastmnist") == tmp_path / "medmnist" / "breastmnist.npz"


def _jpeg(value, size=40, mode="L"):
    buf = io.BytesIO()
    Image.new(mode, (size, size), value if mode == "L" else (value,) * 3).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.mark.parametrize("container", ["folder", "tar.gz", "zip"])
def test_image_folder_layouts_and_carved_val(tmp_path, container):
    files = {}
    for split, count in (("train", 30), ("test", 10)):
        for cls, value in (("NORMAL", 40), ("PNEUMONIA", 200)):
            for i in range(count if cls == "NORMAL" else 2 * count):
                files[f"chest_xray/chest_xray/{split}/{cls}/img{i}.jpeg"] = _jpeg(value, mode="RGB")
    files["__MACOSX/chest_xray/train/NORMAL/._img0.jpeg"] = b"junk"
    if container == "folder":
        for name, data in files.items():
            p = tmp_path / "chest_xray" / name.split("/", 1)[1]
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
    elif container == "zip":
        with zipfile.ZipFile(tmp_path / "chest_xray.zip", "w") as zf:
            for name, data in files.items():
                zf.writestr(name, data)
        _trust(tmp_path / "chest_xray.zip")
    else:
        with tarfile.open(tmp_path / "chest_xray.tar.gz", "w:gz") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        _trust(tmp_path / "chest_xray.tar.gz")
    ds = load_dataset("chestxray", 16, data_dir=tmp_path, val_fraction=0.2, seed=1)
    assert ds.train.images.shape[1:] == (1, 16, 16)
    assert len(ds.train) + len(ds.val) == 90 and len(ds.test) == 30
    assert ds.val.class_counts(2) == [6, 12]  # stratified: a fifth of 30 and of 60
    normal = ds.test.images[ds.test.labels == 0].float().mean()
    assert abs(float(normal) - 40) < 3  # JPEG round trip keeps the grey level; label follows the folder


def test_stratified_subset_is_seeded_and_keeps_proportions():
    labels = np.array([0] * 900 + [1] * 100)  # class-sorted, as some mirror splits are
    a, b = stratified_subset(labels, 100, seed=3), stratified_subset(labels, 100, seed=3)
    assert (a == b).all() and len(a) == 100 and len(set(a)) == 100
    assert np.bincount(labels[a]).tolist() == [90, 10]
    assert not (stratified_subset(labels, 100, seed=4) == a).all()
    assert len(stratified_subset(labels, None, 0)) == 1000


@pytest.mark.parametrize("labels", [[0] * 30 + [1] * 20 + [2] + [6],  # two classes of one item
                                    [0] * 30 + [1] * 20 + [2],  # one: it joins the largest class
                                    [0] * 3 + [1] * 2 + [5]])  # nearly all kept: too few left to stratify
def test_stratified_subset_with_classes_of_one_item(labels):
    """Correctly classified images of a weak model can leave a class with a single image."""
    labels = np.array(labels)
    n = len(labels) - 2
    a = stratified_subset(labels, n, seed=0)
    assert len(a) == len(set(a)) == n and (a == stratified_subset(labels, n, seed=0)).all()
    if len(labels) > 10:
        counts = np.bincount(labels[a], minlength=2)
        assert counts[0] >= 28 and counts[1] >= 18  # the large classes keep their share


def test_registry_3d_medmnist_entries(tmp_path):
    from medmnist.info import INFO

    from medadv_lib.data.registry import is_volume

    for name in (n for n in INFO if n.endswith("3d")):
        info = get_info(name)
        assert is_volume(info) and info.kind == "medmnist" and info.channels == 1
        assert info.md5 == INFO[name]["MD5"] and info.url == INFO[name]["url"]  # downloaded and checked like 2-D
        assert info.num_classes == len(INFO[name]["label"])
    assert not is_volume(get_info("organamnist")) and not is_volume(get_info("chestxray"))
    # a volume file is located and checksummed, then refused by the 2-D loader with a clear error
    path = tmp_path / "medmnist" / "nodulemnist3d.npz"
    path.parent.mkdir(parents=True)
    vol = np.zeros((4, 28, 28, 28), np.uint8)
    np.savez(path, **{f"{s}_images": vol for s in ("train", "val", "test")},
             **{f"{s}_labels": np.zeros((4, 1), np.uint8) for s in ("train", "val", "test")})
    _trust(path)
    with pytest.raises(ValueError, match="3-D volumes.*numpy.load"):
        load_dataset("nodulemnist3d", data_dir=tmp_path)
