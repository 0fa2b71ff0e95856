"""Benchmark: the cost of HFC (Yao et al., MICCAI 2021): one HFC step against one BIM step, and the mixture fit per K.

* **Step ratio.** BIM with and without the HFC constraint, on the same model, batch, budget and
  number of steps, interleaved, median over repeats after a warm-up; the ratio is HFC's time per
  step over BIM's (target: at most 1.5, issue 10: all components and layers are scored in one
  batched torch pass, no numpy round trip).
* **Fit table.** The wall time of :func:`medadv_lib.attacks.hfc.fit_hfc_mixtures` (one
  ``BayesianGaussianMixture`` per class and layer, full covariance, ``n_init=2``,
  ``max_iter=1000``) per K, on spatial-mean features of the HFC layers.

With ``--dataset NAME --profile P`` both run on that profile's trained model and its clean
training images (read from the cache: ``MEDADV_CACHE_DIR``; never trained here); otherwise on a
freshly initialised model and random images (the fit time then depends on the same sizes, but
the features are not a trained network's).

Run: ``python bench/bench_hfc.py --dataset chestxray --profile cpu --k 1,2,8,64`` (or
``medadv bench attacks --hfc``).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch


def _model_and_images(args):
    from medadv_lib.models import build_model

    if args.dataset:
        from medadv_lib.config import get_profile
        from medadv_lib.data import stratified_subset
        from medadv_lib.pipeline import trained_model

        tm = trained_model(args.dataset, get_profile(args.profile), device=args.device, progress=False)
        ref = tm.train.subset(stratified_subset(tm.train.labels, args.n_reference, 0))
        return tm.model, ref.float(), ref.labels, f"{args.dataset} ({args.profile} model)"
    torch.manual_seed(0)
    model = build_model(args.arch, in_channels=args.channels, num_classes=args.classes,
                        image_size=args.image_size).to(args.device).eval()
    x = torch.rand(args.n_reference, args.channels, args.image_size, args.image_size)
    return model, x, torch.arange(args.n_reference) % args.classes, f"random {args.arch} {args.image_size}px"


def step_ratio(model, x, y, constraint, *, eps, steps, repeats, device):
    """Median seconds of BIM and of BIM + the constraint (same steps); returns (bim_s, hfc_s)."""
    from medadv_lib.attacks import BIM

    target = (y + 1) % int(model(x[:1]).shape[1])
    runners = {"bim": BIM(model, eps=eps, alpha=eps / 40, steps=steps, targeted=True, seed=0),
               "hfc": BIM(model, eps=eps, alpha=eps / 40, steps=steps, targeted=True, seed=0,
                          penalties=[constraint])}
    for atk in runners.values():  # warm-up
        atk(x, y, target=target)
    times = {k: [] for k in runners}
    names = list(runners)
    for r in range(repeats):
        for name in names[r % 2:] + names[:r % 2]:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            runners[name](x, y, target=target)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["bim"]), statistics.median(times["hfc"])


def main(argv=None) -> dict:
    from medadv_lib.attacks.hfc import HFCConstraint, default_hfc_layers, fit_hfc_mixtures
    from medadv_lib.detectors import extract_features

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=None, help="a data set whose cached profile model is used")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--n-reference", type=int, default=1000, help="clean training images per fit")
    parser.add_argument("--k", default="1,2,8", help="comma-separated K of the fit table (e.g. 1,2,8,64)")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eps", type=float, default=8 / 256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, x_ref, y_ref, what = _model_and_images(args)
    layers = default_hfc_layers(model, x_ref[:1].to(device))
    feats = extract_features(model, x_ref, layers, labels=y_ref)
    dims = sorted({int(a.shape[1]) for a in feats.layers.values()})
    print(f"HFC on {what}: {len(layers)} layers (dims {dims}), {len(x_ref)} reference images, "
          f"device {device}, threads {torch.get_num_threads()}")
    fits, mixtures = {}, {}
    print(f"{'K':>4}{'fit s':>10}{'s per mixture':>15}")
    for k in [int(v) for v in args.k.split(",") if v.strip()]:
        start = time.perf_counter()
        mixtures[k] = fit_hfc_mixtures(feats.layers, feats.labels, n_components=k, seed=0)
        fits[k] = time.perf_counter() - start
        n_mix = sum(len(v) for v in mixtures[k].values())
        print(f"{k:>4}{fits[k]:>10.2f}{fits[k] / n_mix:>15.3f}")
    k0 = min(mixtures)
    constraint = HFCConstraint(mixtures[k0])
    x = x_ref[:args.batch].to(device)
    y = y_ref[:args.batch].to(device)
    bim_s, hfc_s = step_ratio(model, x, y, constraint, eps=args.eps, steps=args.steps, repeats=args.repeats,
                              device=device)
    ratio = hfc_s / bim_s
    print(f"BIM step {1000 * bim_s / args.steps:.1f} ms, HFC step (K={k0}) {1000 * hfc_s / args.steps:.1f} ms, "
          f"batch {len(x)}: ratio HFC / BIM step = {ratio:.2f} (target <= 1.5)")
    return {"fit_seconds": fits, "bim_step_s": bim_s / args.steps, "hfc_step_s": hfc_s / args.steps,
            "step_ratio": ratio, "layers": layers}


if __name__ == "__main__":
    main(sys.argv[1:])
