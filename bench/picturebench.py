"""The command line the picture benchmarks share.

For bench/drawn_digits.py, bench/photo_digits.py and bench/sklearn_digits.py:
which model and backend read the pictures, how many, and the report's form."""

import argparse
import sys
from pathlib import Path

from fastmlp import checkpoint
from fastmlp.data import load_dataset
from fastmlp.errors import FastmlpError
from fastmlp.gui.inference import check_model
from fastmlp.kernels import get_backend

PRETRAINED = Path(__file__).resolve().parents[1] / "fastmlp" / "pretrained" / "fastmlp-mnist.npz"


def parser(description: str, n: int | None) -> argparse.ArgumentParser:
    """--model, --backend, --json; and --n, --seed when ``n`` (its default) is given."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", default=str(PRETRAINED),
                   help="checkpoint (default: the pretrained model shipped with fastmlp)")
    p.add_argument("--backend", default="numpy")
    if n is not None:
        p.add_argument("--n", type=int, default=n, help=f"digits per condition (default {n})")
        p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def ready(args, script: str):
    """(model, backend, MNIST in the model's dtype) as the arguments name
    them, or None after printing the one-line error of a bad one."""
    try:
        if getattr(args, "n", 1) < 1:
            raise FastmlpError(f"--n {args.n}: must be positive")
        model = checkpoint.load(args.model).model
        check_model(model, args.model)
        return model, get_backend(args.backend), load_dataset(dtype=model.dtype)
    except FastmlpError as exc:
        print(f"{script}: error: {exc}", file=sys.stderr)
        return None
