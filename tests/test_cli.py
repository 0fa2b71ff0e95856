"""The command line answers every user mistake with ``medadv: error: <what> ... <what to do>`` (or
argparse's usage error) and a non-zero exit, never a traceback. Nothing here trains or downloads."""
import hashlib
import io
import urllib.error

import numpy as np
import pytest
import torch

from medadv_lib import cli

DL = __import__("medadv_lib.data.download", fromlist=["download"])


def _trusted_npz(folder, labels_max=1):
    path = folder / "medmnist" / "breastmnist.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", 40), ("val", 10), ("test", 20)):
        arrays[f"{split}_images"] = np.zeros((n, 28, 28), np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % (labels_max + 1))[:, None].astype(np.uint8)
    np.savez(path, **arrays)
    (path.parent / "SHA256SUMS").write_text(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n")
    return path


@pytest.fixture
def world(tmp_path, monkeypatch):
    """Folders for each case: an empty data folder, a regular file, a data folder with one good set."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "afile").write_text("not a folder")
    _trusted_npz(tmp_path / "good")
    _trusted_npz(tmp_path / "badlabels", labels_max=4)  # labels 0..4 in a 2-class set
    binary = tmp_path / "binsums"
    _trusted_npz(binary)
    (binary / "medmnist" / "SHA256SUMS").write_bytes(bytes(range(256)))

    def offline(url, timeout):
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(DL.urllib.request, "urlopen", offline)
    monkeypatch.setenv("MEDADV_DATA_DIR", str(tmp_path / "good"))
    return tmp_path


def _main(argv, capsys):
    try:
        rc = cli.main(argv)
    except SystemExit as stop:  # argparse
        rc = stop.code
    out, err = capsys.readouterr()
    return rc, out, err


CASES = [  # (argv with {t} for the case folder, environment overrides, exit code, text stderr must hold)
    (["train", "--device", "gpu"], {}, 2, "argument --device: invalid device 'gpu'"),
    (["train", "--device", "cuda:x"], {}, 2, "invalid device"),
    (["train", "--set", "train.epochs", "none"], {}, 2, "medadv: error: train.epochs cannot be None"),
    (["train", "--set", "train.epochs", "2.5"], {}, 2, "medadv: error: train.epochs"),
    (["train", "--set", "train.augment", "maybe"], {}, 2, "medadv: error: train.augment"),
    (["train", "--set", "train.lr", "inf"], {}, 2, "medadv: error: train.lr must be a finite number"),
    (["train", "--set", "attack.eps_k", ""], {}, 2, "medadv: error: attack.eps_k"),
    (["train", "--set", "attack.eps_k", "1,x"], {}, 2, "medadv: error: attack.eps_k"),
    (["train", "--set", "device", "cuda:abc"], {}, 2, "medadv: error: device"),
    (["train", "--set", "detect.attacks", "pgd,deepfool"], {}, 2, "medadv: error: detect.attacks names unknown"),
    (["train", "--set", "train.epoch", "2"], {}, 2, "unknown configuration key 'train.epoch'"),
    (["train", "--set", "train.epochs"], {}, 2, "expected 2 arguments"),
    (["train", "--profile", "fast"], {}, 2, "medadv: error: unknown profile 'fast'"),
    (["train", "--seed", "x"], {}, 2, "invalid int value"),
    (["train", "--dataset", "imagenet"], {}, 2, "medadv: error: unknown dataset 'imagenet'"),
    (["train", "--dataset", "breastmnist"], {"MEDADV_CACHE_DIR": "{t}/afile"}, 2,
     "medadv: error: the cache folder {t}/afile is a regular file"),
    (["cache", "clean", "--cache-dir", "{t}/afile"], {}, 2, "is a regular file"),
    (["data", "list", "--data-dir", "{t}/missing"], {}, 2, "medadv: error: the data folder {t}/missing"),
    (["data", "list", "--data-dir", "{t}/afile"], {}, 2, "is a regular file"),
    (["data", "verify", "--data-dir", "{t}/missing"], {}, 2, "does not exist"),
    (["data", "verify", "--data-dir", "{t}/empty"], {}, 1, "no dataset found in {t}/empty"),
    (["data", "verify", "breastmnist", "--data-dir", "{t}/binsums"], {}, 2, "SHA256SUMS is not a text checksum list"),
    (["data", "list", "breastmnist", "--data-dir", "{t}/badlabels"], {}, 1, ""),
    (["data", "download", "breastmnist", "--data-dir", "{t}/empty"], {}, 2, "medadv: error: cannot download breastmnist"),
    (["data", "download", "chestxray"], {}, 2, "cannot be downloaded automatically"),
    (["data", "download", "breastmnist", "--size", "32"], {}, 2, "invalid choice"),
    (["data", "download", "breastmnist", "--data-dir", "{t}/afile/sub"], {}, 2, "medadv: error:"),
    (["data"], {}, 2, "required"),
    (["bench", "gpu"], {}, 2, "invalid choice"),
    ([], {}, 2, "required"),
]
if torch.cuda.is_available():
    CASES = [c for c in CASES if c[0][:3] != ["train", "--device", "cuda"]]
else:
    CASES.append((["train", "--device", "cuda"], {}, 2, "medadv: error: device 'cuda' requested but CUDA is not available"))


@pytest.mark.parametrize("argv,env,code,text", CASES, ids=[" ".join(c[0]) or "<none>" for c in CASES])
def test_user_mistakes_give_one_line_errors(world, monkeypatch, capsys, argv, env, code, text):
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(t=world))
    rc, out, err = _main([a.format(t=world) for a in argv], capsys)
    assert rc == code, (out, err)
    assert text.format(t=world) in err
    assert "Traceback" not in err + out


def test_data_list_reports_unreadable_data_and_continues(world, capsys):
    rc, out, err = _main(["data", "list", "breastmnist", "--data-dir", str(world / "badlabels")], capsys)
    assert rc == 1 and "UNREADABLE" in out and "train_labels" in out and "outside 0..1" in out


def test_data_list_and_verify_succeed_on_good_data(world, capsys):
    rc, out, _ = _main(["data", "verify", "breastmnist"], capsys)
    assert rc == 0 and "OK" in out and str(world / "good") in out
    rc, out, _ = _main(["data", "list", "breastmnist"], capsys)
    assert rc == 0 and "train     40" in out


def test_cache_clean_reports_what_it_removed(world, capsys):
    from medadv_lib.cache import _host

    orphan = world / "cache" / f"model-x.tmp-{_host()}-999999999-abc"
    orphan.mkdir(parents=True)
    (orphan / "payload.pt").write_bytes(b"x" * 2048)
    rc, out, _ = _main(["cache", "clean", "--cache-dir", str(world / "cache")], capsys)
    assert rc == 0 and not orphan.exists() and f"removed {orphan}" in out and "removed 1 interrupted write(s)" in out


def test_train_passes_the_validated_device_on(world, monkeypatch, capsys):
    import medadv_lib.pipeline as pipeline

    seen = {}

    class Fake:
        metrics = {"accuracy": 1.0, "balanced_accuracy": 1.0, "auroc": 1.0, "n": 1}
        cache = type("C", (), {"hit": True, "key": "k"})()

    def fake_trained_model(name, profile, *, seed, device):
        seen.update(name=name, profile=profile, device=device)
        return Fake()

    monkeypatch.setattr(pipeline, "trained_model", fake_trained_model)
    rc, out, err = _main(["train", "--dataset", "breastmnist", "--device", "cpu", "--set", "train.epochs", "1"], capsys)
    assert rc == 0, err
    assert seen["device"] == "cpu" and seen["profile"].device == "cpu" and seen["profile"].train.epochs == 1
