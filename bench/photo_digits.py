"""How well does the network read a photo or scan of a digit on paper?

MNIST test digits are turned into photo-like pictures, each saved as a JPEG
file and read back through ``fastmlp predict``'s own path
(preprocess.load_and_normalize -> model.predict_proba); the same digits
saved as clean PNGs give the yardstick. Every picture draws its own
conditions (seeded), the class of input the real-inputs issue describes:

- the digit not filling the frame: 25-70% of a 160-240 px side, anywhere;
- paper: grey to white (0.55-0.95), lit unevenly (a linear ramp of up to
  +-0.15 in a random direction) with a soft shadow (a blurred half-plane or
  blob, 10-35% darker), a slight colour cast (RGB);
- ink: dark (0.05-0.35) on that paper, its edge softened by the camera
  (Gaussian blur 0.5-1.5 px); a quarter of the pictures are the reverse,
  light chalk (0.7-0.95) on a dark board (0.1-0.3);
- sensor noise (sigma 0.01-0.05), then JPEG at quality 35-85.

    python bench/photo_digits.py [--model PATH] [--n 500] [--seed 0] [--json]

Prints the accuracy on the photos next to the clean PNGs of the same digits.
Importable: ``photo()`` renders one picture, ``measure()`` runs the benchmark.
"""

import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from fastmlp.errors import FastmlpError
from fastmlp.preprocess import load_and_normalize

sys.path.insert(0, str(Path(__file__).resolve().parent))
import picturebench  # noqa: E402

PRETRAINED = picturebench.PRETRAINED


def _lighting(side: int, rng) -> np.ndarray:
    """(side, side) multiplicative light: a linear ramp times a soft shadow."""
    y, x = np.mgrid[0:side, 0:side] / side - 0.5
    angle = rng.uniform(0, 2 * np.pi)
    ramp = 1 + rng.uniform(0, 0.3) * (np.cos(angle) * x + np.sin(angle) * y)
    shadow = np.zeros((side, side))
    if rng.random() < 0.5:   # the edge of something between lamp and paper
        angle, offset = rng.uniform(0, 2 * np.pi), rng.uniform(-0.4, 0.4)
        shadow[np.cos(angle) * x + np.sin(angle) * y > offset] = 1
    else:                    # a hand or a phone over part of the page
        cy, cx, r = rng.uniform(-0.5, 0.5, 2).tolist() + [rng.uniform(0.2, 0.5)]
        shadow[(y - cy) ** 2 + (x - cx) ** 2 < r ** 2] = 1
    blur = ImageFilter.GaussianBlur(side * rng.uniform(0.04, 0.12))
    shadow = np.asarray(Image.fromarray((shadow * 255).astype(np.uint8)).filter(blur)) / 255
    return ramp * (1 - rng.uniform(0.1, 0.35) * shadow)


def _ink_coverage(digit: np.ndarray, side: int, rng) -> np.ndarray:
    """(side, side) in [0, 1]: the 28x28 digit upscaled and placed anywhere,
    25-70% of the frame, its edges softened like a camera's."""
    size = int(side * rng.uniform(0.25, 0.7))
    big = Image.fromarray((digit * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
    big = big.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5) * size / 100))
    canvas = np.zeros((side, side))
    top, left = rng.integers(0, side - size + 1, 2)
    canvas[top:top + size, left:left + size] = np.asarray(big) / 255
    return canvas


def photo(digit: np.ndarray, rng) -> bytes:
    """A JPEG (bytes) of one photo-like picture of ``digit``: (28, 28) in [0, 1]."""
    side = int(rng.integers(160, 241))
    ink = _ink_coverage(digit, side, rng)
    if rng.random() < 0.25:   # chalk on a board
        paper, colour = rng.uniform(0.1, 0.3), rng.uniform(0.7, 0.95)
    else:
        paper, colour = rng.uniform(0.55, 0.95), rng.uniform(0.05, 0.35)
    grey = (paper * (1 - ink) + colour * ink) * _lighting(side, rng)
    cast = rng.uniform(0.9, 1.1, 3)
    rgb = grey[..., None] * cast + rng.normal(0, rng.uniform(0.01, 0.05), (side, side, 3))
    image = Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8), "RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=int(rng.integers(35, 86)))
    return out.getvalue()


def _read_all(paths, model, backend) -> np.ndarray:
    """Predicted digit per file, through predict's own loader (-1: refused)."""
    X, refused = [], []
    for k, path in enumerate(paths):
        try:
            X.append(load_and_normalize(path))
        except FastmlpError:
            X.append(np.zeros(784, np.float32))
            refused.append(k)
    predicted = model.predict_proba(np.stack(X), backend).argmax(axis=1)
    predicted[refused] = -1
    return predicted


def measure(model, backend, data, n: int, seed: int = 0, split: str = "test") -> dict:
    """Accuracy on n random digits as clean PNGs and as photos: of the test
    set, or (split "validation", for choosing preprocessing settings without
    looking at the test set) of the last 10,000 training images."""
    rng = np.random.default_rng(seed)
    X, y = (data.X_test, data.y_test) if split == "test" else (data.X_train[-10000:],
                                                               data.y_train[-10000:])
    rows = rng.choice(len(X), size=n, replace=False)
    digits, labels = X[rows].reshape(n, 28, 28), y[rows]
    with tempfile.TemporaryDirectory() as tmp:
        clean, photos = [], []
        for k, digit in enumerate(digits):
            clean.append(Path(tmp) / f"clean{k}.png")
            Image.fromarray((digit * 255).round().astype(np.uint8)).save(clean[-1])
            photos.append(Path(tmp) / f"photo{k}.jpg")
            photos[-1].write_bytes(photo(digit, rng))
        got_clean, got_photo = (_read_all(p, model, backend) for p in (clean, photos))
    return {"n": n, "seed": seed, "split": split, "clean_accuracy": float((got_clean == labels).mean()),
            "photo_accuracy": float((got_photo == labels).mean()),
            "photo_refused": int((got_photo == -1).sum())}


def main(argv=None) -> int:
    args = picturebench.parser(__doc__.splitlines()[0], n=500)
    args.add_argument("--split", choices=("test", "validation"), default="test",
                      help="digits from the test set, or from the last 10,000 training images")
    args = args.parse_args(argv)
    setup = picturebench.ready(args, "photo_digits")
    if setup is None:
        return 2
    model, backend, data = setup
    start = time.perf_counter()
    report = measure(model, backend, data, args.n, args.seed, args.split)
    report["seconds"] = round(time.perf_counter() - start, 1)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"| {args.n} MNIST {args.split} digits (seed {args.seed}) | clean PNG | photo-like JPEG |\n"
              f"|---|---:|---:|\n| accuracy | {report['clean_accuracy'] * 100:.1f}% | "
              f"{report['photo_accuracy'] * 100:.1f}% ({report['photo_refused']} refused as blank) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
