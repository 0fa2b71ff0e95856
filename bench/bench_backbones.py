"""Benchmark: fine-tuning and attack throughput of EfficientNet-Lite0 against ResNet-18.

For each backbone and image size, two rates in images per second:

* **train**: one SGD step (forward, cross-entropy, backward, update) in train mode, as
  :func:`medadv_lib.models.train_model` does per batch, channels-last on the CPU as there (without
  augmentation or data loading);
* **BIM-10**: a 10-step BIM attack (:class:`medadv_lib.attacks.BIM`, eps 2/256), in eval mode
  with the attack loop's default conv-BN folding, i.e. 10 forward + 10 input-gradient passes.

Each rate is the median over ``--repeats`` timed batches after one warm-up batch, by wall clock
and by process CPU time (steadier on a shared machine). The models are built as the pipeline
builds them (grey input, two classes: the chest X-ray setting; Lite0 from its ImageNet weights).

Run: ``python bench/bench_backbones.py --threads 1 --batch 8 --sizes 64 128``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from medadv_lib.attacks import BIM
from medadv_lib.models import build_model

BACKBONES = {"efficientnet_lite0": "imagenet", "resnet18": None}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device):
    _sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - start, time.process_time() - cpu


def measure(arch, size, *, batch, repeats, channels, classes, steps, device):
    """(train, attack) as dicts of wall and CPU images per second, plus the parameter count."""
    torch.manual_seed(0)
    model = build_model(arch, in_channels=channels, num_classes=classes, image_size=size, dropout=0.2,
                        weights=BACKBONES[arch]).to(device)
    x = torch.rand(batch, channels, size, size, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    x_train = x
    if device.type == "cpu":  # the layout train_model trains in on the CPU (oneDNN is faster on it)
        model.to(memory_format=torch.channels_last)
        x_train = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True)

    def train_step():
        model.train()
        loss = F.cross_entropy(model(x_train), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def attack():
        model.eval()
        BIM(model, eps=2 / 256, steps=steps)(x, y)

    rates = {}
    for name, fn in (("train", train_step), ("attack", attack)):
        fn()  # warm-up (allocator, kernels; the attack's folded eval copy is built here)
        times = [_time(fn, device) for _ in range(repeats)]
        rates[name] = {"wall": batch / statistics.median(w for w, _ in times),
                       "cpu": batch / statistics.median(c for _, c in times)}
    return rates, sum(p.numel() for p in model.parameters())


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 128])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10, help="BIM steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"batch {args.batch}, {args.repeats} timed batches (median) after 1 warm-up, {args.channels} channel(s), "
          f"{args.classes} classes, device {device}, threads {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"{'backbone':<20}{'px':>5}{'params':>9}{'train img/s':>13}{'(CPU)':>8}{f'BIM-{args.steps} img/s':>14}"
          f"{'(CPU)':>8}")
    rows = []
    for size in args.sizes:
        for arch in args.archs:
            rates, params = measure(arch, size, batch=args.batch, repeats=args.repeats, channels=args.channels,
                                    classes=args.classes, steps=args.steps, device=device)
            rows.append({"arch": arch, "size": size, "params": params, **{f"{k}_{m}": v[m] for k, v in rates.items()
                                                                         for m in ("wall", "cpu")}})
            print(f"{arch:<20}{size:>5}{params / 1e6:>8.2f}M{rates['train']['wall']:>13.1f}{rates['train']['cpu']:>8.1f}"
                  f"{rates['attack']['wall']:>14.2f}{rates['attack']['cpu']:>8.2f}", flush=True)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
