"""Training in a background thread, watched from the Tk thread. No Tk here.

The training thread never touches widgets: it puts events (Stage, Progress,
EpochDone, then Finished or Failed) into a queue.Queue, and the Tk thread
drains it with ``poll()`` from an ``after()`` loop. Cancelling sets a
threading.Event that fastmlp.train.run reads through ``should_stop``
between batches, so a cancel takes effect within one batch.

The training thread lowers its own scheduling priority first (``background``;
the kernels' worker threads it starts inherit it): it still gets every
core the window leaves idle, but the Tk thread no longer waits for a core
behind it, which kept drawing smooth on a 2-core machine
(bench/gui_latency.py, while training).

The thread then gets the backend's kernels ready (fastmlp.readiness.prepare:
a cold Numba cache compiles for 5-35 s), so that the wait is neither on the
Tk thread nor inside the first epoch's timed seconds.
"""

import os
import queue
import sys
import threading
from dataclasses import dataclass

from fastmlp import augmentation
from fastmlp.data import load_dataset
from fastmlp.errors import FastmlpError
from fastmlp.readiness import prepare
from fastmlp.checkpoint import Checkpoint
from fastmlp.train import TrainConfig, TrainState, run, to_checkpoint, training_rows


BACKGROUND_NICENESS = 10  # how much lower than the window's, in nice steps


def background(niceness: int = BACKGROUND_NICENESS) -> bool:
    """Lower the calling thread's CPU priority by ``niceness`` (Linux only:
    there a thread is its own scheduling entity, and the threads it starts
    inherit its priority; elsewhere a thread id is no process id, so nothing
    is done). True if lowered; never raises (a container may forbid it)."""
    if not sys.platform.startswith("linux") or not hasattr(os, "setpriority"):
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + niceness))
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Stage:
    """What the run does before its first batch, for the progress label: sent
    once the kernels are ready ("loading data…")."""

    text: str


@dataclass(frozen=True)
class Progress:
    """After each backend call: ``position`` epochs done so far (fractional),
    ``loss`` the mean loss of the batches just trained."""

    position: float
    loss: float


@dataclass(frozen=True)
class EpochDone:
    """record: fastmlp.train.run's epoch record (epoch, loss, train_accuracy,
    test_accuracy, seconds)."""

    record: dict


@dataclass(frozen=True)
class Finished:
    """status: "done" or "stopped" (cancelled). state: the trained TrainState,
    handed over once the thread no longer touches it. saved: the checkpoint
    ``fastmlp train`` would write (fastmlp.train.to_checkpoint), so a saved
    model can be evaluated or resumed from the command line."""

    status: str
    state: TrainState
    config: TrainConfig
    saved: Checkpoint


@dataclass(frozen=True)
class Failed:
    message: str  # one line


class TrainingController:
    """Runs one training at a time: start(), then poll() until Finished/Failed."""

    def __init__(self):
        self._events: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The weights being trained, for a live view (the first layer's
        # tiles): the training thread writes them between reads, so a view
        # may mix two consecutive batches, which no eye can tell apart.
        self.live_model = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, config: TrainConfig, backend, data=None, state: TrainState | None = None) -> None:
        """Train ``state`` (default: a fresh model) with ``config`` on ``data``
        (default: the shipped MNIST, loaded in the thread). Raises
        FastmlpError if one is running."""
        if self.running:
            raise FastmlpError("a training run is already in progress")
        self._stop.clear()
        self._events = queue.Queue()  # nothing left over from an earlier run
        self.live_model = None
        self._thread = threading.Thread(target=self._train,
                                        args=(config, backend, data, state, self._events),
                                        name="fastmlp-training", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        """Ask the run to stop after the current batch; it then reports Finished("stopped")."""
        self._stop.set()

    def poll(self) -> list:
        """Every event queued since the last poll, oldest first. Never blocks."""
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    # ------------------------------------------------------ training thread

    def _train(self, config, backend, data, state, events: queue.Queue) -> None:
        background()  # the window's thread first, whenever it wants a core
        try:
            prepare(backend, config.dtype, config.augment != "none",
                    augmentation.parse(config.augment).pen > 0)
            events.put(Stage("loading data…"))
            data = data if data is not None else load_dataset(dtype=config.dtype)
            n = len(training_rows(data, config)[0])
            state = state if state is not None else TrainState.fresh(config)
            self.live_model = state.model

            def on_chunk(state, rows_done, loss):
                events.put(Progress(state.epoch + rows_done / n, loss))

            def on_epoch(state, record):
                events.put(EpochDone(dict(record)))

            status = run(config, data, backend, state, on_chunk=on_chunk, on_epoch=on_epoch,
                         should_stop=self._stop.is_set)
            events.put(Finished(status, state, config, to_checkpoint(config, state, data)))
        except FastmlpError as exc:  # includes Diverged
            events.put(Failed(str(exc)))
        except Exception as exc:  # a bug must still end the run visibly, not silently
            events.put(Failed(f"training failed: {type(exc).__name__}: {exc}"))
