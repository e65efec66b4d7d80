"""The ``fastmlp`` command: train, evaluate, predict, export (and the commands later issues add).

User mistakes end in one line on stderr and exit code 2."""

# Only the standard library at import time (numpy and the engine are
# imported by each command): main() installs its Ctrl-C handling as early as
# it can, and a Ctrl-C before that is a traceback we cannot turn into a line.
import argparse
import json
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

from fastmlp import __version__
from fastmlp.errors import FastmlpError

DEFAULT_MODEL = "fastmlp-model.npz"
EXIT_ERROR, EXIT_INTERRUPTED = 2, 130
NOTICE_AFTER = 0.3  # s: a longer wait for the kernels to get ready is announced


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, like every other fastmlp error (argparse prints usage too).
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def main(argv=None) -> int:
    with _interruptible():
        try:
            args = build_parser().parse_args(argv)
            return args.run(args) or 0
        except FastmlpError as exc:
            print(f"fastmlp: error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            print("fastmlp: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except MemoryError:  # the estimates should refuse first; never a traceback
            print("fastmlp: error: out of memory", file=sys.stderr)
            return EXIT_ERROR
        except BrokenPipeError:  # e.g. `fastmlp evaluate m.npz | head`
            sys.stderr.close()
            return 0


def entry() -> int:
    """The ``fastmlp`` command (and ``python -m fastmlp``): main() with Ctrl-C
    ignored once it returns. main restores the handler it found, so a Ctrl-C
    that arrives while the interpreter shuts down (after "interrupted ...
    saved") is ignored instead of turning exit 130 into death by SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return main()


def _exit_interrupted(signum, frame):
    # A Ctrl-C while the first one is being handled: leave now, as 130. The
    # target of a write in progress is intact (atomic_write); its temporary
    # file is removed by the next write of the same target.
    os.write(2, b"fastmlp: interrupted\n")
    os._exit(EXIT_INTERRUPTED)


def _first_interrupt(signum, frame):
    signal.signal(signal.SIGINT, _exit_interrupted)
    raise KeyboardInterrupt


class _interruptible:
    """Within ``with`` (main): Ctrl-C raises KeyboardInterrupt once, which main
    reports as exit 130; any further Ctrl-C exits 130 at once, so a second
    one during the clean-up never ends in a traceback or death by SIGINT.
    The previous handler is restored on exit (tests call main in-process)."""

    def __enter__(self):
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, _first_interrupt)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fastmlp", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"fastmlp {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(commands)
    _add_evaluate_predict_export(commands)
    _add_gradcheck_gui(commands)
    return parser


def _common_flags(sub) -> None:
    """--backend and --data, as train and evaluate take them."""
    sub.add_argument("--backend", help="kernels to run: numpy (reference) or numba "
                     "(default: $FASTMLP_BACKEND, else numpy)")
    sub.add_argument("--data", metavar="DIR", help="directory with the four IDX files "
                     "(default: the MNIST shipped with fastmlp)")


def _add_train(commands) -> None:
    train = commands.add_parser("train", help="train a model on MNIST (or --data)")
    _common_flags(train)
    # Recipe flags default to None: "not given" matters when resuming.
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--lr", type=float, help="peak learning rate")
    train.add_argument("--optimizer", help="sgd, momentum, adam, adamw")
    train.add_argument("--momentum", type=float, help="for --optimizer momentum (default 0.9)")
    train.add_argument("--nesterov", action=argparse.BooleanOptionalAction,
                       help="Nesterov momentum (default on)")
    train.add_argument("--schedule", help="constant, cosine, onecycle")
    train.add_argument("--warmup", type=float, help="warm-up fraction of all steps")
    train.add_argument("--weight-decay", type=float)
    train.add_argument("--label-smoothing", type=float)
    train.add_argument("--dropout", type=float, metavar="RATE",
                       help="drop each hidden unit with this probability while training "
                            "(inverted dropout; default 0: off)")
    train.add_argument("--seed", type=int)
    train.add_argument("--dtype", help="float32 or float64")
    train.add_argument("--hidden", help="hidden layer sizes, e.g. 128,64")
    train.add_argument("--limit", type=int, metavar="N", help="train on the first N images")
    train.add_argument("--augment", metavar="SPEC",
                       help="augment the training images anew every epoch: default, none, or "
                            "key=value,... with keys rotate (degrees), scale (fraction), shear "
                            "(degrees), shift (pixels), elastic (pixels), grid (elastic control "
                            "points per side), thickness (fraction), pen (fraction of images "
                            "re-drawn along their centre lines with a round pen); e.g. "
                            "default,elastic=0 or default,pen=0.25 "
                            "(default: none)")
    train.add_argument("--deskew", action=argparse.BooleanOptionalAction, default=None,
                       help="deskew every image by its second moments (its slant sheared "
                            "upright) before the network sees it, in training and whenever the "
                            "model is used; the model records it (default: off)")
    train.add_argument("--outliers", type=float, metavar="F",
                       help="outlier exposure: add F times as many pictures of no digit "
                            "(two digits overlaid, or four digits' quarters) trained towards "
                            "the uniform answer, so that the model is unsure off the digits "
                            "(default: 0)")
    train.add_argument("--flagged-ones", type=float, metavar="F",
                       help="add F times as many 1s as the training set has, each written the "
                            "European way: a flag from the top and, half of the time, a foot "
                            "(default: 0)")
    train.add_argument("--validation", type=int, metavar="N",
                       help="hold out the last N of those for tuning (reported per epoch)")
    train.add_argument("--swa-start", type=int, metavar="EPOCH",
                       help="stochastic weight averaging: average the weights at the end of "
                            "epoch EPOCH (1-based) and of every later epoch, with equal weights; "
                            "the saved model is that average (the live weights are saved beside "
                            "it, for --resume) (default: off)")
    train.add_argument("--out", help=f"checkpoint to write after every epoch (default {DEFAULT_MODEL})")
    train.add_argument("--resume", metavar="PATH", help="continue the run saved in PATH")
    train.add_argument("--log", metavar="PATH", help="JSON lines, one per epoch")
    train.add_argument("--plot", metavar="PNG", help="loss and accuracy curves")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(run=_run_train)


def _add_evaluate_predict_export(commands) -> None:
    evaluate = commands.add_parser("evaluate", help="test accuracy, per digit, confusion matrix")
    _common_flags(evaluate)
    evaluate.add_argument("model")
    evaluate.add_argument("--json", action="store_true", help="machine-readable output")
    evaluate.add_argument("--plot", metavar="PNG", help="confusion matrix image")
    evaluate.add_argument("--gallery", metavar="PNG", help="the most confidently wrong test images")
    evaluate.set_defaults(run=_run_evaluate)

    predict = commands.add_parser("predict", help="classify image files")
    predict.add_argument("--backend")
    predict.add_argument("model")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--json", action="store_true", help="one JSON object per image")
    predict.set_defaults(run=_run_predict)

    export = commands.add_parser("export", help="write a checkpoint as an ONNX graph "
                                 '(needs: pip install "fastmlp[onnx]")')
    export.add_argument("model", help="checkpoint (.npz)")
    export.add_argument("onnx", metavar="OUT.onnx")
    export.set_defaults(run=_run_export)


def _add_gradcheck_gui(commands) -> None:
    gradcheck = commands.add_parser("gradcheck", help="verify that gradients match across kernels "
                                    "and central finite differences")
    gradcheck.add_argument("--backends", default="numpy,numba", help="comma-separated (default numpy,numba)")
    gradcheck.add_argument("--dtype", default="float64", help="float64 (default) or float32")
    gradcheck.add_argument("--hidden", default="128,64")
    gradcheck.add_argument("--seed", type=int, default=0)
    gradcheck.add_argument("--batch-size", type=int, default=16, help="MNIST rows in the batch")
    gradcheck.add_argument("--entries", type=int, default=100, help="entries checked per tensor")
    gradcheck.add_argument("--data", metavar="DIR")
    gradcheck.set_defaults(run=_run_gradcheck)

    gui = commands.add_parser("gui", help="draw a digit and watch the network answer")
    gui.add_argument("--model", metavar="PATH", help="checkpoint (default: the pretrained model)")
    gui.add_argument("--backend", help="numpy or numba (switchable in the window)")
    gui.set_defaults(run=_run_gui)


# -------------------------------------------------------------------- train

def _run_train(args) -> int:
    from fastmlp.safeio import target_lock

    out = Path(args.out or args.resume or DEFAULT_MODEL)
    _check_writable(out, "--out")
    for flag, path in (("--log", args.log), ("--plot", args.plot)):
        if path:
            _check_writable(Path(path), flag)
    # One run per --out at a time: a second one fails here instead of both
    # writing and the last silently winning.
    with target_lock(out, "--out"):
        return _train(args, out)


def _train(args, out: Path) -> int:
    from fastmlp import checkpoint, train

    config, state, backend, data, wait_until_ready = _set_up_training(args)
    n = len(train.training_rows(data, config)[0])
    print(_announcement(args, config, state, data, n, backend))
    wait_until_ready()  # before the log, the bar and the first timed batch

    def save_checkpoint():
        checkpoint.save(out, train.to_checkpoint(config, state, data))

    log = _open_log(args.log, append=bool(args.resume)) if args.log else None
    bar = _progress_bar(n, quiet=args.quiet)
    stop = _StopOnSigint()
    on_chunk, on_epoch = _watchers(args, config, bar, log, save_checkpoint)
    try:
        with stop:
            status = train.run(config, data, backend, state, on_chunk=on_chunk,
                               on_epoch=on_epoch, should_stop=stop.requested,
                               on_notice=_notice(quiet=args.quiet))
    except train.Diverged as exc:
        saved_epochs = f"{out} (epoch {state.epoch})" if state.epoch and out.exists() else "none"
        raise FastmlpError(f"{exc}; last good checkpoint: {saved_epochs}") from None
    finally:
        if bar:
            bar.close()
        if log:
            log.close()

    if status == "stopped":
        save_checkpoint()
        print(f"interrupted in epoch {state.epoch + 1} after batch {state.step}; saved {out}\n"
              f"resume with: fastmlp train --resume {out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.plot:
        from fastmlp.plots import training_curves
        training_curves(state.history, args.plot)
    _print_result(out, config, state)
    return 0


def _set_up_training(args):
    """(config, state, backend, data, wait_until_ready) of the run the flags
    ask for, every check that can fail done before the first large allocation."""
    from fastmlp import augmentation, checkpoint, train
    from fastmlp.data import load_dataset
    from fastmlp.kernels import get_backend
    from fastmlp.model import N_INPUTS

    saved = checkpoint.load(args.resume) if args.resume else None
    config, state = _recipe(args, saved)
    backend = get_backend(args.backend)
    # compiles while the data loads; the augment kernels too if this run uses them
    wait_until_ready = _get_ready(backend, config.dtype, augment=config.augment != "none",
                                  pen=augmentation.parse(config.augment).pen > 0)
    data = load_dataset(args.data, dtype=config.dtype)
    if args.resume and saved.meta.get("data", {}).get("checksum") != data.checksum:
        raise FastmlpError(f"{args.resume}: was trained on other data than {data.source}")
    pixels = data.X_train.shape[1]
    if pixels != N_INPUTS:   # the CLI's networks read 28x28 digits (predict, the GUI)
        raise FastmlpError(f"{data.source}: images have {pixels} pixels, but fastmlp trains on "
                           f"28x28 = {N_INPUTS}-pixel images")
    n = len(train.training_rows(data, config)[0])  # a --limit larger than the data fails here
    train.check_memory(config, n)  # before the first large allocation
    if state is None:
        state = train.TrainState.fresh(config)
    else:
        _check_position(args.resume, config, state, train.steps_per_epoch(n, config.batch_size))
    return config, state, backend, data, wait_until_ready


def _announcement(args, config, state, data, n, backend) -> str:
    """The line that says what is about to be trained, on what, and how."""
    from fastmlp import outliers   # imported when used, as the CLI does throughout
    return (f"training {'-'.join(map(str, state.model.sizes))} {config.dtype} on {n} images "
            f"({data.source}), {config.optimizer} lr {config.lr:g} {config.schedule}, "
            f"batch {config.batch_size}, {config.epochs} epochs, backend {backend.name}"
            + (", deskewed" if state.model.deskew else "")
            + (f", augment {config.augment}" if config.augment != "none" else "")
            + (f", dropout {config.dropout:g}" if config.dropout else "")
            + (f", flagged ones +{config.flagged_ones:g} of the 1s" if config.flagged_ones else "")
            + (f", outliers +{outliers.count_for(config.outliers, n)} pictures of no digit"
               if config.outliers else "")
            + (f", SWA from epoch {config.swa_start}" if config.swa_start else "")
            + (f", resuming at epoch {state.epoch + 1}" if args.resume else ""))


def _watchers(args, config, bar, log, save_checkpoint):
    """(on_chunk, on_epoch) for train.run: the progress bar after every chunk;
    the checkpoint, the log line and the printed epoch line after every epoch."""
    def on_chunk(state, rows_done, loss):
        if bar:
            if rows_done < bar.n:
                bar.reset()
            bar.set_description(f"epoch {state.epoch + 1}/{config.epochs}")
            bar.update(rows_done - bar.n)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def on_epoch(state, record):
        save_checkpoint()
        if log:
            _write_log(log, args.log, record)
        line = (f"epoch {record['epoch']:>3}  loss {record['loss']:.4f}  "
                f"train {record['train_accuracy'] * 100:6.2f}%  "
                + _percent(record, "val", "validation_accuracy")
                + _percent(record, "test", "test_accuracy")
                + _percent(record, "swa val", "swa_validation_accuracy")
                + _percent(record, "swa test", "swa_test_accuracy")
                + f"{record['seconds']:.2f} s")
        (bar.write if bar else print)(line)

    return on_chunk, on_epoch


def _recipe(args, saved):
    """(TrainConfig, TrainState or None for a fresh run) of ``--resume``'s
    checkpoint ``saved``, or of the flags."""
    from fastmlp import train

    if saved is None:
        return train.TrainConfig(**_given(args, _RECIPE_FLAGS)), None
    config = _resumed_config(args, saved)
    state = train.TrainState.from_checkpoint(saved)
    _check_swa(args.resume, config, state)
    return config, state


def _check_position(path, config, state, batches_per_epoch: int) -> None:
    """A resumed run continues inside the recipe: more epochs to go, at a batch of the epoch."""
    if state.epoch >= config.epochs:
        raise FastmlpError(f"{path}: already trained {state.epoch} epochs; "
                           f"pass --epochs N with N > {state.epoch} to train more")
    if state.step >= batches_per_epoch:
        raise FastmlpError(f"{path}: metadata progress.step {state.step} is not a batch "
                           f"of an epoch of {batches_per_epoch}")


def _print_result(out, config, state) -> None:
    total = sum(r["seconds"] for r in state.history)
    last = state.history[-1]
    model = (f"the SWA average of epochs {config.swa_start}-{state.epoch}: test accuracy "
             f"{last['swa_test_accuracy'] * 100:.2f}% (last weights {last['test_accuracy'] * 100:.2f}%)"
             if state.swa is not None else f"test accuracy {last['test_accuracy'] * 100:.2f}%")
    print(f"saved {out}: {model} after {state.epoch} epochs, {total:.1f} s of training")


def _open_log(path, append: bool):
    from fastmlp.safeio import os_problem

    try:
        return open(path, "a" if append else "w", encoding="utf-8")
    except OSError as exc:
        raise FastmlpError(f"--log {path}: {os_problem(exc, 'write')}") from None


def _write_log(log, path, record) -> None:
    """One JSON line, flushed: a full disk is a one-line error, not a traceback."""
    try:
        log.write(json.dumps(record) + "\n")
        log.flush()
    except OSError as exc:
        raise FastmlpError(f"--log {path}: cannot write ({exc.strerror or exc})") from None


def _notice(quiet):
    """train.run's on_notice: one line on stderr (none with --quiet)."""
    def notice(message):
        if not quiet:
            print(message, file=sys.stderr, flush=True)
    return notice


def _get_ready(backend, dtype, augment=False, pen=False):
    """Start ``backend.prepare(dtype, augment, pen)`` in a background thread now, so that a
    compile overlaps loading the data, and return ``wait_until_ready()`` to
    call just before the kernels first run. It blocks until they are ready,
    raising a failure as the usual one-line FastmlpError, and announces a wait
    longer than NOTICE_AFTER on stderr (a cold Numba cache compiles for 5-35 s):
    never a silent pause, and never compile time inside a timed epoch."""
    from fastmlp.readiness import Preparation

    preparation = Preparation(backend.name, dtype, lambda: backend, augment=augment, pen=pen)

    def wait_until_ready():
        if not preparation.wait(NOTICE_AFTER):
            print(f"getting {backend.name} kernels ready (a first run compiles them)…", file=sys.stderr, flush=True)
            preparation.wait()
            if preparation.error is None:
                print(f"…ready in {preparation.seconds:.1f} s", file=sys.stderr, flush=True)
        preparation.result()

    return wait_until_ready


def _percent(record, label, key) -> str:
    """One column of the epoch line, or nothing when the record lacks ``key``."""
    return f"{label} {record[key] * 100:6.2f}%  " if key in record else ""


# Flag name -> TrainConfig field, for the flags that define the recipe.
_RECIPE_FLAGS = ("epochs", "batch_size", "lr", "optimizer", "momentum", "nesterov", "schedule",
                 "warmup", "weight_decay", "label_smoothing", "dropout", "seed", "dtype", "hidden", "limit", "validation",
                 "augment", "swa_start", "deskew", "outliers", "flagged_ones")


def _given(args, names) -> dict:
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _resumed_config(args, saved):
    """The checkpoint's recipe; only --epochs may change (to train longer).
    The stored fields are checked against the metadata schema's RESUMABLE
    entry first, so a bad one is reported as the file's, not as a flag.
    Flags are compared after TrainConfig has put them in canonical form
    (e.g. --hidden "128, 64", --augment default)."""
    from fastmlp.metadata import RESUMABLE, check_resumable
    from fastmlp.train import TrainConfig

    config = dict(saved.meta.get("config") or {})
    if not config:
        raise FastmlpError(f"{args.resume}: holds no training state (a weights-only checkpoint)")
    if saved.optimizer is None or "progress" not in saved.meta:
        raise FastmlpError(f"{args.resume}: holds no optimizer state or progress to resume from")
    label = f"{args.resume}: metadata"
    RESUMABLE.check(saved.meta, label)
    try:
        stored = TrainConfig(**config)
    except FastmlpError as exc:  # what the schema cannot see: --augment's spec, --swa-start > --epochs
        raise FastmlpError(f"{label}.config: {exc}") from None
    check_resumable(saved.meta, label, stored)
    given = _given(args, _RECIPE_FLAGS)
    wanted = TrainConfig(**{**config, **given})
    for name in given:
        old, new = getattr(stored, name), getattr(wanted, name)
        if name != "epochs" and old != new:
            raise FastmlpError(f"--{name.replace('_', '-')} {given[name]}: the resumed run was trained "
                               f"with {old}; a resumed run keeps its recipe (only --epochs may change)")
    return wanted


def _check_swa(path, config, state) -> None:
    """A resumed SWA average must hold exactly the epochs its recipe says it
    does (swa_start..epoch), else training would continue a wrong mean."""
    from fastmlp.train import epochs_averaged

    def average(count):
        return "no SWA average" if count == 0 else f"an SWA average of {count} epochs"

    expected = epochs_averaged(config, state.epoch)
    if state.swa_count != expected or (state.swa is None) != (expected == 0):
        held = average(0 if state.swa is None else state.swa_count)
        raise FastmlpError(f"{path}: damaged checkpoint: holds {held} after {state.epoch} epochs, "
                           f"expected {average(expected)}")


def _check_writable(path: Path, flag: str) -> None:
    """Fail before training, not after it, when ``path`` cannot be written."""
    from fastmlp.safeio import check_output

    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FastmlpError(f"{flag} {path}: directory {directory} does not exist")
    check_output(path, flag)
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError:
        raise FastmlpError(f"{flag} {path}: directory {directory} is not writable") from None


def _progress_bar(total, quiet):
    if quiet:
        return None
    from tqdm import tqdm
    # disable=None: a bar on a terminal, nothing in a log file or a pipe.
    return tqdm(total=total, unit="img", unit_scale=True, leave=False, dynamic_ncols=True,
                disable=None)


class _StopOnSigint:
    """Within ``with``: the first Ctrl-C asks training to stop after the current
    batch (the loop polls ``requested``); a second one interrupts at once."""

    def __init__(self):
        self._requested = False

    def requested(self) -> bool:
        return self._requested

    def _handle(self, signum, frame):
        self._requested = True
        signal.signal(signal.SIGINT, self._previous)

    def __enter__(self):
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._previous)
        return False


