"""How well does the network read digits drawn with a mouse in the app?

MNIST digits are redrawn the way the app's canvas receives them, then run
through the app's own pipeline (fastmlp.gui.inference.classify_picture:
preprocess.normalize_digit -> model.predict_proba):

1. crop the 28x28 test digit to its ink and upscale it (bicubic) so its
   longer side is 112 px; threshold at half intensity -> a filled shape;
2. thin the shape to a 1-px centre line (Zhang & Suen 1984; SciPy and
   scikit-image are not dependencies, so it is written out below);
3. scale the centre line to the target digit size (``SIZES``) and place it
   on the 280x280 white canvas, centred or at a random off-centre spot;
4. paint every centre-line link with the app's round pen
   (fastmlp.gui.strokes.paint_segment) at each width in ``PENS``: a constant
   pen width whatever the digit size, as with a mouse.

The "MNIST pen" row skips steps 2 and 4: the upscaled, thresholded shape
itself, so its stroke width grows with the digit like MNIST's does. It
separates what the round trip through the canvas costs from what the pen
width costs.

    python bench/drawn_digits.py [--model PATH] [--n 300] [--seed 0] [--split test|validation] [--json]

Prints a markdown table of accuracy per condition (pen width x size x
position) next to the plain test accuracy. Importable: ``measure()`` and
``markdown()`` run at any size.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fastmlp.confidence import NOT_SURE_BELOW
from fastmlp.gui.inference import classify, classify_picture
from fastmlp.gui.strokes import PAPER, SIZE, paint_dot, paint_segment

sys.path.insert(0, str(Path(__file__).resolve().parent))
import picturebench  # noqa: E402

PRETRAINED = picturebench.PRETRAINED
TRACE_SIDE = 112  # px: centre lines are found at 4x MNIST, then scaled to the canvas
MNIST_PEN = "MNIST pen"
PENS = (MNIST_PEN, 6, 12, 18, 28)  # px on the 280 canvas; the app's pen slider spans 4..40, default 18
SIZES = {"small": (100, 150), "large": (190, 250)}  # longer side of the digit, px
POSITIONS = ("centred", "off-centre")
OFF_CENTRE_MIN = 30  # px: an off-centre digit's centre is at least this far from the canvas centre


# ------------------------------------------------------------- centre lines

def thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: (h, w) bool shape -> (h, w) bool 1-px-wide skeleton.

    Each pass peels boundary pixels whose removal keeps the shape connected
    (exactly one 0->1 transition around the pixel) and that are not line
    ends (2..6 set neighbours); the two sub-passes alternate the side peeled
    (south-east, then north-west) so the skeleton stays centred."""
    img = np.pad(mask.astype(np.uint8), 1)
    while True:
        changed = False
        for first in (True, False):
            c = img[1:-1, 1:-1]
            # Neighbours P2..P9, clockwise from north.
            p = [img[:-2, 1:-1], img[:-2, 2:], img[1:-1, 2:], img[2:, 2:],
                 img[2:, 1:-1], img[2:, :-2], img[1:-1, :-2], img[:-2, :-2]]
            n_set = sum(q.astype(np.int16) for q in p)
            transitions = sum(((p[k] == 0) & (p[(k + 1) % 8] == 1)).astype(np.int16) for k in range(8))
            n, e, s, w = p[0], p[2], p[4], p[6]
            if first:
                side = ((n & e & s) == 0) & ((e & s & w) == 0)
            else:
                side = ((n & e & w) == 0) & ((n & s & w) == 0)
            remove = (c == 1) & (n_set >= 2) & (n_set <= 6) & (transitions == 1) & side
            if remove.any():
                c[remove] = 0  # a view into img
                changed = True
        if not changed:
            return img[1:-1, 1:-1].astype(bool)


