"""Reliability probe (issue 13): hostile inputs, flag edges and signals fed to
the real ``fastmlp`` command, one fresh process per case, and what became of
each: a valid result, a clean one-line error, a traceback, a hang, its peak
resident memory, damaged files and temporary files left behind.

    python tests/hardening_probe.py [--address-space GIB] [--seed N] [--quick] [--json]

Every case runs under RLIMIT_AS (default 2 GiB; 0: none) in its own
directory; inputs are generated per case (tests/hostile.py), all small on
disk. Not part of the test suite (it takes minutes); the suite has the same
cases one by one (tests/test_hardening.py). Timings and memory depend on the
machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostile  # noqa: E402
import numpy as np  # noqa: E402

from fastmlp import checkpoint  # noqa: E402
from fastmlp.data import FILE_NAMES  # noqa: E402

GB = 2**30
TRAIN = ["--limit", "300", "--epochs", "1", "--hidden", "16", "--quiet"]


@dataclass
class Case:
    """One probe: ``setup(directory)`` makes the inputs and returns argv (for
    ``python -m fastmlp``); ``check(directory, outcome)`` returns a list of
    problems found afterwards (damaged files, temp files left)."""

    group: str
    name: str
    setup: object
    check: object = None
    timeout: float = 120
    run: object = None  # custom runner (signals): (directory, argv) -> Outcome


@dataclass
class Result:
    case: Case
    outcome: hostile.Outcome
    problems: list = field(default_factory=list)


def leftovers(directory: Path) -> list:
    return sorted(p.name for p in directory.rglob(".*") if p.name.endswith((".tmp", ".lock")))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- the cases

def model_file(directory: Path) -> Path:
    return hostile.small_checkpoint(directory / "model.npz")


def idx_cases(rng: random.Random, count: int) -> list:
    """Mutations of one of the four files of a small valid data set, read by
    evaluate, train and gradcheck."""
    special = {
        "zero images": lambda p: p.write_bytes(gzip.compress(hostile.idx_header((0, 28, 28)))),
        "14x14 images": lambda p: p.write_bytes(gzip.compress(hostile.idx_bytes(np.zeros((20, 14, 14), "uint8")))),
        "fifo": lambda p: (p.unlink(), os.mkfifo(p)),
        "directory": lambda p: (p.unlink(), p.mkdir()),
        "symlink loop": lambda p: (p.unlink(), p.symlink_to(p)),
        "symlink to /dev/zero": lambda p: (p.unlink(), p.symlink_to("/dev/zero")),
        "missing": lambda p: p.unlink(),
        "bomb past header": lambda p: hostile.gzip_bomb(p, hostile.idx_header((20, 28, 28)), 3 * GB // 2),
        "header declares 4.7 TB": lambda p: p.write_bytes(gzip.compress(hostile.idx_header((60_000_000, 280, 280)))),
        "header declares 2 GiB, 2 GiB follow": lambda p: hostile.gzip_bomb(
            p, hostile.idx_header((2_739_000, 28, 28)), 2_739_000 * 784),
    }

    def mutate(p: Path, seed: int):
        r = random.Random(seed)
        raw = gzip.decompress(p.read_bytes())
        kind = r.choice(["flip header", "flip", "truncate", "dims", "trailing", "gzip cut", "raw"])
        if kind == "flip header":
            raw = hostile.flip_byte(raw, r.randrange(min(16, len(raw))))
        elif kind == "flip":
            raw = hostile.flip_byte(raw, r.randrange(len(raw)))
        elif kind == "truncate":
            raw = raw[:r.randrange(len(raw))]
        elif kind == "dims":
            ndim = raw[3]
            dims = [r.choice([0, 1, 28, 2**31, 2**32 - 1, r.randrange(2**32)]) for _ in range(ndim)]
            raw = hostile.idx_header(dims) + raw[4 + 4 * ndim:]
        elif kind == "trailing":
            raw += bytes(r.randrange(1, 5000))
        if kind == "gzip cut":
            data = gzip.compress(raw)
            p.write_bytes(data[:r.randrange(10, len(data))])
        elif kind == "raw":
            p.unlink()
            p.with_suffix("").write_bytes(raw[:r.randrange(len(raw) + 1)])
        else:
            p.write_bytes(gzip.compress(raw))

    commands = [["evaluate", "{model}"], ["train", *TRAIN, "--out", "{dir}/out.npz"],
                ["gradcheck", "--backends", "numpy", "--batch-size", "4", "--entries", "5", "--hidden", "8"]]
    cases = []
    names = list(special) + [f"random mutation {i}" for i in range(count - len(special))]
    for i, name in enumerate(names):
        target = rng.choice(sorted(FILE_NAMES.values()))
        if name in ("zero images", "14x14 images", "bomb past header", "header declares 4.7 TB",
                    "header declares 2 GiB, 2 GiB follow"):
            target = FILE_NAMES["train_images"]  # their headers are an images file's
        command = commands[i % len(commands)] if name.startswith("random") else commands[0]
        change = special.get(name) or (lambda p, s=rng.randrange(2**32): mutate(p, s))

        def setup(d, target=target, command=command, change=change):
            data_dir = hostile.write_dataset(d / "data")
            change(data_dir / f"{target}.gz")
            model = model_file(d)
            return [a.replace("{model}", str(model)).replace("{dir}", str(d)) for a in command] + ["--data", data_dir]
        cases.append(Case("idx", f"{name} ({target}, {command[0]})", setup))
        if name in special:  # the special ones once more under train
            def setup_train(d, target=target, change=change):
                data_dir = hostile.write_dataset(d / "data")
                change(data_dir / f"{target}.gz")
                return ["train", *TRAIN, "--out", d / "out.npz", "--data", data_dir]
            cases.append(Case("idx", f"{name} ({target}, train)", setup_train))
    return cases


def checkpoint_cases(rng: random.Random, count: int) -> list:
    """Mutated checkpoints under evaluate (and a share under --resume)."""
    def damage(path: Path, r: random.Random) -> str:
        raw = path.read_bytes()
        content = hostile.members(path)
        kind = r.choice(["flip", "flip", "truncate", "delete member", "add member", "forge header",
                         "meta field", "meta section", "swap members", "raw member"])
        if kind == "flip":
            path.write_bytes(hostile.flip_byte(raw, r.randrange(len(raw))))
            return kind
        if kind == "truncate":
            path.write_bytes(raw[:r.randrange(len(raw))])
            return kind
        names = sorted(content)
        name = r.choice(names)
        if kind == "delete member":
            del content[name]
        elif kind == "add member":
            content[r.choice(["junk.npy", "W.9.npy", "opt.m_W.0.npy", "meta"])] = hostile.npy_bytes(
                "<f8", (r.choice([1, 3 * 2**27]),), bytes(8))
        elif kind == "forge header":
            content[name] = hostile.npy_bytes(r.choice(["<f4", "<f8", "|O", "<U99999999", ">f4"]),
                                              tuple(r.choice([0, 1, 8, 784, 2**40]) for _ in range(r.randrange(3))),
                                              bytes(r.randrange(100)))
        elif kind == "swap members":
            a, b = r.sample([n for n in names if n != "meta.npy"], 2)
            content[a], content[b] = content[b], content[a]
        elif kind == "raw member":
            content[name] = os.urandom(r.randrange(1, 200))
        else:
            meta = hostile.read_meta(content)
            deep = "@@deep@@"  # stands for JSON nested 5000 deep, spliced into the text
            values = [None, True, -1, 0, 1.5, 1e308, float("nan"), "x", [], {}, [[1]], 2**70,
                      deep, [{}], {"a": 1}]
            value = r.choice(values)
            if kind == "meta field":
                key = r.choice(sorted(meta) + ["format_version", "sizes", "checksums"])
                meta[key] = value
            else:
                section = r.choice(["optimizer", "config", "progress", "history"])
                if isinstance(meta.get(section), dict):
                    meta[section][r.choice(sorted(meta[section]) + ["bogus"])] = value
                else:
                    meta[section] = value
            text = json.dumps(meta).replace(json.dumps(deep), "[" * 5000 + "]" * 5000)
            content = hostile.with_meta(content, text)
        hostile.write_members(path, content)
        return kind

    def trained(d: Path) -> Path:
        out = d / "trained.npz"
        subprocess.run([sys.executable, "-m", "fastmlp", "train", *TRAIN, "--out", out],
                       capture_output=True, env=hostile.environment(), check=True, timeout=120)
        return out

    cases = []
    for i in range(count):
        seed = rng.randrange(2**32)
        resume = i % 4 == 3

        def setup(d, seed=seed, resume=resume):
            path = trained(d) if resume else model_file(d)
            damage(path, random.Random(seed))
            return (["train", "--resume", path, "--epochs", "2", "--quiet", "--out", d / "o.npz"]
                    if resume else ["evaluate", path])
        cases.append(Case("checkpoint", f"{'resume' if resume else 'evaluate'} #{i}", setup))
    for label, change in [("5 outputs", lambda m: m.update(sizes=m["sizes"][:-1] + [5])),
                          ("format_version -1", lambda m: m.update(format_version=-1)),
                          ("format_version true", lambda m: m.update(format_version=True)),
                          ("seed -1", lambda m: m["config"].update(seed=-1)),
                          ("batch_size 1.5", lambda m: m["config"].update(batch_size=1.5)),
                          ("hidden ['x']", lambda m: m["config"].update(hidden=["x"])),
                          ("epoch -1", lambda m: m["progress"].update(epoch=-1)),
                          ("step -1", lambda m: m["progress"].update(step=-1)),
                          ("history [{}]", lambda m: m.update(history=[{}]))]:
        def setup(d, change=change):
            path = trained(d)
            content = hostile.members(path)
            meta = hostile.read_meta(content)
            change(meta)
            hostile.write_members(path, hostile.with_meta(content, meta))
            return ["train", "--resume", path, "--epochs", "2", "--quiet", "--out", d / "o.npz"]
        cases.append(Case("checkpoint", f"issue: {label} (resume)", setup))
    return cases


def image_cases(rng: random.Random, count: int) -> list:
    import io

    from PIL import Image, ImageDraw

    def valid(fmt: str) -> bytes:
        image = Image.new("RGB", (60, 60), "white")
        ImageDraw.Draw(image).line([(30, 8), (30, 52)], fill="black", width=6)
        buffer = io.BytesIO()
        image.save(buffer, fmt)
        return buffer.getvalue()

    special = {
        "60000x1 PNG": lambda p: p.write_bytes(hostile.thin_png(60000, 1)),
        "30000x1 PNG": lambda p: p.write_bytes(hostile.thin_png(30000, 1)),
        "8192x1 PNG (the bound)": lambda p: p.write_bytes(hostile.thin_png(8192, 1)),
        "9400x9400 RGBA PNG": lambda p: p.write_bytes(hostile.png_header_only(9400, 9400)),
        "symlink to /dev/zero": lambda p: p.symlink_to("/dev/zero"),
        "fifo": lambda p: os.mkfifo(p),
        "EPS { } loop": lambda p: p.write_bytes(hostile.EPS_LOOP),
        "empty": lambda p: p.write_bytes(b""),
        "directory": lambda p: p.mkdir(),
        "65 MB sparse": lambda p: open(p, "wb").truncate(65 * 2**20),
    }
    formats = ["PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP"]
    cases = []
    for name, make in special.items():
        def setup(d, make=make):
            make(d / "x.png")
            return ["predict", model_file(d), d / "x.png"]
        cases.append(Case("images", name, setup, timeout=30))
    for i in range(count - len(special)):
        fmt, seed = formats[i % len(formats)], rng.randrange(2**32)

        def setup(d, fmt=fmt, seed=seed):
            r = random.Random(seed)
            data = bytearray(valid(fmt))
            for _ in range(r.randrange(1, 5)):
                data[r.randrange(len(data))] = r.randrange(256)
            if r.random() < 0.4:
                data = data[:r.randrange(len(data))]
            (d / "x.png").write_bytes(bytes(data))
            return ["predict", model_file(d), d / "x.png"]
        cases.append(Case("images", f"mutated {fmt} #{i}", setup, timeout=30))
    return cases


FLAG_EDGES = {
    "--epochs": ["0", "-1", "1.5", "10000000", "1000000000", "99999999999999999999"],
    "--batch-size": ["0", "-1", "1.5", "1", "100000", "9223372036854775808"],
    "--lr": ["0", "-1", "nan", "inf", "1e308", "1e-320"],
    "--momentum": ["-0.1", "1", "nan", "inf"],
    "--warmup": ["-0.1", "1", "nan", "0.99"],
    "--weight-decay": ["-1", "inf", "nan", "1e308"],
    "--label-smoothing": ["-0.1", "1", "nan", "0.999"],
    "--dropout": ["-0.1", "1", "nan", "0.999"],
    "--seed": ["-1", "99999999999999999999", "x"],
    "--hidden": ["0", "-5", "", ",", "100000,100000", "9223372036854775808", "1", "x"],
    "--limit": ["0", "-1", "70000"],
    "--validation": ["-1", "300", "299"],
    "--swa-start": ["0", "2", "1"],
    "--dtype": ["float16", ""],
    "--augment": ["nope", "rotate=nan", "rotate=1e308", "grid=0", "grid=100000"],
}


def flag_cases() -> list:
    cases = []
    for flag, values in FLAG_EDGES.items():
        for value in values:
            base = ["--epochs", "1", "--hidden", "16", "--quiet"]
            base = base if flag == "--epochs" else ["--limit", "300", *base]

            def setup(d, flag=flag, value=value, base=base):
                return ["train", *base, f"{flag}={value}", "--out", d / "m.npz"]
            cases.append(Case("flags", f"train {flag}={value}", setup, timeout=90))
    for argv in (["--batch-size", "100000"], ["--batch-size", "0"], ["--entries", "0"],
                 ["--entries", "99999999999999999999"], ["--backends", ""], ["--backends", ","],
                 ["--backends", "nope"], ["--hidden", "100000,100000"], ["--dtype", "float16"],
                 ["--seed", "-1"]):
        def setup(d, argv=argv):
            # argparse keeps the last value of a flag: argv overrides the small defaults
            return ["gradcheck", "--backends", "numpy", "--hidden", "8", "--batch-size", "4",
                    "--entries", "5", *argv]
        cases.append(Case("flags", f"gradcheck {' '.join(argv)}", setup, timeout=90))
    for name, target in (("--log /dev/full", ["--log", "/dev/full"]), ("--out /dev/null", ["--out", "/dev/null"]),
                         ("--plot /dev/full", ["--plot", "/dev/full"])):
        def setup(d, target=target):
            return ["train", *TRAIN, *target] + ([] if "--out" in target else ["--out", d / "m.npz"])
        def check(d, outcome, target=target):
            return [] if os.path.exists("/dev/null") and not Path("/dev/null").is_file() else ["/dev/null replaced"]
        cases.append(Case("flags", name, setup, check, timeout=90))
    return cases


def _train_argv(d: Path) -> list:
    return ["train", "--limit", "2000", "--epochs", "40", "--hidden", "32", "--quiet", "--out", d / "m.npz"]


def _signal_run(d: Path, argv, signals: list) -> hostile.Outcome:
    """Start a training, send ``signals`` [(delay after the first epoch line, signum)]."""
    import resource

    proc = subprocess.Popen([sys.executable, "-m", "fastmlp", *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=hostile.environment())
    proc.stdout.readline()  # "training ..."
    start = time.monotonic()
    for delay, signum in signals:
        time.sleep(max(0.0, delay - (time.monotonic() - start)))
        if proc.poll() is None:
            proc.send_signal(signum)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        return hostile.Outcome(None, stdout, stderr, 0)
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # upper bound: all children so far
    return hostile.Outcome(proc.returncode, stdout, stderr, rss)


def signal_cases(rng: random.Random, kills: int, interrupts: int) -> list:
    def previous(d: Path) -> list:
        subprocess.run([sys.executable, "-m", "fastmlp", *map(str, _train_argv(d)[:-2]), "--epochs", "1",
                        "--out", d / "m.npz"], capture_output=True, env=hostile.environment(), check=True)
        return _train_argv(d)

    def after_kill(d: Path, outcome) -> list:
        problems = []
        try:
            checkpoint.load(d / "m.npz")
        except Exception as exc:  # noqa: BLE001 - any failure is a damaged file
            problems.append(f"damaged: {exc}")
        # The next run of the same target must clean what the kill left.
        done = checkpoint.load(d / "m.npz").meta["progress"]["epoch"] if not problems else 0
        subprocess.run([sys.executable, "-m", "fastmlp", "train", "--resume", d / "m.npz", "--epochs",
                        str(max(done + 1, 2)), "--quiet"], capture_output=True, env=hostile.environment())
        problems += [f"left: {name}" for name in leftovers(d)]
        return problems

    cases = []
    for i in range(kills):
        delay = rng.uniform(0.0, 2.0)
        cases.append(Case("signals", f"SIGKILL after {delay:.3f} s", previous, after_kill,
                          run=lambda d, argv, delay=delay: _signal_run(d, argv, [(delay, signal.SIGKILL)])))
    for i in range(interrupts):
        delay, gap = rng.uniform(0.0, 2.0), rng.choice([None, 0.0, 0.002, 0.005, 0.01, 0.02, 0.05])
        sigs = [(delay, signal.SIGINT)] + ([] if gap is None else [(delay + gap, signal.SIGINT)])
        name = f"SIGINT after {delay:.3f} s" + ("" if gap is None else f", again {gap * 1000:.0f} ms later")
        cases.append(Case("signals", name, previous, after_kill,
                          run=lambda d, argv, sigs=sigs: _signal_run(d, argv, sigs)))
    for i in range(3):
        def concurrent(d, argv):
            first = subprocess.Popen([sys.executable, "-m", "fastmlp", *map(str, argv)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=hostile.environment())
            first.stdout.readline()
            second = hostile.run_limited(argv, None)
            first.send_signal(signal.SIGINT)
            first.communicate(timeout=120)
            return second
        cases.append(Case("signals", f"two trainings, one --out #{i}", previous, after_kill, run=concurrent))
    return cases


# --------------------------------------------------------------- running

def run_case(case: Case, address_space: int | None, backend: str | None = None) -> Result:
    with tempfile.TemporaryDirectory(prefix="probe-") as tmp:
        d = Path(tmp)
        argv = case.setup(d)
        inputs = {p: digest(p) for p in d.rglob("*") if p.is_file() and not p.is_symlink()}
        if case.run is not None:
            outcome = case.run(d, argv)
        else:
            outcome = hostile.run_limited(argv, address_space, timeout=case.timeout, cwd=d, backend=backend)
        problems = []
        if case.check is not None:
            problems += case.check(d, outcome)
        else:
            problems += [f"left: {name}" for name in leftovers(d)]
            written = {d / "out.npz", d / "m.npz", d / "o.npz"}
            problems += [f"changed input: {p.name}" for p, h in inputs.items()
                         if p not in written and p.exists() and digest(p) != h]
        return Result(case, outcome, problems)


def classify(result: Result) -> str:
    o = result.outcome
    if o.returncode == -999:
        return "probe error"
    if o.returncode is None:
        return "timeout"
    if o.returncode == -signal.SIGKILL and result.case.name.startswith("SIGKILL"):
        return "killed"  # what was asked; its files are checked apart
    if o.traceback:
        return "traceback"
    if o.returncode in (0, 130) and not o.stderr.strip().startswith("fastmlp: error"):
        return "valid"
    if o.clean_error:
        return "clean error"
    return "other"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address-space", type=float, default=2.0, help="GiB of RLIMIT_AS per case (0: none)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--quick", action="store_true", help="a few cases per group")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", metavar="PATH", help="every case's outcome")
    parser.add_argument("--backend", help="FASTMLP_BACKEND of the cases (default: numpy)")
    parser.add_argument("--groups", default="idx,checkpoint,images,flags,signals",
                        help="comma-separated groups to run")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    scale = 0.15 if args.quick else 1.0
    cases = (idx_cases(rng, int(120 * scale) + 10) + checkpoint_cases(rng, int(160 * scale))
             + image_cases(rng, int(70 * scale) + 10) + flag_cases()
             + signal_cases(rng, int(30 * scale) or 1, int(24 * scale) or 1))
    groups = set(args.groups.split(","))
    cases = [case for case in cases if case.group in groups]
    limit = int(args.address_space * GB) or None
    print(f"{len(cases)} cases, RLIMIT_AS {args.address_space:g} GiB, {args.workers} workers, "
          f"backend {args.backend or 'numpy'}", file=sys.stderr)
    start = time.monotonic()
    done = Counter()

    def one(case):
        try:
            result = run_case(case, limit, args.backend)
        except Exception as exc:  # noqa: BLE001 - a bug of the probe, not of fastmlp
            result = Result(case, hostile.Outcome(-999, "", f"probe error: {exc!r}", 0), ["probe error"])
        done["n"] += 1
        if done["n"] % 50 == 0:
            print(f"  {done['n']}/{len(cases)} after {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
        return result

    with ThreadPoolExecutor(args.workers) as pool:
        results = list(pool.map(one, cases))
    table = defaultdict(Counter)
    for r in results:
        row = table[r.case.group]
        row["cases"] += 1
        row[classify(r)] += 1
        row["over 1 GB"] += r.outcome.peak_rss > GB and r.case.run is None
        row["damaged files"] += any(p.startswith(("damaged", "changed", "/dev/null")) for p in r.problems)
        row["temp files left"] += any(p.startswith("left") for p in r.problems)
    columns = ["cases", "valid", "killed", "clean error", "traceback", "timeout", "other", "probe error", "over 1 GB",
               "damaged files", "temp files left"]
    print(f"| group | {' | '.join(columns)} |\n|---|{'---:|' * len(columns)}")
    for group, row in list(table.items()) + [("total", sum(table.values(), Counter()))]:
        print(f"| {group} | {' | '.join(str(row[c]) for c in columns)} |")
    peak = max((r.outcome.peak_rss, r.case.name) for r in results if r.case.run is None)
    print(f"\nlargest peak RSS of a case: {peak[0] / 2**20:.0f} MiB ({peak[1]}); "
          f"{time.monotonic() - start:.0f} s on this (shared) machine", file=sys.stderr)
    bad = [r for r in results if classify(r) in ("traceback", "timeout", "other", "probe error") or r.problems
           or (r.outcome.peak_rss > GB and r.case.run is None)]
    for r in bad:
        print(f"  {r.case.group}: {r.case.name}: {classify(r)} rc={r.outcome.returncode} "
              f"rss={r.outcome.peak_rss / 2**20:.0f} MiB {r.problems} {r.outcome.stderr.strip()[-300:]!r}",
              file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps([
            {"group": r.case.group, "case": r.case.name, "class": classify(r), "returncode": r.outcome.returncode,
             "peak_rss": r.outcome.peak_rss, "problems": r.problems, "stderr": r.outcome.stderr[-500:]}
            for r in results], indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
