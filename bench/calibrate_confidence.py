"""Calibrate the "not sure" threshold (fastmlp/confidence.py) and report what it costs.

    python bench/calibrate_confidence.py VALIDATION_MODEL [--validation 5000]
        [--shipped fastmlp/pretrained/fastmlp-mnist.npz] [--max-error 0.002]

VALIDATION_MODEL is a checkpoint trained with ``--validation N`` (the shipped
recipe: fastmlp/pretrained/README.md), so the last N of the 60,000 training
images are images it never trained on: the threshold is chosen on those
alone. MNIST test is only reported: the rejection rate ("not sure") and the
accuracy of the answers still given, for that model and the shipped one.
"""

import argparse
import sys

import numpy as np

from fastmlp import checkpoint, confidence
from fastmlp.data import load_dataset
from fastmlp.evaluate import predict_proba
from fastmlp.kernels import get_backend


def row(name, probs, y, threshold) -> str:
    sure = probs.max(axis=1) >= threshold
    right = probs.argmax(axis=1) == y
    accepted = right[sure].mean() if sure.any() else float("nan")
    return (f"| {name} | {len(y)} | {right.mean() * 100:.2f}% | {(~sure).mean() * 100:.2f}% "
            f"| {accepted * 100:.2f}% | {(~right & sure).sum()} of {(~right).sum()} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="checkpoint trained with --validation N")
    parser.add_argument("--validation", type=int, default=5000, help="N (default 5000)")
    parser.add_argument("--shipped", default="fastmlp/pretrained/fastmlp-mnist.npz")
    parser.add_argument("--max-error", type=float, default=confidence.MAX_ERROR)
    args = parser.parse_args(argv)

    backend = get_backend("numpy")
    data = load_dataset()
    saved = checkpoint.load(args.model)
    trained_on = saved.meta.get("config", {})
    if trained_on.get("validation") != args.validation or trained_on.get("limit") not in (None, 60000):
        print(f"{args.model}: trained with validation={trained_on.get('validation')}, "
              f"limit={trained_on.get('limit')}; need validation={args.validation} on all "
              "60000 images", file=sys.stderr)
        return 2
    X_val, y_val = data.X_train[-args.validation:], data.y_train[-args.validation:]
    val_probs = predict_proba(saved.model, X_val, backend)
    threshold = confidence.calibrate(val_probs, y_val, args.max_error)
    print(f"threshold = {threshold:.6f} (lowest confidence whose accepted validation answers "
          f"are wrong at most {args.max_error:.2%} of the time)\n")
    print("| model, images | n | accuracy | not sure | accuracy when sure | wrong answers given |")
    print("|---|---:|---:|---:|---:|---:|")
    print(row("validation model, its validation split", val_probs, y_val, threshold))
    print(row("validation model, MNIST test", predict_proba(saved.model, data.X_test, backend),
              data.y_test, threshold))
    shipped = checkpoint.load(args.shipped).model
    print(row("shipped model, MNIST test", predict_proba(shipped, data.X_test, backend),
              data.y_test, threshold))
    return 0


if __name__ == "__main__":
    sys.exit(main())
