"""``medadv``: the command line (data, train, run, book, bench)."""
from __future__ import annotations

import argparse
import logging
import os
import runpy
import sys
import time
from pathlib import Path

from . import paths


class UsageError(ValueError):
    """A command-line mistake the user can fix; ``main`` prints it as ``medadv: error: ...``."""


def _data_folder(data_dir) -> Path:
    """The data folder, which must exist and be a folder (``data list``/``verify`` otherwise report nothing)."""
    root = paths.data_dir(data_dir)
    how = "--data-dir" if data_dir is not None else (
        f"${paths.DATA_ENV}" if os.environ.get(paths.DATA_ENV) else "the default")
    if not root.exists():
        raise UsageError(f"the data folder {root} (from {how}) does not exist; create it and put the datasets there "
                         f"(`medadv data download NAME`), or point --data-dir / ${paths.DATA_ENV} at the right folder")
    if not root.is_dir():
        raise UsageError(f"the data folder {root} (from {how}) is a regular file, not a folder; "
                         f"point --data-dir / ${paths.DATA_ENV} at the folder holding the datasets")
    return root


def _device(text: str) -> str:
    """argparse type of ``--device``: the grammar of :attr:`Profile.device` (CUDA availability is checked later)."""
    from .config import _DEVICE

    if _DEVICE.fullmatch(text.strip()) is None:
        raise argparse.ArgumentTypeError(f"invalid device {text!r}; use cpu, cuda, cuda:N (N a GPU index) or auto")
    return text.strip()


def _cmd_data_list(args) -> int:
    from .data import dataset_names, load_dataset, verify
    from .data.datasets import DatasetNotFoundError

    print(f"data folder: {_data_folder(args.data_dir)}")
    print(f"{'dataset':20s} {'status':34s} {'where':s}")
    bad = 0
    for name in args.names or dataset_names():
        try:
            path, check = verify(name, args.data_dir)
        except DatasetNotFoundError:
            print(f"{name:20s} {'missing':34s} -")
            continue
        status = "found, folder (no checksum)" if check is None else (
            f"found, verified ({check.how})" if check.ok else "found, CHECKSUM MISMATCH")
        print(f"{name:20s} {status:34s} {path}")
        bad += check is not None and not check.ok
        if check is None or check.ok:
            try:
                ds = load_dataset(name, data_dir=args.data_dir)
            except ValueError as err:  # DataFormatError and friends: report, keep listing the others
                print(f"{'':20s}   UNREADABLE: {err}")
                bad += 1
                continue
            for split in ("train", "val", "test"):
                counts = ", ".join(f"{c}: {n}" for c, n in zip(ds.classes, ds[split].class_counts(ds.num_classes)))
                note = "  [carved from train: seeded, stratified]" if split == "val" and not ds.info.has_val else ""
                print(f"{'':20s}   {split:5s} {len(ds[split]):6d}  ({counts}){note}")
    return 1 if bad else 0


def _cmd_data_verify(args) -> int:
    from .data import dataset_names, verify
    from .data.datasets import DatasetNotFoundError

    root = _data_folder(args.data_dir)
    bad = found = 0
    for name in args.names or dataset_names():
        try:
            path, check = verify(name, args.data_dir)
        except DatasetNotFoundError:
            if args.names:
                print(f"MISSING   {name}")
                bad += 1
            continue
        found += 1
        if check is None:
            print(f"UNCHECKED {name:16s} {path} (a folder has no checksum)")
        elif check.ok:
            print(f"OK        {name:16s} {path} ({check.how})")
        else:
            bad += 1
            print(f"MISMATCH  {name:16s} {path}\n          expected {', '.join(check.expected) or 'none known'}\n"
                  f"          actual   sha256 {check.actual_sha256}")
    print(f"{found} dataset file(s) found in {root}, {bad} problem(s)")
    if not found:
        print(f"no dataset found in {root}: put the files there (`medadv data download NAME` for MedMNIST) or "
              f"point --data-dir / ${paths.DATA_ENV} at the folder holding them", file=sys.stderr)
    return 1 if bad or not found else 0


def _cmd_data_download(args) -> int:
    from .data import download

    for name in args.names:
        print(f"{name}: {download(name, args.data_dir, size=args.size)} (MD5 verified)")
    return 0