def ink_crop(digit: np.ndarray) -> np.ndarray:
    """(28, 28) ink in [0, 1] -> the rows/columns holding ink >= 0.3."""
    mask = digit >= 0.3
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return digit[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def upscaled_shape(digit: np.ndarray, side: int) -> np.ndarray:
    """(28, 28) ink -> (h, w) bool filled shape whose longer side is ``side`` px."""
    crop = ink_crop(digit)
    scale = side / max(crop.shape)
    h, w = (max(1, round(d * scale)) for d in crop.shape)
    big = Image.fromarray(np.round(np.pad(crop, 2) * 255).astype(np.uint8), "L")
    big = big.resize((w + round(4 * scale), h + round(4 * scale)), Image.Resampling.BICUBIC)
    # Upscaled pixel steps leave bumps on the outline, and thinning turns
    # every bump into a spur; a blur of a fraction of an MNIST pixel smooths them.
    big = big.filter(ImageFilter.GaussianBlur(radius=0.4 * scale))
    pad = round(2 * scale)
    return (np.asarray(big) >= 128)[pad:pad + h, pad:pad + w]


def centre_links(skeleton: np.ndarray) -> np.ndarray:
    """(k, 2, 2) float: every pair of 8-connected skeleton pixels as a segment
    ((x0, y0), (x1, y1)); isolated pixels become zero-length segments."""
    ys, xs = np.nonzero(skeleton)
    on = set(zip(ys.tolist(), xs.tolist()))
    links = []
    for y, x in on:
        # Forward neighbours only (east and the row below), so each pair is linked once.
        for ny, nx in ((y, x + 1), (y + 1, x - 1), (y + 1, x), (y + 1, x + 1)):
            if (ny, nx) in on:
                links.append(((x, y), (nx, ny)))
        if not any((y + dy, x + dx) in on for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx):
            links.append(((x, y), (x, y)))
    return np.array(links, dtype=np.float64).reshape(-1, 2, 2)


# ---------------------------------------------------------------- drawing

def placement(extent, position: str, rng) -> tuple[float, float]:
    """Top-left corner (x, y) for a (width, height) ``extent`` on the canvas."""
    free = np.array([SIZE - extent[0], SIZE - extent[1]], dtype=np.float64)
    if position == "centred":
        return tuple(free / 2)
    # Uniform over the spots whose centre is far enough from the canvas
    # centre (when the digit leaves room for that at all).
    for _ in range(100):
        corner = rng.uniform(0, np.maximum(free, 0))
        if np.hypot(*(corner - free / 2)) >= min(OFF_CENTRE_MIN, np.hypot(*free) / 2):
            return tuple(corner)
    return tuple(corner)


def draw_digit(digit: np.ndarray, pen, size: int, position: str, rng) -> Image.Image:
    """A 280x280 'L' canvas image (black on white) of ``digit`` ((28, 28) ink in
    [0, 1]) with longer side ``size`` px, drawn with ``pen`` (a width in px,
    or MNIST_PEN for the upscaled shape itself)."""
    image = Image.new("L", (SIZE, SIZE), PAPER)
    if pen == MNIST_PEN:
        shape = upscaled_shape(digit, size)
        x, y = placement(shape.shape[::-1], position, rng)
        ink = Image.fromarray(np.where(shape, 0, PAPER).astype(np.uint8), "L")
        image.paste(ink, (round(x), round(y)), Image.fromarray(shape.astype(np.uint8) * 255, "L"))
        return image
    shape = upscaled_shape(digit, TRACE_SIDE)
    scale = size / TRACE_SIDE
    links = centre_links(thin(shape)) * scale
    extent = np.array(shape.shape[::-1]) * scale
    x, y = placement(extent, position, rng)
    links += np.array([x, y]) + scale / 2  # pixel centres
    draw = ImageDraw.Draw(image)
    for (x0, y0), (x1, y1) in links:
        if (x0, y0) == (x1, y1):
            paint_dot(draw, (x0, y0), pen)
        else:
            paint_segment(draw, (x0, y0), (x1, y1), pen)
    return image


# ---------------------------------------------------------------- measure

def conditions():
    """(pen, size name, position) for every cell of the table."""
    return [(pen, size, position) for pen in PENS for size in SIZES for position in POSITIONS]


def measure(model, backend, data, n: int, seed: int = 0, split: str = "test") -> dict:
    """Accuracy of ``model`` on the same ``n`` random digits redrawn under
    every condition; also the plain accuracy on those n and on the whole set.
    The digits are the test set's, or (split "validation", for choosing a
    training recipe without looking at the test set) the last 10,000
    training images (train with --validation 10000 for that)."""
    rng = np.random.default_rng(seed)
    X, y = (data.X_test, data.y_test) if split == "test" else (data.X_train[-10000:],
                                                               data.y_train[-10000:])
    rows = rng.choice(len(X), size=n, replace=False)
    digits = X[rows].reshape(n, 28, 28)
    labels = y[rows]
    plain_subset = np.mean([classify(model, backend, X[r]).digit == y[r] for r in rows])
    plain_full = float((model.predict_proba(X, backend).argmax(axis=1) == y).mean())
    results = []
    for pen, size_name, position in conditions():
        low, high = SIZES[size_name]
        correct = unsure = 0
        for digit, label in zip(digits, labels):
            image = draw_digit(digit, pen, int(rng.integers(low, high + 1)), position, rng)
            answer = classify_picture(model, backend, image)
            correct += answer.digit == label
            unsure += answer.confidence < NOT_SURE_BELOW
        results.append({"pen": pen, "size": size_name, "position": position,
                        "accuracy": correct / n, "not_sure": unsure / n})
    return {"n": n, "seed": seed, "split": split, "plain_accuracy_full": plain_full,
            "plain_accuracy_subset": float(plain_subset), "conditions": results}


def markdown(report: dict) -> str:
    """The report as a markdown table: one row per pen, one column per size x position."""
    columns = [(size, position) for size in SIZES for position in POSITIONS]
    header = ["pen width"] + [f"{size} ({SIZES[size][0]}-{SIZES[size][1]} px), {position}"
                              for size, position in columns] + ["mean"]
    cell = {(c["pen"], c["size"], c["position"]): c["accuracy"] for c in report["conditions"]}
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for pen in PENS:
        values = [cell[(pen, size, position)] for size, position in columns]
        name = pen if pen == MNIST_PEN else f"{pen} px"
        lines.append("| " + " | ".join([name] + [f"{v * 100:.1f}%" for v in values]
                                       + [f"{np.mean(values) * 100:.1f}%"]) + " |")
    lines.append("")
    lines.append(f"Plain MNIST {report.get('split', 'test')} accuracy: "
                 f"{report['plain_accuracy_full'] * 100:.2f}% "
                 f"(10,000 images); {report['plain_accuracy_subset'] * 100:.1f}% on the "
                 f"{report['n']} images redrawn above (seed {report['seed']}).")
    not_sure = np.mean([c["not_sure"] for c in report["conditions"]])
    lines.append(f'"Not sure" (confidence < {NOT_SURE_BELOW}) on {not_sure * 100:.1f}% of the '
                 f"drawings (all pens and conditions).")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = picturebench.parser(__doc__.splitlines()[0], n=300)
    args.add_argument("--split", choices=("test", "validation"), default="test",
                      help="digits from the test set, or from the last 10,000 training images")
    args = args.parse_args(argv)
    setup = picturebench.ready(args, "drawn_digits")
    if setup is None:
        return 2
    model, backend, data = setup
    start = time.perf_counter()
    report = measure(model, backend, data, args.n, args.seed, args.split)
    report["model"] = args.model
    report["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(report, indent=2) if args.json else markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
