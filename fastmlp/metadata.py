"""Checkpoint metadata: one declarative schema, the types and ranges of every field.

``checkpoint.load`` checks a file's metadata against ``FILE`` (every field
that is present); ``--resume`` checks it against ``RESUMABLE`` (the same
fields, plus those a run continues from, required); ``TrainConfig`` checks
its own fields against ``CONFIG``, the entry both of those hold. So a value
``fastmlp train`` would refuse as a flag is refused in a file too, and is
then reported as the file's field, not as a flag the user never typed.

A spec's ``locate(value)`` is None for a valid value, else the path to the
first bad value inside it and why it is bad ("must be at least 1");
``check`` raises that as the one-line FastmlpError
"<label><path> <bad value>: <problem>", e.g.
"m.npz: metadata.config.hidden[0] 'x': is not an integer".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fastmlp.errors import FastmlpError
from fastmlp.model import DTYPES
from fastmlp.optim import OPTIMIZERS, SLOTS
from fastmlp.schedules import SCHEDULES

FORMAT = "fastmlp-checkpoint"
# 1: the arrays and metadata; 2: adds "checksums", a SHA-256 per array. Both load.
FORMAT_VERSION = 2
CHECKSUMS_SINCE = 2

MAX_LAYERS = 64  # hidden layers; deeper plain ReLU MLPs do not train anyway
MAX_TEXT = 4096  # characters of any string field (a path, a spec)


class Spec:
    """A JSON value's type and range. Leaf specs define ``problem``;
    containers define ``locate``, which finds the first bad value inside."""

    def problem(self, value) -> str | None:
        found = self.locate(value)
        return None if found is None else found[1]

    def locate(self, value) -> tuple[tuple, str] | None:
        """(path to the first bad value: keys and indices, what is wrong), or None."""
        problem = self.problem(value)
        return None if problem is None else ((), problem)

    def check(self, value, label: str) -> None:
        """Raise "<label><path> <bad value>: <problem>" (one line) if ``value`` is invalid."""
        found = self.locate(value)
        if found is None:
            return
        path, problem = found
        leaf = value
        for step in path:
            leaf = leaf[step]
        where = "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in path)
        shown = "" if isinstance(leaf, dict) else f" {_short(leaf)}"
        raise FastmlpError(" ".join(f"{label}{where}{shown}: {problem}".split()))


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Int(Spec):
    lo: int | None = None
    hi: int | None = None

    def problem(self, value):
        if not _is_int(value):
            return "is not an integer"
        if self.lo is not None and value < self.lo:
            return f"must be at least {self.lo}"
        if self.hi is not None and value > self.hi:
            return f"must be at most {self.hi}"
        return None


@dataclass(frozen=True)
class Float(Spec):
    """A finite number in [lo, hi], or in [lo, hi) with ``below_hi``; ``positive``: > 0."""

    lo: float | None = None
    hi: float | None = None
    below_hi: bool = False
    positive: bool = False

    def problem(self, value):
        if not (_is_int(value) or isinstance(value, float)) or not math.isfinite(value):
            return "is not a finite number"
        if self.positive and value <= 0:
            return "must be a positive number"
        if self.lo is not None and value < self.lo:
            return f"must be >= {self.lo:g}"
        if self.hi is not None and (value >= self.hi if self.below_hi else value > self.hi):
            return f"must be {'<' if self.below_hi else '<='} {self.hi:g}"
        return None


@dataclass(frozen=True)
class Bool(Spec):
    def problem(self, value):
        return None if isinstance(value, bool) else "is not true or false"


@dataclass(frozen=True)
class Str(Spec):
    choices: tuple | None = None

    def problem(self, value):
        if not isinstance(value, str):
            return "is not a string"
        if self.choices is not None and value not in self.choices:
            return f"is not one of {', '.join(self.choices)}"
        if len(value) > MAX_TEXT:
            return f"is longer than {MAX_TEXT} characters"
        return None


@dataclass(frozen=True)
class Hex(Spec):
    """A lower-case hex digest of ``digits`` digits (SHA-256: 64)."""

    digits: int = 64

    def problem(self, value):
        if (not isinstance(value, str) or len(value) != self.digits
                or value.strip("0123456789abcdef")):
            return f"is not a {self.digits}-digit hex digest"
        return None


@dataclass(frozen=True)
class Maybe(Spec):
    """``spec`` or null."""

    spec: Spec

    def locate(self, value):
        return None if value is None else self.spec.locate(value)


@dataclass(frozen=True)
class List(Spec):
    item: Spec
    min_len: int = 0
    max_len: int = 10**6

    def locate(self, value):
        if not isinstance(value, list):
            return (), "is not a JSON array"
        if not self.min_len <= len(value) <= self.max_len:
            return (), f"must have {self.min_len} to {self.max_len} entries, has {len(value)}"
        for i, item in enumerate(value):
            found = self.item.locate(item)
            if found is not None:
                return (i, *found[0]), found[1]
        return None


@dataclass(frozen=True)
class Obj(Spec):
    """A JSON object with these ``fields``; ``required`` must be present;
    other keys are refused unless ``open``."""

    fields: dict
    required: frozenset = frozenset()
    open: bool = False

    def locate(self, value):
        if not isinstance(value, dict):
            return (), "is not a JSON object"
        missing = sorted(self.required - value.keys())
        if missing:
            return (), f"lacks {', '.join(missing)}"
        if not self.open:
            extra = sorted(value.keys() - self.fields.keys())
            if extra:
                return (), f"has unknown keys {', '.join(map(str, extra))[:200]}"
        for key, spec in self.fields.items():
            if key in value:
                found = spec.locate(value[key])
                if found is not None:
                    return (key, *found[0]), found[1]
        return None

    def with_required(self, *names) -> "Obj":
        return Obj(self.fields, self.required | frozenset(names), self.open)


@dataclass(frozen=True)
class Digests(Spec):
    """{array name: SHA-256 hex}."""

    def problem(self, value):
        if not isinstance(value, dict):
            return "is not a JSON object"
        bad = next((k for k, v in value.items() if Hex().problem(v) is not None), None)
        return None if bad is None else f"has a bad digest for {bad!r}"


ACCURACY = Float(0.0, 1.0)
SECONDS = Float(0.0)

# TrainConfig's fields; TrainConfig checks its values against these too.
CONFIG = Obj({
    # batch_size: the compiled kernels index rows with int64; more rows than
    # any data set has is the whole set in one batch anyway.
    "epochs": Int(1), "batch_size": Int(1, 2**31 - 1), "lr": Float(positive=True),
    "optimizer": Str(OPTIMIZERS), "momentum": Float(0.0, 1.0, below_hi=True),
    "nesterov": Bool(), "schedule": Str(SCHEDULES),
    "warmup": Maybe(Float(0.0, 1.0, below_hi=True)), "weight_decay": Float(0.0),
    "label_smoothing": Float(0.0, 1.0, below_hi=True), "dropout": Float(0.0, 1.0, below_hi=True),
    "seed": Int(0), "dtype": Str(tuple(DTYPES)), "hidden": List(Int(1), max_len=MAX_LAYERS),
    "limit": Maybe(Int(1)), "validation": Int(0), "augment": Str(), "swa_start": Maybe(Int(1)),
    "deskew": Bool(), "outliers": Float(0.0, 1.0), "flagged_ones": Float(0.0, 1.0),
})

RECORD = Obj({
    "epoch": Int(1), "loss": Float(0.0), "train_accuracy": ACCURACY, "test_accuracy": ACCURACY,
    "seconds": SECONDS, "validation_accuracy": ACCURACY, "swa_test_accuracy": ACCURACY,
    "swa_validation_accuracy": ACCURACY,
}, required=frozenset({"epoch", "loss", "train_accuracy", "seconds"}))
# (no test_accuracy when the data has no test split: a model fitted from Python)

PROGRESS = Obj({
    "epoch": Int(0), "step": Int(0), "loss_sum": Float(0.0), "correct": Int(0),
    "seconds": SECONDS, "swa_count": Int(0),
}, required=frozenset({"epoch", "step", "loss_sum", "correct", "seconds"}))

KNOWN_SLOTS = tuple(sorted({slot for slots in SLOTS.values() for slot in slots}))
OPTIMIZER = Obj({"step": Int(0), "slots": List(Str(KNOWN_SLOTS), max_len=len(KNOWN_SLOTS))},
                required=frozenset({"step", "slots"}))

FILE = Obj({
    "format": Str((FORMAT,)), "format_version": Int(1, FORMAT_VERSION),
    "package_version": Str(), "sizes": List(Int(1), min_len=2, max_len=MAX_LAYERS + 2),
    "activation": Str(("relu",)), "output": Str(("softmax",)), "dtype": Str(tuple(DTYPES)),
    "input_scaling": Str(), "deskew": Bool(), "checksums": Digests(), "live_weights": Bool(),
    "optimizer": OPTIMIZER, "config": CONFIG, "progress": PROGRESS,
    "history": List(RECORD),
    "data": Obj({"source": Str(), "checksum": Hex()}, open=True),
    "rng": Obj({"seed": Int(0), "scheme": Str()}, open=True),
}, required=frozenset({"format", "format_version", "sizes", "dtype"}),
    open=True)  # fields a newer fastmlp adds are kept, not refused

RESUMABLE = FILE.with_required("config", "progress", "optimizer", "history")


def check_resumable(meta: dict, label: str, config) -> None:
    """What a resumed run relies on beyond each field's own range (``meta``
    passed RESUMABLE): its fields agree with each other and with the arrays.
    ``config``: the TrainConfig made of ``meta["config"]`` (defaults filled in)."""
    slots = meta["optimizer"]["slots"]
    if sorted(slots) != sorted(SLOTS[config.optimizer]):
        raise FastmlpError(f"{label}.optimizer.slots {slots}: not the slots of the "
                           f"{config.optimizer} optimizer {list(SLOTS[config.optimizer])}")
    if list(config.hidden) != list(meta["sizes"][1:-1]):
        raise FastmlpError(f"{label}.config.hidden {list(config.hidden)}: disagrees with the "
                           f"layer sizes {meta['sizes']}")
    if config.dtype != meta["dtype"]:
        raise FastmlpError(f"{label}.config.dtype {config.dtype!r}: disagrees with the "
                           f"arrays' {meta['dtype']}")
    if config.deskew != meta.get("deskew", False):
        raise FastmlpError(f"{label}.config.deskew {config.deskew}: disagrees with the "
                           f"model's deskew {meta.get('deskew', False)}")
    if len(meta["history"]) != meta["progress"]["epoch"]:
        raise FastmlpError(f"{label}.history: {len(meta['history'])} epoch records, but "
                           f"progress.epoch is {meta['progress']['epoch']}")