def _cmd_train(args) -> int:
    from .config import get_profile
    from .pipeline import default_datasets, trained_model

    from .prepare import torch_threads

    overrides = list(args.set or [])
    if args.device is not None:  # validated with the profile, so --device and --set device agree
        overrides.append(("device", args.device))
    profile = get_profile(args.profile, overrides)
    device = profile.resolved_device()  # ConfigError naming the fix when CUDA is asked for but absent
    names = args.dataset or default_datasets()
    cfg = profile.train
    budget = f" (at least {cfg.min_steps} SGD steps)" if cfg.min_steps else ""
    print(f"profile {profile.name}: {cfg.arch} at {profile.data.image_size} px, {cfg.epochs} epochs{budget}, "
          f"class weights {cfg.class_weights}, train subset {profile.data.train_size}, "
          f"device {device}, {args.threads or 'default'} torch thread(s)")
    header = f"{'dataset':16s} {'acc':>6s} {'bal.acc':>7s} {'AUROC':>6s} {'n_test':>6s} {'seconds':>8s}  source"
    print(header)
    for name in names:
        start = time.perf_counter()
        with torch_threads(args.threads):
            tm = trained_model(name, profile, seed=args.seed, device=device)
        m = tm.metrics
        print(f"{name:16s} {m['accuracy']:6.3f} {m['balanced_accuracy']:7.3f} {m['auroc']:6.3f} {m['n']:6d} "
              f"{time.perf_counter() - start:8.1f}  {'cache' if tm.cache.hit else 'trained'} ({tm.cache.key})")
    return 0


def _cmd_run(args) -> int:
    from .book import BookError, run_chapter

    try:
        run = run_chapter(args.chapter, profile=args.profile, parameters=dict(args.param or []), device=args.device,
                          output=args.output, timeout=args.timeout)
    except BookError as err:
        print(f"medadv: error: {err}", file=sys.stderr)
        return 2 if isinstance(err, ValueError) else 1
    return 0 if run.path.is_file() else 1


def _cmd_book(args) -> int:
    from .book import BookError, build_book

    try:
        build_book(profile=args.profile, chapters=args.chapters, timeout=args.timeout, execute=not args.no_execute,
                   prepare=not args.no_prepare, prepare_only=args.prepare_only)
    except BookError as err:
        print(f"medadv: error: {err}", file=sys.stderr)
        return 2 if isinstance(err, ValueError) else 1
    return 0


def _cmd_cache_clean(args) -> int:
    from .cache import Cache

    cache = Cache(args.cache_dir, clean=False)
    report = cache.clean_debris(legacy_age_s=args.older_than * 3600)
    for path in report.removed:
        print(f"removed {path}")
    for path in report.kept:
        print(f"kept    {path} (a running process, or one on another host, may still write it)")
    print(f"{cache.root}: {report}")
    return 0


def _cmd_bench(args) -> int:
    script = paths.REPO_ROOT / "bench" / f"bench_{args.what}.py"
    if not script.is_file():
        print(f"benchmark script {script} not found (benchmarks run from a checkout of the repository)", file=sys.stderr)
        return 2
    sys.argv = [str(script), *args.rest]
    runpy.run_path(str(script), run_name="__main__")
    return 0



