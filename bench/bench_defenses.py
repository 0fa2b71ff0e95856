"""Benchmark of the SSAT chapter's costs: AT-epoch / NT-epoch (target <= 2.2x), SSAT / AT per
labelled image (target <= 2.2x), and our C&W-L2 against ``torchattacks.CW`` (success, mean L2, time).

Every regime trains one epoch of the same seeded random data with the same model; the median of
``--repeats`` runs (after a warm-up) is reported. SSAT's unlabelled stream has as many images as the
labelled one, so per labelled image it does twice AT's work by construction (the paper's loss).

Run: ``python bench/bench_defenses.py --arch smallcnn --image-size 28 --n 512``.
torchattacks is optional: ``pip install --no-deps torchattacks``.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from medadv_lib.attacks import CWL2
from medadv_lib.defenses import SSAT, AdversarialTraining
from medadv_lib.models import build_model, train_model
from medadv_lib.models.training import CrossEntropy


def epoch_seconds(arch, size, n, objective, unlabelled, repeats):
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, size, size), generator=gen, dtype=torch.uint8)
    y = torch.arange(n) % 5
    times = []
    for r in range(repeats + 1):
        model = build_model(arch, in_channels=3, num_classes=5, image_size=size)
        start = time.perf_counter()
        train_model(model, x, y, epochs=1, batch_size=64, progress=False, objective=objective, device="cpu",
                    unlabelled=x if unlabelled else None, augment=False)
        if r:  # the first run is a warm-up
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def cw_comparison(arch, size, n, steps):
    model = build_model(arch, in_channels=3, num_classes=5, image_size=size).eval()
    x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # the model's own predictions as labels: every image starts correctly classified
        y = model(x).argmax(1)
    rows = []
    start = time.perf_counter()
    res = CWL2(model, c=1.0, steps=steps).run(x, y)
    rows.append(("medadv CWL2", float(res.success.float().mean()),
                 float((res.x_adv - x).flatten(1).norm(dim=1)[res.success].mean()), time.perf_counter() - start))
    try:
        import torchattacks
    except ImportError:
        print("torchattacks not installed (pip install --no-deps torchattacks): skipped")
        return rows
    start = time.perf_counter()
    adv = torchattacks.CW(model, c=1.0, kappa=0, steps=steps, lr=0.01)(x, y)
    ok = model(adv).argmax(1) != y
    rows.append(("torchattacks CW", float(ok.float().mean()), float((adv - x).flatten(1).norm(dim=1)[ok].mean()),
                 time.perf_counter() - start))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="smallcnn")
    ap.add_argument("--image-size", type=int, default=28)
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cw-steps", type=int, default=50)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    run = lambda obj, unl: epoch_seconds(args.arch, args.image_size, args.n, obj, unl, args.repeats)  # noqa: E731
    teacher = build_model(args.arch, in_channels=3, num_classes=5, image_size=args.image_size).eval()
    nt, at, ssat = run(CrossEntropy(), False), run(AdversarialTraining(), False), run(SSAT(), True)
    fixed = run(SSAT(pseudo_labels="teacher", teacher=teacher), True)
    print(f"{args.arch} at {args.image_size} px, {args.n} labelled images, 1 thread")
    print(f"NT epoch {nt:.2f} s | AT {at:.2f} s | SSAT {ssat:.2f} s | SSAT, fixed targets {fixed:.2f} s")
    print(f"AT / NT epoch:                 {at / nt:.2f}x (target <= 2.2x)")
    print(f"SSAT / AT per labelled image:  {ssat / at:.2f}x (target <= 2.2x)")
    print(f"SSAT with fixed targets / AT:  {fixed / at:.2f}x (one more forward pass of the teacher)")
    for name, success, l2, seconds in cw_comparison(args.arch, args.image_size, 64, args.cw_steps):
        print(f"{name:16s} success {success:.2f}  mean L2 {l2:.3f}  {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