# ----------------------------------------------------------------- evaluate

def _run_evaluate(args) -> int:
    from fastmlp import checkpoint
    from fastmlp.data import load_dataset
    from fastmlp.evaluate import evaluate, format_report, most_confident_mistakes
    from fastmlp.kernels import get_backend

    for flag, path in (("--plot", args.plot), ("--gallery", args.gallery)):
        if path:
            _check_writable(Path(path), flag)
    model = checkpoint.load(args.model).model
    backend = get_backend(args.backend)
    wait_until_ready = _get_ready(backend, model.dtype)
    data = load_dataset(args.data, dtype=model.dtype)
    if data.X_test.shape[1] != model.sizes[0]:
        raise FastmlpError(f"{args.model}: expects {model.sizes[0]} inputs, "
                           f"the data has {data.X_test.shape[1]} pixels per image")
    if len(data.y_test) and model.sizes[-1] <= int(data.y_test.max()):
        raise FastmlpError(f"{args.model}: has {model.sizes[-1]} outputs, but {data.source} "
                           f"has labels up to {int(data.y_test.max())}")
    wait_until_ready()
    report = evaluate(model, data.X_test, data.y_test, backend)
    print(json.dumps(report.to_json()) if args.json else format_report(report))
    if args.plot:
        from fastmlp.plots import confusion_matrix
        confusion_matrix(report.confusion, args.plot)
    if args.gallery:
        from fastmlp.plots import gallery
        wrong = most_confident_mistakes(report, data.y_test)
        predicted = report.probs[wrong].argmax(axis=1)
        gallery(data.X_test[wrong], data.y_test[wrong], predicted,
                report.probs[wrong, predicted], args.gallery)
    return 0