def _cmd_weights(args) -> int:
    from .weights import WeightsChecksumError, WeightsDownloadError, download_torchvision_weights

    for arch in args.archs:
        try:
            path = download_torchvision_weights(arch, variant=args.variant, directory=args.dir,
                                                progress=not args.quiet)
        except (WeightsDownloadError, WeightsChecksumError) as err:
            print(f"medadv: error: {err}", file=sys.stderr)
            return 1
        print(f"{arch}: {path} (sha256 matches torchvision's published prefix); pass it as "
              f"build_model(..., weights={str(path)!r}) or as a profile's train.weights")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medadv", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress messages")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="list, verify or download datasets").add_subparsers(dest="action", required=True)
    for action, func, help_ in (("list", _cmd_data_list, "which datasets are found, verified, their split sizes"),
                                ("verify", _cmd_data_verify, "check every file found; non-zero exit on a mismatch"),
                                ("download", _cmd_data_download, "download MedMNIST files (MD5-checked)")):
        p = data.add_parser(action, help=help_)
        p.add_argument("names", nargs="*" if action != "download" else "+", help="dataset names (default: all)")
        p.add_argument("--data-dir", default=None, help=f"data folder (default ${paths.DATA_ENV} or data/)")
        if action == "download":
            p.add_argument("--size", type=int, default=28, choices=(28, 64, 128, 224))
        p.set_defaults(func=func)

    profile_help = "smoke (CI), cpu (laptop) or paper (GPU)"
    train = sub.add_parser("train", help="train (or load from the cache) and evaluate the models of a profile")
    train.add_argument("--dataset", action="append", help="dataset name (repeatable; default: the offline five)")
    train.add_argument("--profile", default="smoke", help=profile_help)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default=None, type=_device, help="cpu, cuda or cuda:N (default: the profile's)")
    train.add_argument("--set", nargs=2, action="append", metavar=("KEY", "VALUE"), help="override, e.g. train.epochs 2")
    train.add_argument("--threads", type=int, default=None,
                       help="torch intra-op threads while training (weights depend on it; `medadv book` uses 2)")
    train.set_defaults(func=_cmd_train)

    run = sub.add_parser("run", help="execute one chapter with papermill")
    run.add_argument("chapter", help="chapter name (e.g. data_and_models) or path to its .md")
    run.add_argument("--profile", default=None, help=profile_help)
    run.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), help="chapter parameter")
    run.add_argument("--device", default=None, choices=("cpu", "cuda"))
    run.add_argument("--output", default=None, help="executed notebook path")
    run.add_argument("--timeout", type=int, default=1800, help="per-cell timeout in seconds")
    run.set_defaults(func=_cmd_run)

    book = sub.add_parser("book", help="execute every chapter and render the site")
    book.add_argument("--profile", default=None, help=profile_help + " (default: paper with CUDA, else cpu)")
    book.add_argument("--chapters", nargs="*", default=None, help="only these chapters")
    book.add_argument("--timeout", type=int, default=1800,
                      help="per-cell timeout in seconds, a guard against hangs (through make: ARGS=\"--timeout 7200\")")
    book.add_argument("--no-execute", action="store_true", help="render the notebooks executed last time")
    book.add_argument("--prepare-only", action="store_true",
                      help="check the data and train every model the chapters need, then stop")
    book.add_argument("--no-prepare", action="store_true",
                      help="skip the prepare stage (chapters then train missing models in their cells)")
    book.set_defaults(func=_cmd_book)

    cache = sub.add_parser("cache", help="maintain the cache folder").add_subparsers(dest="action", required=True)
    clean = cache.add_parser("clean", help="remove the folders of interrupted writes (*.tmp-*) no live process owns")
    clean.add_argument("--cache-dir", default=None, help=f"cache folder (default ${paths.CACHE_ENV} or .cache/)")
    clean.add_argument("--older-than", type=float, default=24.0, metavar="HOURS",
                       help="age after which ownerless or other-host temporary folders are removed (default 24)")
    clean.set_defaults(func=_cmd_cache_clean)

    bench = sub.add_parser("bench", help="speed benchmarks against peers (ratios)")
    bench.add_argument("what", choices=("attacks", "defenses", "detectors"))
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="options passed to the benchmark")
    bench.set_defaults(func=_cmd_bench)

    weights = sub.add_parser("weights", help="fetch torchvision ImageNet weights (needs network; verified)")
    weights_sub = weights.add_subparsers(dest="action", required=True)
    download = weights_sub.add_parser("download", help="download and hash-check torchvision's ImageNet file(s)")
    download.add_argument("archs", nargs="+", choices=("resnet18", "resnet50", "vgg16"))
    download.add_argument("--variant", default="IMAGENET1K_V1", help="torchvision weights enum member")
    download.add_argument("--dir", default=None, help="target folder (default <cache dir>/weights)")
    download.add_argument("--quiet", action="store_true", help="no progress bar")
    download.set_defaults(func=_cmd_weights)
    return parser


#: Command-line options holding paths; made absolute against the folder the command was run from.
_PATH_OPTIONS = ("output", "data_dir")


def absolute_paths(args: argparse.Namespace) -> argparse.Namespace:
    """Fix every user-given relative path to the folder the command was run from, before any work.

    The folder variables (``MEDADV_DATA_DIR``, ``MEDADV_CACHE_DIR``, ``MEDADV_OUTPUT_DIR``) are
    rewritten in the environment that chapter kernels inherit (they run in ``book/``), and the
    path options in ``args``.
    """
    paths.absolute_environment()
    for name in _PATH_OPTIONS:
        value = getattr(args, name, None)
        if value:
            setattr(args, name, str(paths.absolute_path(value)))
    return args


def main(argv: list[str] | None = None) -> int:
    args = absolute_paths(build_parser().parse_args(argv))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from .cache import CacheMissError

    # User mistakes end in one line, never a traceback. ConfigError, ChecksumError, DataFormatError
    # and UsageError are ValueErrors; DatasetNotFoundError, DownloadError and CacheLocationError are
    # OSErrors; KeyError is an unknown dataset or attack name.
    try:
        return int(args.func(args) or 0)
    except (CacheMissError, KeyError, ValueError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"medadv: error: {message}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"medadv: error: {_os_message(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medadv: interrupted (completed cache entries are kept; partial ones are never trusted)", file=sys.stderr)
        return 130


def _os_message(err: OSError) -> str:
    """Our own OSErrors carry a full message; a raw one from the OS gets the path and what to check."""
    if err.filename is None or not err.strerror:
        return str(err)
    where = f"{err.filename}" + (f" -> {err.filename2}" if err.filename2 else "")
    return (f"{err.strerror}: {where}. Check that the path exists, that a folder is given where one is expected "
            "(not a regular file) and that you may write there; set MEDADV_DATA_DIR / MEDADV_CACHE_DIR / "
            "MEDADV_OUTPUT_DIR or the command's path option to another location.")


if __name__ == "__main__":
    sys.exit(main())
