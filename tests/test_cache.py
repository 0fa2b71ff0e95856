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


def _debris(root, name, size=1000):
    path = root / name
    path.mkdir(parents=True)
    (path / "payload.pt").write_bytes(b"x" * size)
    return path


def test_orphaned_temporary_folders_are_removed_with_a_report(tmp_path):
    import socket
    import subprocess
    import sys
    import time

    from medadv_lib.cache import _host

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # a process that has exited
    host = _host()
    orphan = _debris(tmp_path, f"model-abc.tmp-{host}-{dead_pid}-x1y2", 3000)
    mine = _debris(tmp_path, f"model-def.tmp-{host}-{os.getpid()}-a_b")  # this process is still writing it
    foreign = _debris(tmp_path, f"model-ghi.tmp-otherhost-{dead_pid}-zz")  # owner unknowable: kept while fresh
    legacy_old = _debris(tmp_path, "model-jkl.tmp-q8w9e0", 500)  # written by older code, a day old
    old = time.time() - 2 * 24 * 3600
    os.utime(legacy_old, (old, old))
    entry = _debris(tmp_path, "model-complete")  # not temporary: never touched
    report = Cache(tmp_path, clean=False).clean_debris()
    assert set(report.removed) == {orphan, legacy_old} and report.bytes_removed == 3500
    assert set(report.kept) == {mine, foreign} and mine.exists() and foreign.exists() and entry.exists()
    assert "removed 2 interrupted write(s)" in str(report) and socket.gethostname()


def test_cache_open_cleans_once_and_new_writes_carry_the_owner(tmp_path, monkeypatch):
    from medadv_lib import cache as cache_module

    orphan = _debris(tmp_path, f"s-1.tmp-{cache_module._host()}-999999999-abc")
    Cache(tmp_path)
    assert not orphan.exists()
    seen = []
    real = cache_module.tempfile.mkdtemp
    monkeypatch.setattr(cache_module.tempfile, "mkdtemp", lambda **kw: seen.append(kw["prefix"]) or real(**kw))
    Cache(tmp_path).store("k", 1)
    assert seen == [f"k.tmp-{cache_module._host()}-{os.getpid()}-"]


def test_cache_path_that_is_a_file(tmp_path):
    from medadv_lib.cache import CacheLocationError

    afile = tmp_path / "cache"
    afile.write_text("")
    with pytest.raises(CacheLocationError, match="regular file"):
        Cache(afile)
