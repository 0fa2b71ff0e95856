"""Benchmark: our PGD against torchattacks' PGD and against the bare floor; SMIA's step against BIM's.

The floor is the least work any L-infinity PGD must do *on the given model*: per step one forward
pass and one backward pass for the gradient with respect to the input only (parameters frozen),
plus the update. All contenders run the same model, batch, budget and number of steps in the same
process, interleaved, and the median over repeats (after a warm-up) is reported as images per
second, by wall clock and by process CPU time (steadier on a shared machine).

Our PGD runs with its default optimisations, printed in the header: the loop's forward/backward
passes use a cached eval copy of the model with every BatchNorm folded into the preceding
convolution and, on the CPU, channels-last weights (``fuse_bn=True``; see
``medadv_lib/attacks/_fast.py``). That is how it can beat the floor, which runs the model as given;
the row "medadv PGD (fuse_bn=False)" shows our loop on the model as given (``--no-unfused`` drops it).

SMIA (Qi et al., ICLR 2021) needs a second forward pass per step (the prediction on the input plus
the smoothed previous step) and the gradient through both; its rows "medadv BIM" and "medadv SMIA"
run at the same batch, budget and steps, and the SMIA-step / BIM-step cost ratio is printed (the
SMIA issue's target: at most 2.5x on the ``cpu`` ResNet-18, i.e. ``--image-size 28``; ``--no-smia``
drops the rows).

Run: ``python bench/bench_attacks.py --arch resnet18 --image-size 32 --batch 64 --steps 10``.
torchattacks is optional: ``pip install --no-deps torchattacks``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from medadv_lib.attacks import BIM, PGD, SMIA
from medadv_lib.attacks._fast import EVAL_COPIES
from medadv_lib.models import build_model


def floor_pgd(model, x, y, *, eps, alpha, steps):
    """The bare minimum: forward + input-only gradient per step, parameters frozen, no checks."""
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        lo, hi = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
        x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp_(lo, hi)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(model(x_adv), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x_adv)
            x_adv = torch.add(x_adv.detach(), grad.sign_(), alpha=alpha).clamp_(lo, hi)
        return x_adv
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device):
    """Wall-clock and process CPU seconds of one call (CPU time is steadier on a shared machine)."""
    _sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - start, time.process_time() - cpu


def build_runners(model, x, y, *, eps, alpha, steps, unfused=True, smia=True):
    runners = {"medadv PGD": lambda: PGD(model, eps=eps, alpha=alpha, steps=steps, seed=0)(x, y)}
    if smia:
        runners["medadv BIM"] = lambda: BIM(model, eps=eps, alpha=alpha, steps=steps)(x, y)
        runners["medadv SMIA"] = lambda: SMIA(model, eps=eps, alpha=alpha, steps=steps)(x, y)
    if unfused:
        runners["medadv PGD (fuse_bn=False)"] = lambda: PGD(model, eps=eps, alpha=alpha, steps=steps, seed=0,
                                                            fuse_bn=False)(x, y)
    try:
        import torchattacks
    except ImportError:
        runners["torchattacks PGD"] = None
    else:
        attack = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
        runners["torchattacks PGD"] = lambda: attack(x, y)
    runners["floor"] = lambda: floor_pgd(model, x, y, eps=eps, alpha=alpha, steps=steps)
    return runners


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eps", type=float, default=8 / 256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--no-unfused", dest="unfused", action="store_false",
                        help="skip the row of our PGD with fuse_bn=False")
    parser.add_argument("--no-smia", dest="smia", action="store_false",
                        help="skip the BIM and SMIA rows (SMIA-step / BIM-step cost ratio)")
    parser.add_argument("--hfc", action="store_true",
                        help="also run bench/bench_hfc.py (HFC / BIM step ratio, mixture fit time per K) on the "
                             "same architecture, image size, batch and device")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model(args.arch, in_channels=args.channels, num_classes=args.classes,
                        image_size=args.image_size).to(device).eval()
    x = torch.rand(args.batch, args.channels, args.image_size, args.image_size, device=device)
    y = torch.randint(0, args.classes, (args.batch,), device=device)
    alpha = args.eps / 5
    runners = build_runners(model, x, y, eps=args.eps, alpha=alpha, steps=args.steps, unfused=args.unfused,
                            smia=args.smia)
    fast = EVAL_COPIES.get(model)
    optimisations = fast.describe() if fast is not None else "none apply to this model (no foldable BatchNorm)"
    active = {name: fn for name, fn in runners.items() if fn is not None}

    for fn in active.values():  # warm-up: allocator, kernels, lazy inits
        fn()
    times = {name: [] for name in active}
    names = list(active)
    for r in range(args.repeats):
        # rotate the order so drift on a shared machine hits every contender alike
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(_time(active[name], device))

    wall = {name: statistics.median(w for w, _ in t) for name, t in times.items()}
    cpu = {name: statistics.median(c for _, c in t) for name, t in times.items()}
    rate = {name: args.batch / s for name, s in wall.items()}
    cpu_rate = {name: args.batch / s for name, s in cpu.items()}
    print(f"PGD, {args.arch} {args.image_size}px, batch {args.batch}, {args.steps} steps, "
          f"{args.repeats} repeats (median), device {device}, threads {torch.get_num_threads()}, "
          f"torch {torch.__version__}")
    print(f"medadv PGD optimisations (fuse_bn=True): {optimisations}")
    print(f"{'method':<28}{'images/s':>10}{'median s':>10}{'img/CPU-s':>11}")
    for name in runners:
        if name in rate:
            print(f"{name:<28}{rate[name]:>10.1f}{wall[name]:>10.3f}{cpu_rate[name]:>11.2f}")
        else:
            print(f"{name:<28}{'n/a':>10}   (not installed: pip install --no-deps torchattacks)")
    result = {"images_per_s": rate, "images_per_cpu_s": cpu_rate, "times": times, "optimisations": optimisations}
    ours = rate["medadv PGD"]
    if "torchattacks PGD" in rate:
        result["ours_over_torchattacks"] = ours / rate["torchattacks PGD"]
        result["ours_over_torchattacks_cpu"] = cpu_rate["medadv PGD"] / cpu_rate["torchattacks PGD"]
        print(f"ratio ours / torchattacks (speed-up): {result['ours_over_torchattacks']:.2f} wall, "
              f"{result['ours_over_torchattacks_cpu']:.2f} CPU time")
    result["floor_over_ours"] = rate["floor"] / ours
    result["floor_over_ours_cpu"] = cpu_rate["floor"] / cpu_rate["medadv PGD"]
    print(f"ratio floor / ours (overhead):       {result['floor_over_ours']:.2f} wall, "
          f"{result['floor_over_ours_cpu']:.2f} CPU time")
    if "medadv PGD (fuse_bn=False)" in rate:
        result["fused_over_unfused"] = ours / rate["medadv PGD (fuse_bn=False)"]
        result["fused_over_unfused_cpu"] = cpu_rate["medadv PGD"] / cpu_rate["medadv PGD (fuse_bn=False)"]
        print(f"ratio fuse_bn on / off (speed-up):   {result['fused_over_unfused']:.2f} wall, "
              f"{result['fused_over_unfused_cpu']:.2f} CPU time")
    if "medadv SMIA" in rate:
        # same steps and batch, so the ratio of run times is the ratio of per-step costs
        result["smia_over_bim"] = wall["medadv SMIA"] / wall["medadv BIM"]
        result["smia_over_bim_cpu"] = cpu["medadv SMIA"] / cpu["medadv BIM"]
        print(f"ratio SMIA step / BIM step (cost):   {result['smia_over_bim']:.2f} wall, "
              f"{result['smia_over_bim_cpu']:.2f} CPU time (target <= 2.5)")
    if args.hfc:
        import importlib.util
        from pathlib import Path

        spec = importlib.util.spec_from_file_location("bench_hfc", Path(__file__).with_name("bench_hfc.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        result["hfc"] = module.main(["--arch", args.arch, "--image-size", str(args.image_size), "--channels",
                                     str(args.channels), "--batch", str(args.batch), "--steps", str(args.steps),
                                     "--repeats", str(args.repeats), "--device", args.device])
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
