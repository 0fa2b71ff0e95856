"""The book's prepare stage: check the data, then train every model the chapters need, before any chapter.

A chapter that trains its own models inside a notebook cell shows nothing in the terminal but
papermill's cell counter, and a slow machine trips the per-cell timeout on honest work. So
``medadv book`` first works out which (data set, seed) models its chapters will ask for, says in
one screen which data files are missing (and the command that gets each), and trains the models
one by one with a progress bar (model, data set, epoch, batch, time left). Each model is a cache
entry, and training checkpoints every epoch, so an interrupted build continues where it stopped:
finished models are loaded, the model in progress resumes from its last epoch. The chapters then
load every model from the cache.

Which models a chapter needs is read from its ``parameters`` cell, not from a list here: every
string parameter whose default is a comma-separated list of registered data set names (and a
``dataset = "all"`` parameter, meaning :func:`~medadv_lib.pipeline.default_datasets`), trained
with the chapter's default ``seed``. A chapter that adds a data set parameter is covered without
editing this module.
"""
from __future__ import annotations

import ast
import contextlib
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import paths

#: Intra-op threads the prepare stage trains with, whatever the machine. oneDNN's convolution
#: weight gradient and MKL's GEMM split their reductions by thread, so the same seed gives
#: weights that differ (about 1e-4 after one epoch) between 1 and 2 threads; pinning the count
#: makes the book's models the same on a 2-core laptop and a 16-core server (same torch build and
#: CPU instruction set). Two threads cost nothing on the 2-core machines the ``cpu`` profile
#: targets; disabling oneDNN instead would also remove the dependence but halves training speed.
TRAIN_THREADS = 2


class DataMissingError(Exception):
    """Data files the book needs are absent; the message lists each with the command that gets it."""


@dataclass(frozen=True)
class ModelJob:
    """One model the book needs: a data set at the book's profile with a seed."""

    dataset: str
    seed: int = 0
    regime: str | None = None  # a training regime of the SSAT chapter (pipeline.regime_model), None: the base model


def _literal(text):
    try:
        return ast.literal_eval(str(text))
    except (ValueError, SyntaxError):
        return None


def chapter_models(chapter: str) -> list[ModelJob]:
    """The (data set, seed) models chapter ``chapter`` trains with its default parameters."""
    from .book import chapter_parameters
    from .data import dataset_names
    from .pipeline import default_datasets

    known = set(dataset_names())
    params = chapter_parameters(chapter)
    seed = _literal(params.get("seed", {}).get("default"))
    seed = seed if isinstance(seed, int) else 0
    names: list[str] = []
    for pname, info in params.items():
        value = _literal(info.get("default"))
        if not isinstance(value, str):
            continue
        if pname in ("dataset", "datasets") and value == "all":
            names += default_datasets()
            continue
        tokens = [t.strip() for t in value.split(",") if t.strip()]
        if tokens and all(t in known for t in tokens):
            names += tokens
    jobs = [ModelJob(n, seed) for n in dict.fromkeys(names)]
    # a ``regimes`` parameter (the SSAT chapter) asks for one regime model per data set and regime,
    # GCE left out of two-class sets (it is undefined there)
    regimes = _literal(params.get("regimes", {}).get("default"))
    if isinstance(regimes, str):
        from .data import get_info
        from .pipeline.defenses import REGIMES

        tokens = [t.strip().lower() for t in regimes.split(",") if t.strip()]
        if tokens and all(t in REGIMES for t in tokens):
            jobs += [ModelJob(n, seed, r) for n in dict.fromkeys(names) for r in tokens
                     if r != "gce" or len(get_info(n).classes) >= 3]
    return jobs


def book_models(chapters: Iterable[str]) -> list[ModelJob]:
    """Every model the given chapters need, once each, in the order the chapters ask for them."""
    jobs: dict[ModelJob, None] = {}
    for chapter in chapters:
        for job in chapter_models(chapter):
            jobs.setdefault(job)
    return list(jobs)


def missing_data(names: Iterable[str], data_dir=None) -> list[tuple[str, str]]:
    """``(name, how to obtain it)`` for every data set of ``names`` with no file in the data folder."""
    from .data import get_info, locate
    from .data.datasets import DatasetNotFoundError

    missing = []
    for name in dict.fromkeys(names):
        try:
            locate(name, data_dir)
        except DatasetNotFoundError:
            missing.append((name, get_info(name).obtain))
    return missing


