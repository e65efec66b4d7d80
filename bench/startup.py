"""Start-up cost: a fresh interpreter importing a backend, making its first calls.

With a cold or a warm compile cache."""

import json
import os
import subprocess
import sys
import textwrap
import time


STARTUP_SCRIPT = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    import numpy as np
    from fastmlp.kernels import get_backend
    backend = get_backend(sys.argv[1])
    t_import = time.perf_counter()
    from fastmlp.model import N_INPUTS
    from fastmlp.train import TrainConfig, TrainState, epoch_order
    config = TrainConfig()
    state = TrainState.fresh(config)
    rng = np.random.default_rng(0)
    n = 4 * config.batch_size
    X = (rng.random((n, N_INPUTS)) * (rng.random((n, N_INPUTS)) < 0.2)).astype(np.float32)
    y = rng.integers(0, 10, n).astype(np.int64)
    order = epoch_order(0, 0, n)
    W, b = state.model.W, state.model.b
    t1 = time.perf_counter()
    backend.train_batches(W, b, state.optimizer.slots, 0, X, y, order, config.batch_size, 0, 4,
                          np.full(4, config.lr), config.optimizer_config(), 0.0)
    t_train = time.perf_counter() - t1
    t1 = time.perf_counter()
    backend.forward(W, b, X[:1])
    t_forward = time.perf_counter() - t1
    print(json.dumps({"import": t_import - t0, "first_train_batches": t_train,
                      "first_forward": t_forward}))
""")


def process_start(backend_name: str, cache_dir: str | None, timeout: float = 600,
                  bundle: bool = True) -> dict:
    """A fresh interpreter: import the backend, first train_batches (4 batches)
    and first forward call, timed inside; ``wall`` is the whole process
    (interpreter start included). NUMBA_CACHE_DIR=cache_dir if given; not
    ``bundle``: the shipped compiled kernels are not seeded into it
    (FASTMLP_NUMBA_BUNDLE=0, kernels/compiled_bundle.py), so a fresh cache
    compiles everything."""
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    if not bundle:
        env["FASTMLP_NUMBA_BUNDLE"] = "0"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", STARTUP_SCRIPT, backend_name], env=env,
                          capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.strip().splitlines()[-1:])
        raise RuntimeError(f"{backend_name} start-up subprocess failed: {tail}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    result["import_plus_first_calls"] = result["import"] + result["first_train_batches"] + result["first_forward"]
    return result


def cache_files(directory: str) -> int:
    count = 0
    for _, _, files in os.walk(directory):
        count += sum(f.endswith((".nbi", ".nbc")) for f in files)
    return count
