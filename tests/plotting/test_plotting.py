"""House-style figures and tables, and provenance records, on small synthetic inputs."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from medadv_lib import plotting, provenance
from medadv_lib.config import get_profile
from medadv_lib.data import ImageSplit


class _Toy(SimpleNamespace):
    """The parts of medadv_lib.data.Dataset the helpers use."""

    def __getitem__(self, split):
        return self.splits[split]


def _toy(n=40, classes=("a", "b", "c"), channels=1, size=8, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def split(m):
        images = torch.randint(0, 256, (m, channels, size, size), generator=gen, dtype=torch.uint8)
        return ImageSplit(images, torch.arange(m) % len(classes))

    splits = {"train": split(n), "val": split(n // 4), "test": split(n // 2)}
    return _Toy(name="toy", classes=classes, num_classes=len(classes), channels=channels, size=size,
                info=SimpleNamespace(native_size=size), splits=splits, **splits)


def test_sample_grid_has_one_row_per_class_and_is_seeded():
    ds = _toy(channels=3)
    fig = plotting.sample_grid(ds.train.images, ds.train.labels, ds.classes, n_per_class=4, seed=1, title="t")
    assert isinstance(fig, Figure) and len(fig.axes) == 3 * 4
    assert plotting.pick_per_class(ds.train.labels, 4, 1)[0].tolist() == plotting.pick_per_class(ds.train.labels, 4, 1)[0].tolist()
    assert [ax.get_ylabel() for ax in fig.axes[::4]] == ["a", "b", "c"]


def test_sample_grid_handles_classes_with_few_images_and_float_input():
    labels = torch.tensor([0, 0, 0, 1])
    images = torch.rand(4, 1, 8, 8)
    fig = plotting.sample_grid(images, labels, ("x", "y"), n_per_class=3)
    assert len(fig.axes) == 6


def test_class_balance_shares_sum_to_one_and_plot_draws_every_dataset():
    frame = plotting.class_balance({"toy": _toy(), "two": _toy(classes=("p", "q"))})
    assert set(frame.columns) == {"dataset", "split", "class", "count", "share"}
    sums = frame.groupby(["dataset", "split"])["share"].sum()
    assert np.allclose(sums, 1.0)
    fig = plotting.class_balance_plot(frame)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["toy", "two"]


def test_split_and_model_summaries():
    ds = _toy()
    tm = SimpleNamespace(dataset=ds, train=ds.train, test=ds.test, model=SimpleNamespace(spec={"arch": "smallcnn"}),
                         history=[{"epoch": 1, "loss": 1.0, "train_accuracy": 0.5}],
                         metrics={"accuracy": 0.5, "balanced_accuracy": 0.4, "auroc": 0.7, "n": len(ds.test)},
                         cache=SimpleNamespace(hit=True, key="model-x"))
    split = plotting.split_summary({"toy": tm})
    assert split.loc[0, "train"] == 40 and split.loc[0, "px"] == "8\u21928"
    assert split.loc[0, "rarest class"] == pytest.approx(13 / 40)
    models = plotting.model_summary({"toy": tm})
    assert models.loc[0, "chance (1/K)"] == pytest.approx(1 / 3) and models.loc[0, "model from"] == "cache"
    html = plotting.table(models, percent=["accuracy"]).to_html()
    assert "50.0%" in html and "medadv-table" in html
    assert isinstance(plotting.history_plot({"toy": tm.history}), Figure)


def test_save_figure_writes_atomically(tmp_path):
    fig = plotting.new_figure(2, 2)
    fig.subplots().plot([0, 1])
    paths = plotting.save_figure(fig, "a b/c", tmp_path, formats=("png", "svg"))
    assert [p.name for p in paths] == ["a-b-c.png", "a-b-c.svg"] and all(p.stat().st_size > 0 for p in paths)
    assert not list(tmp_path.glob(".*tmp"))


def test_show_returns_none_outside_a_notebook():
    assert plotting.show(plotting.new_figure(1, 1)) is None


def test_timings_plot():
    fig = plotting.timings_plot(pd.DataFrame({"chapter": ["a", "b"], "seconds": [30.0, 90.0]}))
    assert isinstance(fig, Figure)


def test_provenance_record_and_tables():
    profile = get_profile("smoke")
    record = provenance.collect(profile, device="cpu", cache_keys=["k1", "k2", "k1"], extra={"seed": 0})
    for key in ("medadv", "git commit", "python", "torch", "profile", "device", "cache keys", "run at (UTC)"):
        assert key in record
    assert record["cache keys"] == "k1, k2" and record["seed"] == "0"
    assert record["profile"].startswith("smoke (settings digest ")
    assert provenance.profile_digest(profile) == provenance.profile_digest(get_profile("smoke"))
    assert provenance.profile_digest(profile) != provenance.profile_digest(get_profile("smoke", {"train.epochs": 2}))
    frame = provenance.table(record)
    assert list(frame.columns) == ["item", "value"] and len(frame) == len(record)
    settings = provenance.settings_table(profile, dataset="all")
    assert settings.iloc[0].tolist() == ["parameter", "dataset", "all"]
    assert "train.arch" in set(settings["setting"]) and "profile smoke" in set(settings["source"])


@pytest.mark.mirror
def test_data_provenance_on_the_mirror(mirror):
    frame = provenance.data_provenance(["retinamnist", "pneumoniamnist", "chestxray"])
    rows = frame.set_index("dataset")
    assert rows.loc["retinamnist", "official MD5"] == "matches"
    assert rows.loc["pneumoniamnist", "official MD5"] == "differs"
    assert rows.loc["chestxray", "official MD5"] == "none known"
    assert set(rows["verified by"]) <= {"SHA256SUMS", "official MD5"}