def check_data(names: Iterable[str], data_dir=None) -> None:
    """Raise :class:`DataMissingError` listing, in one screen, each missing data set and how to get it."""
    import os

    missing = missing_data(names, data_dir)
    if not missing:
        return
    root = paths.data_dir(data_dir)
    source = f"${paths.DATA_ENV}" if os.environ.get(paths.DATA_ENV) else f"the default; set ${paths.DATA_ENV} to change it"
    width = max(len(n) for n, _ in missing)
    lines = [f"the book needs {len(missing)} data set(s) that are not in {root} ({source}):"]
    lines += [f"  {name:{width}s}  {how}" for name, how in missing]
    lines.append(f"Put them there (or point {paths.DATA_ENV} at the folder that holds them, e.g. "
                 f"`{paths.DATA_ENV}=../shared/data make book`), then rerun; nothing was computed.")
    raise DataMissingError("\n".join(lines))


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block with ``n`` intra-op torch threads (None: leave the setting alone)."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _planned_images(job: ModelJob, profile) -> int:
    """Training images the job will process (epochs after the step budget x subset size)."""
    from .data import get_info
    from .models.training import epochs_for

    info = get_info(job.dataset)
    counts = info.extra.get("n_samples") or {}
    n = counts.get("train") or profile.data.train_size or 0
    if profile.data.train_size:
        n = min(n, profile.data.train_size) if n else profile.data.train_size
    cfg = profile.train
    return epochs_for(max(n, 1), cfg.batch_size, cfg.epochs, cfg.min_steps) * n


def prepare_models(profile, jobs: Sequence[ModelJob], *, device: str | None = None, threads: int | None = TRAIN_THREADS,
                   progress: bool = True, echo: bool = True) -> list[dict]:
    """Train (or load from the cache) every model of ``jobs`` at ``profile``, one at a time.

    Returns
    -------
    list of dict
        Per model: ``dataset``, ``seed``, ``source`` (``cache`` or ``trained``), ``seconds``,
        ``epochs``, ``accuracy``, ``balanced_accuracy``, ``auroc``, ``cache_key``.
    """
    from .pipeline import regime_model, trained_model
    from .weights import resolve_imagenet

    rows: list[dict] = []
    rate = None  # training images per second, measured on the models trained so far
    for i, job in enumerate(jobs, 1):
        label = f"[{i}/{len(jobs)}] {job.dataset}" + (f" {job.regime.upper()}" if job.regime else "")
        arch = profile.defense.arch if job.regime else profile.train.arch
        if echo:
            _, note = (None, "") if job.regime else resolve_imagenet(arch, profile.train.weights)
            size = (profile.defense.image_size or profile.data.image_size) if job.regime else profile.data.image_size
            sys.stderr.write(f"[medadv] prepare {label} (seed {job.seed}): {arch} at "
                             f"{size} px{', ' + note if note else ''}\n")
        start = time.perf_counter()
        with torch_threads(threads):
            if job.regime:
                tm = regime_model(job.dataset, job.regime, profile, seed=job.seed, device=device, progress=progress,
                                  desc=label)
            else:
                tm = trained_model(job.dataset, profile, seed=job.seed, device=device, progress=progress, desc=label)
        seconds = time.perf_counter() - start
        m = tm.metrics
        row = {"dataset": job.dataset, "seed": job.seed, "regime": job.regime, "source": "cache" if tm.cache.hit else "trained",
               "seconds": round(seconds, 2), "epochs": len(tm.history), "accuracy": m["accuracy"],
               "balanced_accuracy": m["balanced_accuracy"], "auroc": m["auroc"], "cache_key": tm.cache.key}
        rows.append(row)
        if not tm.cache.hit and not job.regime:  # regime models cost a different amount per image
            images = len(tm.history) * len(tm.train)
            rate = images / seconds if rate is None else (rate + images / seconds) / 2
        if echo:
            left = ""
            if rate and i < len(jobs):
                todo = sum(_planned_images(j, profile) for j in jobs[i:] if not j.regime)
                left = f"; at most about {todo / rate / 60:.0f} min for the remaining models if none is cached"
            sys.stderr.write(f"[medadv] prepare {label}: {row['source']} in {seconds:.0f} s, {row['epochs']} epochs, "
                             f"acc {m['accuracy']:.3f}, bal. acc {m['balanced_accuracy']:.3f}, AUROC {m['auroc']:.3f}"
                             f"{left}\n")
    return rows


def prepare_book(profile_name: str, chapters: Sequence[str], *, device: str | None = None,
                 progress: bool = True, echo: bool = True) -> list[dict]:
    """Check the data the chapters need, then train their models (the book's prepare stage)."""
    from .config import get_profile

    profile = get_profile(profile_name)
    jobs = book_models(chapters)
    check_data([j.dataset for j in jobs])
    if echo:
        sys.stderr.write(f"[medadv] prepare: {len(jobs)} model(s) at profile {profile.name} for "
                         f"{len(chapters)} chapter(s): {', '.join(j.dataset for j in jobs) or 'none'}\n")
    return prepare_models(profile, jobs, device=device, progress=progress, echo=echo)
