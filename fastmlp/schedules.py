"""Learning-rate schedules.

One learning rate per optimizer step, computed up front so a compiled training
loop can just index it."""

import numpy as np

from fastmlp.errors import FastmlpError

SCHEDULES = ("constant", "cosine", "onecycle")

# One-cycle (Smith & Topin 2019) starts at lr / 25 and ends at lr / 1e4,
# the defaults of the common implementations.
ONECYCLE_START_DIV = 25.0
ONECYCLE_END_DIV = 1e4
ONECYCLE_DEFAULT_WARMUP = 0.3


def learning_rates(schedule: str, lr: float, total_steps: int, warmup: float | None = None):
    """lrs: (total_steps,) float64, the learning rate of each optimizer step.

    constant: lr throughout (after an optional linear warm-up).
    cosine:   linear warm-up over the first ``warmup`` fraction of the steps,
              then lr * (1 + cos(pi * progress)) / 2, decaying to 0.
    onecycle: linear rise from lr/25 to lr over ``warmup`` (default 0.3),
              then a cosine fall to lr/1e4.
    """
    if schedule not in SCHEDULES:
        raise FastmlpError(f"unknown schedule {schedule!r}; available: {', '.join(SCHEDULES)}")
    if warmup is None:
        warmup = ONECYCLE_DEFAULT_WARMUP if schedule == "onecycle" else 0.0
    if not 0.0 <= warmup < 1.0:
        raise FastmlpError(f"--warmup {warmup}: must be a fraction in [0, 1)")

    # A huge lr overflows to inf below: one clear error instead of warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        lrs = _rates(schedule, lr, total_steps, warmup)
    if not np.isfinite(lrs).all():
        raise FastmlpError(f"--lr {lr:g}: the learning-rate schedule overflows; use a smaller --lr")
    return lrs


def _rates(schedule: str, lr: float, total_steps: int, warmup: float):
    step = np.arange(total_steps, dtype=np.float64)
    warmup_steps = int(round(warmup * total_steps))
    start = lr / ONECYCLE_START_DIV if schedule == "onecycle" else 0.0
    end = lr / ONECYCLE_END_DIV if schedule == "onecycle" else 0.0

    # Warm-up: (step + 1) so that the first step already moves the weights.
    rise = start + (lr - start) * (step + 1) / max(warmup_steps, 1)
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    if schedule == "constant":
        after = np.full(total_steps, lr)
    else:
        after = end + (lr - end) * 0.5 * (1.0 + np.cos(np.pi * progress))
    return np.where(step < warmup_steps, rise, after)
