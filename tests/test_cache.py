import os

import pytest

from medadv_lib.cache import Cache, CacheMissError, stage_key


def test_key_changes_with_params_version_and_upstream():
    base = stage_key("model", {"lr": 0.1, "epochs": 2}, version="1")
    assert base == stage_key("model", {"epochs": 2, "lr": 0.1}, version="1")
    assert base != stage_key("model", {"lr": 0.2, "epochs": 2}, version="1")
    assert base != stage_key("model", {"lr": 0.1, "epochs": 2}, version="2")
    assert base != stage_key("model", {"lr": 0.1, "epochs": 2}, version="1", upstream=["dataset-abc"])


def test_second_request_is_a_hit(tmp_path):
    cache, calls = Cache(tmp_path), []

    def compute():
        calls.append(1)
        return {"value": 42}

    first, entry1 = cache.get_or_compute("s", {"a": 1}, compute, version="1")
    second, entry2 = cache.get_or_compute("s", {"a": 1}, compute, version="1")
    assert first == second == {"value": 42} and len(calls) == 1
    assert not entry1.hit and entry2.hit and entry1.key == entry2.key


def test_interrupted_write_is_never_trusted(tmp_path):
    cache = Cache(tmp_path)

    def boom():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.get_or_compute("s", {"a": 1}, boom, version="1")
    assert list(tmp_path.iterdir()) == []
    # a half-written entry (payload without meta, as after a crash mid-rename) is a miss
    key = stage_key("s", {"a": 2}, version="1")
    (tmp_path / key).mkdir()
    (tmp_path / key / "payload.pt").write_bytes(b"truncated")
    value, entry = cache.get_or_compute("s", {"a": 2}, lambda: "fresh", version="1")
    assert value == "fresh" and not entry.hit


def test_corrupt_entry_is_recomputed(tmp_path):
    cache = Cache(tmp_path)
    _, entry = cache.get_or_compute("s", {}, lambda: [1, 2], version="1")
    (entry.path / "payload.pt").write_bytes(b"garbage")
    value, again = cache.get_or_compute("s", {}, lambda: [3], version="1")
    assert value == [3] and not again.hit


def test_compute_disabled_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDADV_ALLOW_COMPUTE", "0")
    with pytest.raises(CacheMissError, match="medadv train --dataset x"):
        Cache(tmp_path).get_or_compute("model", {}, lambda: 1, version="1", command="medadv train --dataset x")
    assert not os.listdir(tmp_path) if tmp_path.exists() else True
