"""What a measurement ran on.

The machine, its libraries, the code measured, and the CPU time other processes
took meanwhile."""

import datetime
import hashlib
import json
import os
import platform
import subprocess
import time

import numpy as np


def source_digest(module) -> dict:
    """Which code was measured: the backend's file, its SHA-256 (first 12 hex
    digits) and whether git sees it modified (the work tree may be ahead of HEAD)."""
    path = getattr(module, "__file__", None)
    if not path:
        return {}
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    try:
        status = subprocess.run(["git", "status", "--porcelain", "--", path], capture_output=True,
                                text=True, cwd=os.path.dirname(path), timeout=10).stdout.strip()
    except Exception:
        status = "unknown"
    return {"file": path, "sha256": digest, "git_status": status or "clean"}


class ForeignLoad:
    """CPU time used on this machine by everything but this process, from
    /proc/stat (all CPUs' busy time) minus os.times() (this process, every
    thread, and its finished children). ``load()`` since the last mark is in CPUs: 0 = idle machine,
    1 = another process kept one core busy. Other engineers share the
    machine: a timed epoch with load > 0 ran on a contended machine (with
    2 cores, an OpenBLAS/OpenMP thread that loses its core can slow a
    2-thread GEMM loop several-fold)."""

    def __init__(self):
        self.available = os.path.exists("/proc/stat")
        self.mark()

    @staticmethod
    def _busy() -> float:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal (guest is inside user)
        busy = sum(fields[:8]) - fields[3] - fields[4]
        return busy / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own() -> float:
        t = os.times()  # children: the start-up subprocesses, once waited for
        return t.user + t.system + t.children_user + t.children_system

    def mark(self) -> None:
        self._t = time.perf_counter()
        if self.available:
            self._b, self._o = self._busy(), self._own()

    def load(self) -> float | None:
        """Average CPUs used by other processes since mark()."""
        if not self.available:
            return None
        wall = time.perf_counter() - self._t
        foreign = (self._busy() - self._b) - (self._own() - self._o)
        return max(0.0, foreign / wall) if wall > 0 else 0.0


def wait_for_idle(max_wait: float, threshold: float = 0.15, window: float = 1.0,
                  log=None) -> tuple[float, float | None]:
    """Wait (up to max_wait s) until other processes used < threshold CPUs over
    a ``window``-second sample. Returns (seconds waited, last load)."""
    meter, waited, load = ForeignLoad(), 0.0, None
    if not meter.available or max_wait <= 0:
        return 0.0, None
    announced = False
    while True:
        meter.mark()
        time.sleep(window)
        load = meter.load()
        waited += window
        if load < threshold or waited >= max_wait:
            return waited, load
        if log and not announced:
            log(f"  waiting for other processes to finish (load {load:.2f} CPUs) ...")
            announced = True


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def blas_info() -> list[dict]:
    """threadpoolctl's view of the loaded BLAS/OpenMP libraries, else numpy.show_config."""
    try:
        import threadpoolctl
        return [{k: v for k, v in lib.items() if k != "filepath"} | {"filepath": lib.get("filepath")}
                for lib in threadpoolctl.threadpool_info()]
    except ImportError:
        try:
            return [{"numpy_show_config": np.show_config(mode="dicts").get("Build Dependencies", {})}]
        except Exception as exc:  # very old numpy
            return [{"error": str(exc)}]


def versions() -> dict:
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("numba", "llvmlite", "torch", "threadpoolctl"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:
            out[mod] = None
    return out


BLAS_ENV_PREFIXES = ("OPENBLAS_", "OMP_", "MKL_", "NUMBA_", "GOTO", "BLIS_", "FASTMLP_")


def machine_info() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=os.path.dirname(os.path.abspath(__file__)),
                                timeout=10).stdout.strip() or None
    except Exception:
        commit = None
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "versions": versions(),
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(BLAS_ENV_PREFIXES)},
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "git_commit": commit,
    }


def blas_summary(libs: list[dict]) -> list[str]:
    lines = []
    for lib in libs:
        if "internal_api" in lib:
            lines.append(f"{lib.get('user_api')}: {lib.get('internal_api')} {lib.get('version')}, "
                         f"{lib.get('num_threads')} threads, architecture/coretype "
                         f"{lib.get('architecture')}, threading {lib.get('threading_layer')} "
                         f"({os.path.basename(lib.get('filepath') or '')})")
        else:
            lines.append(json.dumps(lib, default=str))
    return lines


def header_lines(info: dict, libs: list[dict]) -> list[str]:
    v = info["versions"]
    lines = [
        f"date: {info['date']}  (git {info['git_commit']})",
        f"machine: {info['nproc']} CPUs (nproc; {info['affinity']} usable), {info['cpu_model']}, "
        f"{info['platform']}",
        f"versions: python {v['python']}, numpy {v['numpy']}, numba {v['numba']}, "
        f"llvmlite {v['llvmlite']}, torch {v['torch'] or 'not installed'}",
    ]
    lines += [f"BLAS: {s}" for s in blas_summary(libs)]
    lines.append(f"env: OPENBLAS_CORETYPE={info['OPENBLAS_CORETYPE'] or '(unset)'}"
                 + "".join(f", {k}={val}" for k, val in info["env"].items()
                           if k != "OPENBLAS_CORETYPE"))
    return lines
