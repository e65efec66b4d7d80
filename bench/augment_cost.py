"""What on-the-fly augmentation costs: its share of a training epoch.

    python bench/augment_cost.py                 # 60000 rows, 7 repeats, numba
    python bench/augment_cost.py --quick         # CI: 6000 rows, 1 repeat
    python bench/augment_cost.py --backends numpy,numba --rows 6000

Per repeat and backend, in the order fastmlp.train.run does it, timed apart:
- augment: the epoch's random parameters (fastmlp.augmentation.sample_params) and
  the backend's ``augment`` op over every training image (--augment SPEC,
  default "default");
- train on augmented: benchlib.run_epoch on those images (the default recipe,
  as in compare.py, from the same initial model);
- train on plain: the same epoch on the unaugmented images (for comparison:
  augmented images carry more ink, ~32% nonzero pixels against ~19%, and the
  sparse first layer pays for it).

Reported: share = augment / (augment + train on augmented), the fraction of an
augmented epoch spent augmenting (the issue's target: <= 30%), and augment /
train on plain. Medians with min-max over the repeats; each repeat's share is
computed from that repeat's own timings (one run: the machine is noisy).

Before timing, the backend's op is checked against the NumPy reference on 256
images (rtol 1e-5, atol 1e-6: tests/test_augment.py finds them bit-identical).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import benchlib  # noqa: E402
from fastmlp import augmentation  # noqa: E402

CHECK_ROWS = 256
RTOL, ATOL = 1e-5, 1e-6
stats, log = benchlib.stats, benchlib.log


def augment_epoch(backend, aug, X, epoch, out):
    """One epoch's augmentation as fastmlp.train.run does it; returns seconds."""
    start = time.perf_counter()
    params = augmentation.sample_params(aug, len(X), augmentation.epoch_rng(0, epoch))
    backend.augment(X, params.A, params.D, params.thickness, out)
    return time.perf_counter() - start


def check(backend, reference, aug, X):
    params = augmentation.sample_params(aug, CHECK_ROWS, augmentation.epoch_rng(0, 0))
    want = reference.augment(X[:CHECK_ROWS], params.A, params.D, params.thickness,
                             np.empty_like(X[:CHECK_ROWS]))
    got = backend.augment(X[:CHECK_ROWS], params.A, params.D, params.thickness,
                          np.empty_like(X[:CHECK_ROWS]))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL,
                               err_msg=f"{backend.name} augment differs from the reference")


def cell(s, scale=1.0, fmt="{:.3f}"):
    return (f"{fmt.format(s['median'] * scale)} ({fmt.format(s['min'] * scale)}–"
            f"{fmt.format(s['max'] * scale)})")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"CI mode: {benchlib.QUICK_ROWS} rows, 1 repeat")
    p.add_argument("--rows", type=int, default=None, help="training rows (default 60000; quick 6000)")
    p.add_argument("--repeats", type=int, default=None, help="default 7; quick 1")
    p.add_argument("--backends", default="numba",
                   help="comma-separated (default numba; the reference takes ~14 s per 60000 images)")
    p.add_argument("--augment", default="default", help="the --augment spec (default: default)")
    p.add_argument("--wait-idle", type=float, default=None, metavar="SECONDS",
                   help="before each repeat, wait up to SECONDS for other processes to go idle "
                        "(default 120; quick 0)")
    p.add_argument("--json", metavar="PATH", help="write every measurement as JSON")
    p.add_argument("--markdown", metavar="PATH", help="also write the markdown table to PATH")
    args = p.parse_args(argv)
    args.rows = args.rows or (benchlib.QUICK_ROWS if args.quick else None)
    args.repeats = args.repeats or (1 if args.quick else 7)
    if args.wait_idle is None:
        args.wait_idle = 0.0 if args.quick else 120.0
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    info = benchlib.machine_info()
    for line in benchlib.header_lines(info, benchlib.blas_info()):
        log(line)
    aug = augmentation.parse(args.augment)
    if not aug.enabled:
        log(f"--augment {args.augment!r} augments nothing")
        return 2
    from fastmlp.data import load_dataset
    setup = benchlib.make_epoch_setup(load_dataset(), args.rows)
    backends = checked_backends(args, aug, setup)
    if backends is None:
        return 1
    X_aug = np.empty_like(setup.X)
    times = {b.name: {"augment": [], "train_augmented": [], "train_plain": [], "share": [],
                      "other_load": []} for b in backends}
    for repeat in range(args.repeats):  # interleaved, so that a load change hits every backend
        for backend in backends:
            measure(args, backend, aug, setup, X_aug, repeat, times[backend.name])
    md, report = tables(args, info, aug, setup, X_aug, times)
    benchlib.write_report(md, report, args.markdown, args.json)
    return 0


