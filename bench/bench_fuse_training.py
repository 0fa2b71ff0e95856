"""Benchmark: FGSM adversarial training with conv-BN folding at its default against ``fuse_bn=False``.

A training loop that attacks every mini-batch changes the model between calls (each optimiser step),
so the folded evaluation copy of :mod:`medadv_lib.attacks._fast` can never be reused. The cache
detects this after ``EVAL_COPIES.max_wasted_builds`` copies that were never reused and then runs
the attack unfused, so folding left at its default must cost (almost) nothing here. This script
measures it on the ``cpu`` profile's model, a ResNet-18 on 28 px PneumoniaMNIST images
(Goodfellow et al. 2015 for FGSM adversarial training): every mini-batch is replaced by its FGSM
adversarial version, crafted on the model in train mode, and the model takes one SGD step on it.

Modes (each from the same seeded initial model and the same batches):

``default``
    ``FGSM(model, eps)``: folding on, switched off by the cache after the first wasted copies.
``off``
    ``FGSM(model, eps, fuse_bn=False)``.
``rebuild``
    Folding on with the switch-off disabled (``max_wasted_builds`` huge): the behaviour before the
    fix, a deep copy + trace + fold on every call. Only with ``--modes ... rebuild``.

The whole loop and the attack calls alone are timed (wall clock and process CPU time); the
training step itself is the same in every mode, so the attack-only columns are the less noisy
comparison on a shared machine. The last loss differs slightly between modes: folded and unfused
attacks differ by float rounding, which flips a few gradient signs, and training amplifies it.

Run: ``python bench/bench_fuse_training.py --images 600 --epochs 1 --threads 1 --repeats 2``
(data: ``MEDADV_DATA_DIR`` as for the book).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from medadv_lib.attacks import FGSM
from medadv_lib.attacks._fast import EVAL_COPIES
from medadv_lib.data import load_dataset
from medadv_lib.models import build_model

MODES = ("default", "off", "rebuild")


def train_fgsm(x, y, *, mode, epochs, batch, eps, lr, seed=0):
    """FGSM adversarial training; returns wall seconds, CPU seconds, copies built, final loss."""
    torch.manual_seed(seed)
    model = build_model("resnet18", in_channels=x.shape[1], num_classes=int(y.max()) + 1, image_size=x.shape[-1])
    attack = FGSM(model, eps=eps, seed=seed, fuse_bn=mode != "off")
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    order = torch.Generator().manual_seed(seed)
    saved = EVAL_COPIES.max_wasted_builds
    if mode == "rebuild":
        EVAL_COPIES.max_wasted_builds = 10**9
    builds = EVAL_COPIES.builds
    attack_wall = attack_cpu = 0.0
    start, cpu = time.perf_counter(), time.process_time()
    try:
        model.train()
        for _ in range(epochs):
            perm = torch.randperm(len(y), generator=order)
            for s in range(0, len(y), batch):
                idx = perm[s:s + batch]
                t0, c0 = time.perf_counter(), time.process_time()
                x_adv = attack(x[idx], y[idx])  # the model is in train mode; the attack uses eval
                attack_wall += time.perf_counter() - t0
                attack_cpu += time.process_time() - c0
                loss = F.cross_entropy(model(x_adv), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    finally:
        EVAL_COPIES.max_wasted_builds = saved
    return {"wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu,
            "attack_wall_s": attack_wall, "attack_cpu_s": attack_cpu,
            "builds": EVAL_COPIES.builds - builds, "last_loss": float(loss.detach())}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600, help="training images (a seeded subset)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--eps", type=float, default=2 / 256)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=["default", "off"])
    parser.add_argument("--repeats", type=int, default=1, help="runs per mode, order rotated; medians reported")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    train = load_dataset("pneumoniamnist", args.image_size).splits["train"]
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:args.images]
    x, y = train.images[pick].float().div(255), train.labels[pick]

    runs = {mode: [] for mode in args.modes}
    for r in range(args.repeats):
        # rotate the order so drift on a shared machine hits every mode alike
        for mode in args.modes[r % len(args.modes):] + args.modes[:r % len(args.modes)]:
            runs[mode].append(train_fgsm(x, y, mode=mode, epochs=args.epochs, batch=args.batch, eps=args.eps,
                                         lr=args.lr))
    rows = {mode: {key: (statistics.median(run[key] for run in mode_runs) if key.endswith("_s") else
                         mode_runs[0][key]) for key in mode_runs[0]} for mode, mode_runs in runs.items()}
    print(f"FGSM adversarial training, resnet18 {args.image_size}px pneumoniamnist, {len(y)} images, "
          f"{args.epochs} epoch(s), batch {args.batch}, eps {args.eps:g}, threads {torch.get_num_threads()}, "
          f"{args.repeats} repeat(s) (median), torch {torch.__version__}")
    print(f"{'fuse_bn':<10}{'wall s':>9}{'CPU s':>9}{'attack wall s':>15}{'attack CPU s':>14}{'copies':>8}"
          f"{'last loss':>11}")
    for mode, row in rows.items():
        print(f"{mode:<10}{row['wall_s']:>9.2f}{row['cpu_s']:>9.2f}{row['attack_wall_s']:>15.2f}"
              f"{row['attack_cpu_s']:>14.2f}{row['builds']:>8d}{row['last_loss']:>11.4f}")
    result = {"rows": rows, "runs": runs}
    for mode in ("default", "rebuild"):
        if mode in rows and "off" in rows:
            for key in ("wall_s", "cpu_s", "attack_wall_s", "attack_cpu_s"):
                result[f"{mode}_over_off_{key[:-2]}"] = rows[mode][key] / rows["off"][key]
            print(f"time ratio {mode} / off: {result[f'{mode}_over_off_wall']:.3f} wall, "
                  f"{result[f'{mode}_over_off_cpu']:.3f} CPU; attack calls only: "
                  f"{result[f'{mode}_over_off_attack_wall']:.3f} wall, {result[f'{mode}_over_off_attack_cpu']:.3f} CPU")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
