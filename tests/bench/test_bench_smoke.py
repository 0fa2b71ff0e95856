"""The benchmark script runs end to end on a tiny configuration (no timing assertions)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

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
