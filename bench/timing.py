"""How the benchmarks time a call.

Samples of seconds per call, each the mean over as many calls as fill a minimum
time."""

import math
import statistics
import time


def samples(fn, count: int, min_time: float) -> list:
    """``count`` samples of seconds per call of fn(), each the mean over as
    many calls as fill ``min_time`` (two untimed calls first: a warm-up and
    one to size the loop)."""
    fn()
    t0 = time.perf_counter()
    fn()
    calls = max(1, int(min_time / max(time.perf_counter() - t0, 1e-7)))
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        out.append((time.perf_counter() - t0) / calls)
    return out


def time_call(fn, min_time: float = 0.2, repeats: int = 5) -> float:
    """Best (minimum) seconds per call of fn() over ``repeats`` samples."""
    return min(samples(fn, repeats, min_time), default=math.inf)


def stats(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values), "values": values}
