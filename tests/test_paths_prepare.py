"""Relative folders are the caller's; the prepare stage finds the book's models and names missing data."""
import os
from pathlib import Path

import pytest

from medadv_lib import cli, paths, prepare


def test_absolute_environment_resolves_against_the_callers_folder(tmp_path):
    env = {paths.DATA_ENV: "../shared/data", paths.CACHE_ENV: "/abs/cache", paths.OUTPUT_ENV: "", "OTHER": "rel"}
    changed = prepare_env = paths.absolute_environment(base=tmp_path / "repo", environ=env)
    assert env[paths.DATA_ENV] == str(tmp_path / "shared" / "data")
    assert changed == {paths.DATA_ENV: str(tmp_path / "shared" / "data")} and prepare_env is changed
    assert env[paths.CACHE_ENV] == "/abs/cache" and env[paths.OUTPUT_ENV] == "" and env["OTHER"] == "rel"
    assert paths.absolute_environment(base="/elsewhere", environ=env) == {}  # idempotent


def test_cli_makes_path_options_and_variables_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(paths.DATA_ENV, "data")
    args = cli.absolute_paths(cli.build_parser().parse_args(["run", "data_and_models", "--output", "out/x.ipynb"]))
    assert args.output == str(tmp_path / "out" / "x.ipynb")
    assert os.environ[paths.DATA_ENV] == str(tmp_path / "data")
    args = cli.absolute_paths(cli.build_parser().parse_args(["data", "list", "--data-dir", "../d"]))
    assert args.data_dir == str(tmp_path.parent / "d")
    assert paths.data_dir() == tmp_path / "data"


def test_chapter_models_are_read_from_the_parameters_cells():
    jobs = prepare.book_models(["data_and_models", "detection"])
    names = [j.dataset for j in jobs]
    assert names[:5] == ["pneumoniamnist", "breastmnist", "retinamnist", "chestxray", "cifar10"]
    assert "retinamnist_binary" in names and len(names) == len(set(names))
    assert all(j.seed == 0 for j in jobs)


def test_missing_data_lists_each_set_with_how_to_get_it(tmp_path):
    with pytest.raises(prepare.DataMissingError) as err:
        prepare.check_data(["breastmnist", "chestxray", "cifar10"], data_dir=tmp_path)
    text = str(err.value)
    assert str(tmp_path) in text
    assert "medadv data download breastmnist" in text and "kaggle.com" in text and "cifar-10-python.tar.gz" in text
    (tmp_path / "breastmnist.npz").write_bytes(b"")
    assert [n for n, _ in prepare.missing_data(["breastmnist", "chestxray"], tmp_path)] == ["chestxray"]


def test_torch_threads_restores_the_setting():
    import torch

    before = torch.get_num_threads()
    with prepare.torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before


def test_reported_medmnist_table_and_comparison():
    from medadv_lib import papers

    assert papers.reported("medmnist_v2_resnet18_28", "breastmnist") == {"accuracy": 0.863, "auroc": 0.901}
    assert papers.reported("medmnist_v2_resnet18_28", "cifar10") is None
    with pytest.raises(KeyError, match="tables"):
        papers.reported("nope", "breastmnist")
    frame = papers.comparison_frame({"breastmnist": {"accuracy": 0.8, "auroc": 0.85}, "cifar10": {"accuracy": 0.5, "auroc": 0.9}})
    assert list(frame["dataset"]) == ["breastmnist"]
    assert frame["AUROC gap"].iloc[0] == pytest.approx(0.85 - 0.901)
