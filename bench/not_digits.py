"""Pictures with no digit in them: how often the answer is "not sure".

Generated, so that nothing is tuned to a fixed set (each kind is a class of
input, drawn anew from a seed):
    letters    Latin letters that no one reads as a digit (not O, I, l, S, Z,
               B, b, g, q, o, s, z, i), each in every DejaVu font installed
               (Debian's fonts-dejavu-core: Sans, Serif, Mono, bold, oblique,
               condensed ...), black on white, at a random size and position
    symbols    # & % @ ? ! + = * < > $ ~ ^ in the same fonts
    scribbles  a random walk of 6-30 steps drawn as one round-jointed stroke,
               8-22 px wide on a 280 x 280 canvas (the app's canvas size)
Each is read like a user's picture (preprocess.normalize_digit, then the
model); a picture normalize_digit refuses (no ink) counts as refused.

Beside the shipped rule (largest softmax probability < NOT_SURE_BELOW) two
scores from the literature, each cut where it rejects as much of MNIST test
as the shipped threshold does, so that the three pay the same price on digits:
    energy       logsumexp of the logits (Liu et al. 2020, "Energy-based
                 out-of-distribution detection")
    mahalanobis  the smallest Mahalanobis distance of the last hidden layer to
                 a class mean, one covariance shared by the classes, fitted on
                 the training images (Lee et al. 2018)
MNIST's test set decides nothing here: it only prices each rule.

    python bench/not_digits.py [--model PATH] [--threshold T] [--backend numpy] [--n 300]
        [--seed 0] [--json]
"""

import glob
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fastmlp.confidence import NOT_SURE_BELOW
from fastmlp.errors import FastmlpError
from fastmlp.preprocess import normalize_digit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import picturebench  # noqa: E402

PRETRAINED = picturebench.PRETRAINED
FONT_GLOB = "/usr/share/fonts/truetype/dejavu/*.ttf"
LETTERS = "ACDEFGHJKLMNPQRTUVWXYacdefhjkmnprtuvwxy"
SYMBOLS = "#&%@?!+=*<>$~^"
CANVAS = 280


def fonts() -> list:
    """The DejaVu fonts installed (none: the letters and symbols are skipped)."""
    return sorted(glob.glob(FONT_GLOB))


