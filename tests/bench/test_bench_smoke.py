"""The benchmark script runs end to end on a tiny configuration (no timing assertions)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_attacks.py"


def test_bench_main_tiny(capsys):
    spec = importlib.util.spec_from_file_location("bench_attacks", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--arch", "smallcnn", "--image-size", "8", "--channels", "1", "--classes", "2",
                          "--batch", "2", "--steps", "1", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "medadv PGD" in out and "floor" in out and "ratio floor / ours" in out
    assert result["floor_over_ours"] > 0
    assert "ratio SMIA step / BIM step" in out and result["smia_over_bim"] > 0


@pytest.mark.mirror
def test_fuse_training_bench_tiny(mirror, capsys):
    path = BENCH.with_name("bench_fuse_training.py")
    spec = importlib.util.spec_from_file_location("bench_fuse_training", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--images", "24", "--epochs", "1", "--batch", "8", "--threads", "1"])
    out = capsys.readouterr().out
    assert "time ratio default / off" in out and result["default_over_off_wall"] > 0
    # three mini-batches: the first copies are wasted, then the attack runs unfused
    assert result["rows"]["default"]["builds"] <= 2 and result["rows"]["off"]["builds"] == 0


def test_hfc_bench_tiny(capsys):
    spec = importlib.util.spec_from_file_location("bench_hfc", BENCH.with_name("bench_hfc.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--arch", "smallcnn", "--image-size", "8", "--channels", "1", "--classes", "2",
                          "--n-reference", "40", "--k", "1,2", "--batch", "4", "--steps", "1", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "ratio HFC / BIM step" in out and set(result["fit_seconds"]) == {1, 2}
    assert result["step_ratio"] > 0 and result["layers"] == ["block1", "block2", "block3"]


def test_defenses_bench_tiny(capsys):
    spec = importlib.util.spec_from_file_location("bench_defenses", BENCH.with_name("bench_defenses.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--arch", "smallcnn", "--image-size", "8", "--n", "16", "--repeats", "1",
                        "--cw-steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "AT / NT epoch" in out and "SSAT / AT per labelled image" in out and "fixed targets / AT" in out
    assert "medadv CWL2" in out
