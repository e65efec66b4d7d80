"""Digits by writers MNIST never saw: scikit-learn's 1,797 8x8 scans.

``sklearn.datasets.load_digits`` (UCI optdigits: 43 writers, 32x32 bitmaps
counted down to 8x8 blocks of 0..16) ships with scikit-learn, offline. Each
digit is upscaled to 64x64 (bilinear, and nearest for the blocky view) and
read through the same path as a user's picture (preprocess.normalize_digit,
then the model): an external check nobody here made and nothing is trained
on. scikit-learn is a test/dev dependency only.

    python bench/sklearn_digits.py [--model PATH] [--backend numpy] [--json]

Prints the accuracy per upscaling next to the model's MNIST test accuracy.
"""

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from fastmlp.data import load_dataset
from fastmlp.preprocess import normalize_digit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import picturebench  # noqa: E402

PRETRAINED = picturebench.PRETRAINED
UPSCALINGS = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}
SIDE = 64


def pictures(images: np.ndarray, resample) -> list:
    """images: (n, 8, 8) in 0..16 (ink) -> n 'L' pictures, SIDE x SIDE, ink bright."""
    return [Image.fromarray(np.round(image * (255 / 16)).astype(np.uint8), "L")
            .resize((SIDE, SIDE), resample) for image in images]


def measure(model, backend) -> dict:
    from sklearn.datasets import load_digits   # a dev dependency, imported when used
    digits = load_digits()
    report = {"n": int(len(digits.target))}
    for name, resample in UPSCALINGS.items():
        X = np.stack([normalize_digit(p) for p in pictures(digits.images, resample)])
        predicted = model.predict_proba(X, backend).argmax(axis=1)
        report[name] = float((predicted == digits.target).mean())
    data = load_dataset(dtype=model.dtype)
    report["mnist_test"] = float(
        (model.predict_proba(data.X_test, backend).argmax(axis=1) == data.y_test).mean())
    return report


def main(argv=None) -> int:
    args = picturebench.parser(__doc__.splitlines()[0], n=None).parse_args(argv)
    setup = picturebench.ready(args, "sklearn_digits")
    if setup is None:
        return 2
    report = measure(*setup[:2])
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"| model | MNIST test | sklearn digits ({report['n']}), bilinear | nearest |\n"
              f"|---|---:|---:|---:|\n| {Path(args.model).name} | "
              f"{report['mnist_test'] * 100:.2f}% | {report['bilinear'] * 100:.1f}% | "
              f"{report['nearest'] * 100:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
