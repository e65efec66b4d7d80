"""fastmlp.gui: a Tkinter window to draw digits and watch the network answer.

``fastmlp gui`` and ``python -m fastmlp.gui`` both end in :func:`run`. This
module imports no Tk itself, so the Tk-free helpers (fastmlp.gui.inference,
fastmlp.gui.pictures, fastmlp.gui.training) work on a Python built without Tkinter.
"""

import argparse
import sys

from fastmlp.errors import FastmlpError


def run(model_path=None, backend=None) -> int:
    """Open the window and block until it is closed. An explicit ``model_path``
    that does not load fails here, as one line, before any window appears."""
    from fastmlp import checkpoint
    from fastmlp.gui.inference import check_model
    from fastmlp.kernels import BACKENDS, default_backend_name

    backend = backend or default_backend_name()
    if backend not in BACKENDS:
        raise FastmlpError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    if model_path is not None:
        check_model(checkpoint.load(model_path).model, model_path)
    try:
        from fastmlp.gui.app import open_window
    except ImportError as exc:
        if exc.name not in ("tkinter", "_tkinter"):
            raise
        raise FastmlpError("the GUI needs Tkinter, which this Python lacks "
                           "(e.g. apt-get install python3-tk)") from None
    # A backend that fails to load is reported inside the window, not here.
    open_window(model_path, backend)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from fastmlp.kernels import BACKENDS

    parser = argparse.ArgumentParser(prog="python -m fastmlp.gui",
                                     description="Draw digits and watch the network answer.")
    parser.add_argument("--model", metavar="PATH",
                        help="checkpoint to load (default: the pretrained model shipped with fastmlp)")
    parser.add_argument("--backend", choices=list(BACKENDS),
                        help="kernels for inference and training (default: $FASTMLP_BACKEND, else numpy)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args.model, args.backend)
    except FastmlpError as exc:
        print(f"fastmlp gui: error: {exc}", file=sys.stderr)
        return 2