def checked_backends(args, aug, setup):
    """The backends of --backends, each checked against the reference and
    warmed up; None (with the reason logged) if one fails to load."""
    reference = benchlib.get_backend(benchlib.REFERENCE)
    backends = []
    for name in args.backends.split(","):
        module, reason = benchlib.load_backend(name)
        if module is None:
            log(f"backend {name} failed to load: {reason}")
            return None
        check(module, reference, aug, setup.X)
        log(f"{name}: augment matches the reference on {CHECK_ROWS} images "
            f"(rtol {RTOL:g}, atol {ATOL:g})")
        benchlib.warm_up_epoch(module, setup)
        backends.append(module)
    return backends


def measure(args, backend, aug, setup, X_aug, rep, t) -> None:
    """Repeat ``rep`` of ``backend``, appended to t: augmenting an epoch (into
    X_aug), training on it, training on the plain images, the augment's share."""
    aug_setup = benchlib.EpochSetup(setup.config, X_aug, setup.y, setup.lrs)
    benchlib.wait_for_idle(args.wait_idle, log=log)
    meter = benchlib.ForeignLoad()
    t["augment"].append(augment_epoch(backend, aug, setup.X, rep, X_aug))
    t["train_augmented"].append(
        benchlib.run_epoch(backend, aug_setup, benchlib.fresh_state(setup)).seconds)
    t["train_plain"].append(
        benchlib.run_epoch(backend, setup, benchlib.fresh_state(setup)).seconds)
    t["other_load"].append(meter.load())
    t["share"].append(t["augment"][-1] / (t["augment"][-1] + t["train_augmented"][-1]))
    log(f"  repeat {rep + 1}/{args.repeats} {backend.name}: augment {t['augment'][-1]:.3f} s, "
        f"train on augmented {t['train_augmented'][-1]:.3f} s, on plain "
        f"{t['train_plain'][-1]:.3f} s, share {100 * t['share'][-1]:.1f}%, other load "
        f"{t['other_load'][-1] if t['other_load'][-1] is None else round(t['other_load'][-1], 2)}")


def tables(args, info, aug, setup, X_aug, times):
    """(markdown, JSON report) of the measurements ``times`` (backend -> measure())."""
    nonzero = {"plain": float((setup.X != 0).mean()), "augmented": float((X_aug != 0).mean())}
    lines = ["# Augmentation cost", ""]
    lines += [f"- {line}" for line in benchlib.header_lines(info, benchlib.blas_info())]
    lines += [f"- {setup.n} rows, --augment {aug.spec()}, default training recipe (batch 128); "
              f"{args.repeats} repeats; nonzero pixels: {100 * nonzero['plain']:.1f}% plain, "
              f"{100 * nonzero['augmented']:.1f}% augmented", "",
              "| backend | augment s | train on augmented s | share of augmented epoch | "
              "train on plain s | augment / plain epoch | other load (CPUs) max |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    report = {"meta": info, "args": vars(args), "nonzero": nonzero, "backends": {}}
    for name, t in times.items():
        ratio = [a / p for a, p in zip(t["augment"], t["train_plain"])]
        loads = [x for x in t["other_load"] if x is not None]
        load = f"{max(loads):.2f}" if loads else "n/a"
        lines.append(f"| {name} | {cell(stats(t['augment']))} "
                     f"| {cell(stats(t['train_augmented']))} "
                     f"| **{cell(stats(t['share']), 100, '{:.1f}')}%** "
                     f"| {cell(stats(t['train_plain']))} | {cell(stats(ratio), 100, '{:.0f}')}% "
                     f"| {load} |")
        report["backends"][name] = {k: stats(v) if k != "other_load" else v for k, v in t.items()}
    return "\n".join(lines), report


if __name__ == "__main__":
    sys.exit(main())