# ------------------------------------------------------------------ predict

def _run_predict(args) -> int:
    from fastmlp import checkpoint
    from fastmlp.confidence import verdict
    from fastmlp.kernels import get_backend
    from fastmlp.model import N_INPUTS
    from fastmlp.preprocess import load_and_normalize

    model = checkpoint.load(args.model).model
    if model.sizes[0] != N_INPUTS:
        raise FastmlpError(f"{args.model}: expects {model.sizes[0]} inputs, but images are "
                           f"normalized to 28x28 = {N_INPUTS} pixels")
    backend = get_backend(args.backend)
    _get_ready(backend, model.dtype)()  # nothing slow to overlap: wait (announced) now
    failed = 0
    for path in args.images:
        try:
            x = load_and_normalize(path)
        except FastmlpError as exc:  # one bad file does not end the batch
            print(f"fastmlp: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        probs = model.predict_proba(x[None, :], backend)[0]
        if not all(0.0 <= float(p) <= 1.0 for p in probs):  # NaN fails both
            raise FastmlpError(f"{args.model}: gives no valid probabilities for {path} "
                               f"(its weights overflow); the checkpoint is not usable")
        answer = verdict(probs)  # "not sure" below the calibrated threshold
        if args.json:
            print(json.dumps({"path": path, "digit": answer.digit, "sure": answer.sure,
                              "probabilities": [float(p) for p in probs]}))
        else:
            print(f"{path}: {answer.text()}")
    return EXIT_ERROR if failed else 0


# ------------------------------------------------------------------- export

def _run_export(args) -> int:
    from fastmlp.onnx_export import export

    _check_writable(Path(args.onnx), "output")
    export(args.model, args.onnx)
    print(f"wrote {args.onnx}")
    return 0


# ---------------------------------------------------------------- gradcheck

def _run_gradcheck(args) -> int:
    import numpy as np

    from fastmlp import gradcheck
    from fastmlp.data import load_dataset
    from fastmlp.kernels import get_backend
    from fastmlp.model import DTYPES, MLP, parse_hidden

    if args.dtype not in DTYPES:
        raise FastmlpError(f"--dtype {args.dtype}: must be one of {', '.join(DTYPES)}")
    if args.batch_size < 1 or args.entries < 1:
        raise FastmlpError("--batch-size and --entries must be positive")
    if args.seed < 0:
        raise FastmlpError(f"--seed {args.seed}: must be at least 0")
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    if not names:
        raise FastmlpError(f"--backends {args.backends!r}: name at least one backend, e.g. numpy,numba")
    hidden = parse_hidden(args.hidden)
    backends = {name: get_backend(name) for name in names}
    waits = [_get_ready(backend, args.dtype) for backend in backends.values()]
    data = load_dataset(args.data)
    if args.batch_size > len(data.X_train):
        raise FastmlpError(f"--batch-size {args.batch_size}: larger than the {len(data.X_train)} "
                           f"training images in {data.source}")
    gradcheck.check_memory(len(backends), hidden, data.X_train.shape[1], args.batch_size, args.dtype)
    model = MLP.init(hidden, seed=args.seed, dtype=args.dtype, n_inputs=data.X_train.shape[1])
    for wait_until_ready in waits:
        wait_until_ready()
    rows = np.random.default_rng(args.seed).choice(len(data.X_train), args.batch_size, replace=False)
    X = np.ascontiguousarray(data.X_train[rows], dtype=args.dtype)
    table = gradcheck.check(backends, model, X, data.y_train[rows], per_tensor=args.entries,
                            seed=args.seed)
    print(f"gradcheck {'-'.join(map(str, model.sizes))} {args.dtype}, batch {args.batch_size}, "
          f"{args.entries} entries per tensor, h = {gradcheck.STEP:g}")
    print(gradcheck.format_table(table))
    failed = [r for r in table if not r.passed]
    print(f"{len(table) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def _run_gui(args) -> int:
    from fastmlp.gui import run
    return run(args.model, args.backend)


if __name__ == "__main__":
    sys.exit(main())
