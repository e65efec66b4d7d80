"""Which CPU the Numba kernels are compiled for: a portable x86-64 level.

Numba compiles for the exact host CPU by default and keys its cache by it
(CPU name and feature list), so kernels compiled on one machine never load
on another. The backend compiles for the highest x86-64 micro-architecture
level the host has instead (x86-64-v4: AVX-512 F/BW/CD/DQ/VL; x86-64-v3:
AVX2, FMA, BMI): kernels compiled once for a level, such as the bundle the
project ships (kernels/numba_bundle.py), then load on every CPU of that
level. The hot kernels are hand-written vector IR (kernels/numba_ir.py), so
the level costs nothing measurable: an epoch of the seed network took 0.173 s
both times compiled for x86-64-v4, 0.181 and 0.161 s for the host's own
CPU ("rocketlake"), interleaved (bench/README.md).

Set FASTMLP_NUMBA_TARGET=native to compile for the host CPU (Numba's
default), or to a level name. A NUMBA_CPU_NAME the user set is kept as it is.
The choice is made through Numba's own settings (NUMBA_CPU_NAME,
NUMBA_CPU_FEATURES) before anything compiles, so it holds for the whole
process, other Numba code included, and for the processes it starts.
"""

import os

from llvmlite import binding as llvm_binding
from numba.core import config

TARGET_ENV = "FASTMLP_NUMBA_TARGET"
NATIVE = "native"

# LLVM's feature names of each level (what it adds to the one below it).
_V2 = ("cx16", "popcnt", "sahf", "sse3", "sse4.1", "sse4.2", "ssse3")
_V3 = _V2 + ("avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe", "xsave")
_V4 = _V3 + ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")
LEVELS = {"x86-64-v4": _V4, "x86-64-v3": _V3}   # best first
# What a level is compiled with beyond its own features, where the host has
# them: prefetchw, with which the training worker claims the cache lines its
# update will write (kernels/numba_train.py ``claim_piece``). Every recent
# x86 has it (Intel from Broadwell, every AMD); a host that does not report it
# compiles the level without (its prefetches are then plain reads), and so
# loads no shipped bundle: it compiles once, as where no bundle fits.
LEVEL_EXTRAS = ("prfchw",)


def level_features(host) -> str:
    """NUMBA_CPU_FEATURES for a level on a host with these features: the
    LEVEL_EXTRAS it has, nothing else of the host's."""
    return ",".join(f"+{name}" for name in LEVEL_EXTRAS if name in host)


def host_features() -> set:
    return {name for name, on in llvm_binding.get_host_cpu_features().items() if on}


def best_level(features) -> str:
    """The highest level of LEVELS whose features are all in ``features``,
    else NATIVE (an older x86 or another architecture)."""
    for level, needs in LEVELS.items():
        if set(needs) <= set(features):
            return level
    return NATIVE


def choose() -> str:
    """The target: the user's NUMBA_CPU_NAME if set, else FASTMLP_NUMBA_TARGET
    if set, else the host's best level. A level the host lacks falls back to
    NATIVE (its code would not run here)."""
    if os.environ.get("NUMBA_CPU_NAME"):
        return os.environ["NUMBA_CPU_NAME"]
    wanted = os.environ.get(TARGET_ENV, "").strip() or best_level(host_features())
    if wanted != NATIVE and (wanted not in LEVELS or not set(LEVELS[wanted]) <= host_features()):
        return NATIVE
    return wanted


def apply(target: str) -> None:
    """Point Numba's codegen at ``target``: its environment variables (read
    again at every compile, and inherited by child processes), then its
    config now."""
    if target == NATIVE or os.environ.get("NUMBA_CPU_NAME"):
        return
    os.environ["NUMBA_CPU_NAME"] = target
    os.environ["NUMBA_CPU_FEATURES"] = level_features(host_features())
    config.reload_config()


TARGET = choose()
apply(TARGET)


def vector_bytes() -> int:
    """The width of the target's vector registers: 64 with AVX-512, else 32."""
    if TARGET in LEVELS:
        return 64 if "avx512f" in LEVELS[TARGET] else 32
    features = os.environ.get("NUMBA_CPU_FEATURES")
    if os.environ.get("NUMBA_CPU_NAME") and features is not None:
        return 64 if "+avx512f" in features.split(",") else 32
    return 64 if "avx512f" in host_features() else 32
