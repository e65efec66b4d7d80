"""Optimizer configuration and state.

The update rules themselves are kernels (``sgd_update``, ``momentum_update``,
``adam_update`` in fastmlp.kernels)."""

from dataclasses import dataclass, field

import numpy as np

from fastmlp.kernels.contract import OPTIMIZER_SLOTS, OptimizerConfig, slot_key

# Which per-parameter slot arrays each optimizer keeps, one list per slot,
# shaped like W and like b: the kernels' table, the one list of names.
SLOTS = OPTIMIZER_SLOTS
OPTIMIZERS = tuple(SLOTS)


# OptimizerConfig (imported above) is the kernels' own record of an optimizer:
# a name and plain values, what the backends take.
__all__ = ["SLOTS", "OPTIMIZERS", "OptimizerConfig", "OptimizerState", "init_state"]


@dataclass
class OptimizerState:
    """step: updates done so far (Adam's bias correction needs it).
    slots: e.g. {"m_W": [(i, o) per layer], "m_b": [(o,) per layer], ...}."""

    step: int = 0
    slots: dict = field(default_factory=dict)


def init_state(config: OptimizerConfig, W: list, b: list) -> OptimizerState:
    """Zeroed slot arrays for ``config.name``, shaped and typed like W and b."""
    slots = {}
    for slot in SLOTS[config.name]:
        slots[slot_key(slot, "W")] = [np.zeros_like(w) for w in W]
        slots[slot_key(slot, "b")] = [np.zeros_like(bias) for bias in b]
    return OptimizerState(step=0, slots=slots)