def rendered(chars: str, font_files: list, rng) -> list:
    """Each character in each font, black on white, random size and offset."""
    pictures = []
    for path in font_files:
        for ch in chars:
            size = int(rng.integers(100, 200))
            font = ImageFont.truetype(path, size)
            image = Image.new("L", (CANVAS, CANVAS), 255)
            draw = ImageDraw.Draw(image)
            x, y = (int(v) for v in rng.integers(0, CANVAS - size, 2))
            draw.text((x, y - size // 5), ch, font=font, fill=0)
            pictures.append(image)
    return pictures


def scribbles(n: int, rng) -> list:
    """n random-walk strokes on the app's canvas, black on white."""
    pictures = []
    for _ in range(n):
        image = Image.new("L", (CANVAS, CANVAS), 255)
        steps = rng.normal(0, 25, (int(rng.integers(6, 31)), 2))
        points = np.clip(np.cumsum(steps, axis=0) + CANVAS / 2, 10, CANVAS - 10)
        ImageDraw.Draw(image).line([tuple(p) for p in points], fill=0,
                                   width=int(rng.integers(8, 23)), joint="curve")
        pictures.append(image)
    return pictures


def normalized(pictures: list):
    """(X: (kept, 784), refused count) through the user's path."""
    kept, refused = [], 0
    for picture in pictures:
        try:
            kept.append(normalize_digit(picture).reshape(-1))
        except FastmlpError:
            refused += 1
    return np.array(kept, np.float32).reshape(len(kept), -1), refused


def layers(model, backend, X):
    """(last hidden layer (n, h), logits (n, 10)) of the model at X."""
    A = model.prepared(X)
    for l, (W, b) in enumerate(zip(model.W, model.b)):
        out = np.empty((len(A), W.shape[1]), model.dtype)
        backend.linear_forward(np.ascontiguousarray(A, model.dtype), W, b, out, l < len(model.W) - 1)
        hidden, A = A, out
    return hidden.astype(np.float64), A.astype(np.float64)


def softmax(logits):
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


class Mahalanobis:
    """The score -min_c (h - mu_c)' S^-1 (h - mu_c): class means mu_c and one
    shared covariance S of the last hidden layer h of the training images."""

    def __init__(self, H, y):
        self.means = np.stack([H[y == c].mean(axis=0) for c in range(10)])
        centred = H - self.means[y]
        # a tiny ridge: dead ReLU units have zero variance
        cov = centred.T @ centred / len(H) + 1e-6 * np.eye(H.shape[1])
        self.precision = np.linalg.inv(cov)

    def score(self, H):
        d = [np.einsum("ij,jk,ik->i", H - m, self.precision, H - m) for m in self.means]
        return -np.min(d, axis=0)


def measure(model, backend, data, n: int = 300, seed: int = 0, threshold=None) -> dict:
    """The report: MNIST test's "not sure" rate at ``threshold`` (default
    NOT_SURE_BELOW) and, per kind, how many pictures each rule rejects."""
    threshold = NOT_SURE_BELOW if threshold is None else threshold
    rng = np.random.default_rng(seed)
    font_files = fonts()
    kinds = {"letters": rendered(LETTERS, font_files, rng),
             "symbols": rendered(SYMBOLS, font_files, rng),
             "scribbles": scribbles(n, rng)}
    H_train, _ = layers(model, backend, data.X_train)
    H_test, logits_test = layers(model, backend, data.X_test)
    maha = Mahalanobis(H_train, data.y_train)
    p_test = softmax(logits_test)
    rejected_test = float((p_test.max(axis=1) < threshold).mean())
    scores_test = {"energy": np.logaddexp.reduce(logits_test, axis=1),
                   "mahalanobis": maha.score(H_test)}
    cuts = {name: float(np.quantile(s, rejected_test)) for name, s in scores_test.items()}
    report = {"mnist_test_not_sure": rejected_test, "threshold": threshold,
              "fonts": len(font_files), "kinds": {}}
    for kind, pictures in kinds.items():
        X, refused = normalized(pictures)
        if len(X) == 0:
            report["kinds"][kind] = {"n": len(pictures), "refused": refused}
            continue
        H, logits = layers(model, backend, X)
        scores = {"energy": np.logaddexp.reduce(logits, axis=1), "mahalanobis": maha.score(H)}
        report["kinds"][kind] = {
            "n": len(pictures), "refused": refused,
            "softmax": float((softmax(logits).max(axis=1) < threshold).mean()),
            **{name: float((scores[name] < cuts[name]).mean()) for name in scores}}
    return report


def table(report: dict, model_name: str) -> str:
    lines = [f"{model_name}: MNIST test not sure {report['mnist_test_not_sure'] * 100:.2f}% "
             f"(threshold {report['threshold']}); {report['fonts']} fonts",
             "| pictures | n | refused (no ink) | not sure: softmax < threshold | energy | mahalanobis |",
             "|---|---:|---:|---:|---:|---:|"]
    for kind, r in report["kinds"].items():
        if "softmax" not in r:
            lines.append(f"| {kind} | {r['n']} | {r['refused']} | | | |")
            continue
        lines.append(f"| {kind} | {r['n']} | {r['refused']} | {r['softmax'] * 100:.1f}% | "
                     f"{r['energy'] * 100:.1f}% | {r['mahalanobis'] * 100:.1f}% |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = picturebench.parser(__doc__.splitlines()[0], n=300)
    parser.add_argument("--threshold", type=float, default=NOT_SURE_BELOW,
                        help=f"the softmax threshold (default NOT_SURE_BELOW = {NOT_SURE_BELOW}; "
                             "another model's: bench/calibrate_confidence.py)")
    args = parser.parse_args(argv)
    setup = picturebench.ready(args, "not_digits")
    if setup is None:
        return 2
    report = measure(*setup, n=args.n, seed=args.seed, threshold=args.threshold)
    print(json.dumps(report, indent=2) if args.json else table(report, Path(args.model).name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
