"""Fine-tuning on "my handwriting": before/after on MNIST test and held-out drawings.

    python bench/finetune_drawings.py [--model PATH] [--per-digit 15] [--backend numba]
        [--epochs 3] [--seed 0] [--mirror]

A stand-in writer (nobody here can hand-draw 150 digits for a benchmark):
one stroke template per digit in a style MNIST rarely shows (a slashed 0, a 1
with a flag and a foot, a crossed 7, an open 4, an 8 of two loops, ...),
jittered per drawing (scale, rotation, shift, per-point wobble, pen width),
painted with the app's pen (fastmlp.gui.strokes) and normalised by the app's
pipeline (fastmlp.preprocess). The drawings go through fastmlp.drawings (every
fifth is held out, as in the app) and fastmlp.finetune with the app's recipe;
the table is the one the app's Teach tab shows.

The shipped model already reads those templates (measured: 100% of the
held-out ones), so ``--mirror`` adds a writer it cannot read: the same
templates mirrored left to right (mirror writing: a consistent style absent
from MNIST), which shows what fine-tuning learns and what it costs on MNIST.
"""

import argparse
import sys
import tempfile
import time

import numpy as np

from fastmlp import checkpoint, drawings, finetune
from fastmlp.data import load_dataset
from fastmlp.gui.strokes import Stroke, render
from fastmlp.kernels import get_backend
from fastmlp.preprocess import normalize_digit
from fastmlp.readiness import prepare
from fastmlp.train import run

# Polylines on the 280x280 canvas, one list of strokes per digit.
TEMPLATES = {
    0: [[(140, 45), (90, 80), (80, 150), (95, 220), (140, 245), (185, 220), (200, 150), (190, 80),
         (140, 45)], [(95, 215), (185, 75)]],
    1: [[(105, 90), (145, 50), (145, 240)], [(100, 240), (190, 240)]],
    2: [[(85, 95), (120, 55), (175, 55), (195, 100), (165, 150), (90, 235), (205, 235)]],
    3: [[(80, 55), (195, 55), (130, 125), (185, 160), (195, 205), (160, 240), (110, 245), (80, 220)]],
    4: [[(150, 40), (80, 170), (210, 170)], [(170, 105), (170, 250)]],
    5: [[(195, 50), (105, 50), (95, 130), (165, 120), (200, 175), (175, 235), (90, 235)]],
    6: [[(180, 45), (115, 115), (90, 195), (125, 245), (180, 225), (185, 175), (135, 155), (95, 190)]],
    7: [[(70, 60), (210, 60), (130, 250)], [(110, 150), (190, 150)]],
    8: [[(140, 140), (90, 100), (140, 45), (190, 100), (140, 140), (85, 195), (140, 250),
         (195, 195), (145, 145)]],
    9: [[(190, 95), (140, 50), (90, 90), (110, 140), (185, 120), (190, 95), (175, 250)]],
}


def jittered(strokes, rng):
    """The template moved like a hurried hand would: scale 0.8-1.1, rotation
    +-25 degrees, shift +-25 px, every point +-16 px, pen 10-24 px."""
    angle = np.radians(rng.uniform(-25, 25))
    scale = rng.uniform(0.8, 1.1)
    rotate = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    shift = rng.uniform(-25, 25, 2)
    width = int(rng.integers(10, 25))
    out = []
    for stroke in strokes:
        points = (np.array(stroke, float) - 140) @ rotate.T + 140 + shift
        points += rng.uniform(-16, 16, points.shape)
        out.append(Stroke(width, [tuple(p) for p in np.clip(points, 5, 275).round().astype(int)]))
    return out


def mirrored(strokes):
    return [[(280 - x, y) for x, y in stroke] for stroke in strokes]


def make_drawings(per_digit: int, seed: int, mirror: bool = False) -> drawings.Drawings:
    """per_digit drawings of each digit, interleaved 0..9, 0..9, ... (so the
    held-out fifth covers every digit)."""
    rng = np.random.default_rng(seed)
    mine = drawings.Drawings.empty()
    for _ in range(per_digit):
        for digit, template in TEMPLATES.items():
            template = mirrored(template) if mirror else template
            x = normalize_digit(render(jittered(template, rng)), name=f"drawing of {digit}")
            mine = mine.added(drawings.to_pixels(x), digit)
    return mine


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fastmlp/pretrained/fastmlp-mnist.npz")
    parser.add_argument("--per-digit", type=int, default=15)
    parser.add_argument("--backend", default="numba")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mirror", action="store_true", help="a mirror-writing writer")
    parser.add_argument("--lr", type=float, help="instead of the app's recipe's")
    args = parser.parse_args(argv)

    model = checkpoint.load(args.model).model
    backend = get_backend(args.backend)
    config = finetune.config_for(model, epochs=args.epochs, seed=args.seed,
                                 **({} if args.lr is None else {"lr": args.lr}))
    prepare(backend, model.dtype, augment=True)
    mnist = load_dataset(dtype=model.dtype)
    mine = make_drawings(args.per_digit, args.seed, args.mirror)
    with tempfile.TemporaryDirectory() as home:  # the set round-trips through its files
        drawings.save(mine, f"{home}/drawings")
        mine = drawings.load(f"{home}/drawings")
    before = finetune.scores(model, backend, mnist, mine)
    state = finetune.start_state(model, config)
    data = finetune.mixed_data(mine, mnist, seed=args.seed)
    start = time.perf_counter()
    run(config, data, backend, state)
    seconds = time.perf_counter() - start
    after = finetune.scores(state.model, backend, mnist, mine)
    writer = "mirrored templates" if args.mirror else "templates"
    print(f"fine-tuned {args.model} on {len(mine.train_labels)} drawings ({writer}) (+{finetune.MNIST_ROWS} "
          f"MNIST per epoch), {args.epochs} epochs, lr {config.lr:g}, {args.backend}: {seconds:.1f} s wall "
          f"(shared machine)\n")
    print("| accuracy | before | after |")
    print("|---|---:|---:|")
    print(f"| MNIST test (10,000) | {before.mnist_test * 100:.2f}% | {after.mnist_test * 100:.2f}% |")
    print(f"| held-out drawings ({after.held_out}) | {before.drawings * 100:.1f}% "
          f"| {after.drawings * 100:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
