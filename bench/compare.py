"""Compare the backends on one training epoch and print a markdown table.

    python bench/compare.py                  # 60000 rows, 7 repeats
    python bench/compare.py --quick          # CI: 6000 rows, 1 repeat (< 60 s)
    python bench/compare.py --json out.json --markdown out.md

The workload is the default recipe (fastmlp.train.TrainConfig()): 784-128-64-10
float32, batch 128, Nesterov momentum 0.9, lr 0.05 on the 20-epoch cosine
schedule (epoch 0's slice), weight decay 1e-3 on W, 60000 MNIST rows. An
epoch's time covers the row permutation and all train_batches calls, chunked as
fastmlp.train.run does; evaluation, init and compilation are outside it (see
bench/benchlib.py). Repeats start from the same initial model each time and
are interleaved across backends (round-robin), so a disturbance hits all alike.

Before anything is timed: every op of every backend is checked against the
NumPy reference at batch 32/128/512 (rtol 1e-4, atol 1e-5), and one untimed
epoch per backend must reproduce the reference's mean loss within rtol 1e-3
(this epoch is also the warm-up: compilation never lands in a timed epoch).

A PyTorch row (eager nn.Linear/ReLU/CrossEntropyLoss, torch.optim.SGD with
momentum 0.9, nesterov=True, the same lr schedule and weight decay on weights
only, same initial weights, float32, torch.set_num_threads(2), data as tensors
in memory, each batch gathered by index) is added when torch is importable:
`pip install torch==2.13.0` (optional; never a dependency of fastmlp).

Also measured: the machine's SGEMM peak and the dense floor it implies,
single-image and 10k-test-set inference, and for the numba backend the cold
JIT start (fresh NUMBA_CACHE_DIR) and the warm-cache start in subprocesses.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import benchlib  # noqa: E402
from fastmlp.evaluate import predict_proba  # noqa: E402


# ------------------------------------------------------------------ runners

class BackendRunner:
    """Epochs and inference through a fastmlp backend module."""

    def __init__(self, name, module):
        self.name, self.module = name, module
        self.label = f"{name} (reference)" if name == benchlib.REFERENCE else name

    def warm_up(self, setup):
        benchlib.warm_up_epoch(self.module, setup)

    def epoch(self, setup):
        state = benchlib.fresh_state(setup)  # not timed
        return benchlib.run_epoch(self.module, setup, state)

    def inference_calls(self, model, X_test):
        x = X_test[0]
        single = lambda: model.predict_proba(x[None, :], self.module)  # noqa: E731
        full = lambda: predict_proba(model, X_test, self.module)  # noqa: E731
        return single, full


class TorchRunner:
    """The same MLP and recipe in PyTorch eager mode."""

    def __init__(self, threads):
        import torch
        self.torch = torch
        torch.set_num_threads(threads)
        self.threads = threads
        self.name = "torch"
        self.label = f"torch {torch.__version__} eager ({threads} threads)"
        self._tensors = {}

    def _net(self, model):
        torch, nn = self.torch, self.torch.nn
        layers = []
        for l, (W, b) in enumerate(zip(model.W, model.b)):
            lin = nn.Linear(*W.shape)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
                lin.bias.copy_(torch.from_numpy(b))
            layers.append(lin)
            if l < len(model.W) - 1:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    def _data(self, setup):
        key = id(setup)
        if key not in self._tensors:
            # Copies: the data set's arrays are read-only, torch wants writable memory.
            self._tensors[key] = (self.torch.from_numpy(setup.X.copy()),
                                  self.torch.from_numpy(setup.y.copy()))
        return self._tensors[key]

    def warm_up(self, setup):
        self._epoch(setup, steps=2)

    def epoch(self, setup):
        return self._epoch(setup)

    def _epoch(self, setup, steps=None):
        torch, config = self.torch, setup.config
        state = benchlib.fresh_state(setup)
        net = self._net(state.model)
        weights = [m.weight for m in net if isinstance(m, torch.nn.Linear)]
        biases = [m.bias for m in net if isinstance(m, torch.nn.Linear)]
        # Weight decay on W only, as fastmlp's optimizer_step does.
        opt = torch.optim.SGD([{"params": weights, "weight_decay": config.weight_decay},
                               {"params": biases, "weight_decay": 0.0}],
                              lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)
        loss_fn = torch.nn.CrossEntropyLoss()
        Xt, yt = self._data(setup)
        bs, n = config.batch_size, setup.n
        spe = setup.steps if steps is None else steps
        lrs = setup.lrs.tolist()
        loss_sum = torch.zeros((), dtype=torch.float64)
        correct = torch.zeros((), dtype=torch.int64)
        start = time.perf_counter()
        order = torch.from_numpy(benchlib.epoch_order(config.seed, 0, n))
        for j in range(spe):
            idx = order[j * bs:(j + 1) * bs]
            xb, yb = Xt[idx], yt[idx]
            for group in opt.param_groups:
                group["lr"] = lrs[j]
            logits = net(xb)
            loss = loss_fn(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                loss_sum += loss.detach() * len(idx)
                correct += (logits.argmax(dim=1) == yb).sum()
        seconds = time.perf_counter() - start
        rows = min(spe * bs, n)
        return benchlib.EpochResult(seconds, float(loss_sum) / rows, int(correct) / rows)

    def inference_calls(self, model, X_test):
        torch = self.torch
        net = self._net(model).eval()

        def probs(X):
            with torch.inference_mode():
                return torch.softmax(net(torch.from_numpy(np.ascontiguousarray(X))), dim=1).numpy()

        X_test = X_test.copy()  # writable: torch.from_numpy warns on read-only arrays
        x = X_test[0]
        return (lambda: probs(x[None, :])), (lambda: probs(X_test))


# ------------------------------------------------------------------ measurement helpers

def samples(fn, count, min_time):
    """``count`` samples of seconds per call, each the mean over as many calls as fill min_time."""
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


stats, log = benchlib.stats, benchlib.log


def fmt_load(x):
    return "n/a" if x is None else f"{x:.2f} CPUs"


def fmt_s(x):
    return f"{x:.3f}" if x >= 0.1 else f"{x:.4f}"


# ------------------------------------------------------------------ main

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help=f"CI mode: {benchlib.QUICK_ROWS} rows, 1 repeat, short inference/SGEMM timing")
    p.add_argument("--repeats", type=int, default=None, help="timed epochs per backend (default 7; quick 1)")
    p.add_argument("--rows", type=int, default=None, help="training rows (default 60000; quick 6000)")
    p.add_argument("--batch-sizes", default="128", help="comma-separated (default 128)")
    p.add_argument("--backends", default=None,
                   help=f"comma-separated (default: all registered: {','.join(benchlib.backend_names())})")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch row even if torch imports")
    p.add_argument("--torch-threads", type=int, default=2)
    p.add_argument("--no-startup", action="store_true", help="skip the numba cold/warm start subprocesses")
    p.add_argument("--wait-idle", type=float, default=None, metavar="SECONDS",
                   help="before each timed measurement, wait up to SECONDS for other processes to "
                        "leave the CPUs idle (default 120; quick 0)")
    p.add_argument("--max-load", type=float, default=0.25, metavar="CPUS",
                   help="a timed epoch during which other processes used more than CPUS cores "
                        "is discarded and re-run (default 0.25)")
    p.add_argument("--retries", type=int, default=None,
                   help="re-runs allowed per backend for contended epochs (default 2 x repeats; quick 0)")
    p.add_argument("--strict", action="store_true", help="a registered backend that fails to load is an error")
    p.add_argument("--json", metavar="PATH", help="write every measurement as JSON")
    p.add_argument("--markdown", metavar="PATH", help="also write the markdown report to PATH")
    args = p.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 7)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    args.rows = args.rows or (benchlib.QUICK_ROWS if args.quick else None)
    if args.wait_idle is None:
        args.wait_idle = 0.0 if args.quick else 120.0
    if args.retries is None:
        args.retries = 0 if args.quick else 2 * args.repeats
    args.batch_sizes = [int(s) for s in args.batch_sizes.split(",") if s.strip()]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    info = benchlib.machine_info()
    for line in benchlib.header_lines(info, benchlib.blas_info()):
        log(line)

    failures = []
    waits = []

    def idle():
        waited, load = benchlib.wait_for_idle(args.wait_idle, log=log)
        if waited > 1.5:
            waits.append(waited)

    report = {"meta": info, "args": {k: v for k, v in vars(args).items()}, "checks": {},
              "epochs": [], "inference": [], "startup": None, "skipped": {},
              "backend_sources": {}}

    # Backends (a half-written one is skipped with its reason).
    names = args.backends.split(",") if args.backends else benchlib.backend_names()
    if benchlib.REFERENCE not in names:
        names = [benchlib.REFERENCE] + names
    runners = []
    for name in names:
        module, reason = benchlib.load_backend(name)
        if module is None:
            log(f"skipping backend {name}: {reason}")
            report["skipped"][name] = reason
            if args.strict:
                failures.append(f"{name}: {reason}")
        else:
            runners.append(BackendRunner(name, module))
            report["backend_sources"][name] = benchlib.source_digest(module)
    if not args.no_torch:
        try:
            runners.append(TorchRunner(args.torch_threads))
        except ImportError as exc:
            log(f"no PyTorch row: {exc} (optional: pip install torch==2.13.0)")
            report["skipped"]["torch"] = str(exc)

    from fastmlp.data import load_dataset
    data = load_dataset()
    model = benchlib.trained_model(data)

    # 1. Correctness of every op before anything is timed.
    for runner in [r for r in runners if isinstance(r, BackendRunner) and r.name != benchlib.REFERENCE]:
        t0 = time.perf_counter()
        try:
            for batch in benchlib.OP_BATCH_SIZES:
                for case in benchlib.op_cases(benchlib.op_inputs(model, data, batch)):
                    benchlib.check_case(runner.module, case)
            report["checks"][f"{runner.name} ops"] = "ok"
            log(f"{runner.name}: every op matches the reference at batch "
                f"{'/'.join(map(str, benchlib.OP_BATCH_SIZES))} (rtol {benchlib.OP_RTOL:g}, "
                f"atol {benchlib.OP_ATOL:g}) [{time.perf_counter() - t0:.1f} s incl. compile]")
        except Exception as exc:  # AssertionError, or a half-written backend's TypeError/TypingError
            msg = f"{type(exc).__name__}: " + " ".join(str(exc).split())[:400]
            log(f"{runner.name}: op check FAILED, not timed: {msg}")
            report["checks"][f"{runner.name} ops"] = msg
            failures.append(f"{runner.name} ops: {msg}")
    failed = {n.split()[0] for n, v in report["checks"].items() if v != "ok"}
    runners = [r for r in runners if r.name not in failed]

    # 2. SGEMM peak of this machine (numpy's BLAS, its own threads).
    batch0 = args.batch_sizes[0] if 128 not in args.batch_sizes else 128
    n_rows = len(data.X_train[:args.rows])
    idle()
    meter = benchlib.ForeignLoad()
    sgemm = benchlib.sgemm_report(n_rows, batch0, quick=args.quick)
    sgemm["other_load"] = meter.load()
    report["sgemm"] = sgemm
    log(f"SGEMM peak {sgemm['peak_gflops']:.1f} GFLOP/s -> dense floor "
        f"{sgemm['dense_floor_seconds']:.3f} s per epoch of {n_rows} rows")

    # 3. Epochs: an untimed check epoch per runner, then interleaved timed repeats.
    for batch in args.batch_sizes:
        setup = benchlib.make_epoch_setup(data, args.rows, batch)
        timed = []
        ref_result = None
        for runner in runners:
            t0 = time.perf_counter()
            try:
                runner.warm_up(setup)
                check = runner.epoch(setup)
                if runner.name == benchlib.REFERENCE:
                    ref_result = check
                benchlib.check_epoch_loss(runner.name, check, ref_result)
                report["checks"][f"{runner.name} epoch batch {batch}"] = "ok"
                timed.append(runner)
                log(f"{runner.name}: check epoch loss {check.loss:.6f} (reference "
                    f"{ref_result.loss:.6f}) [{time.perf_counter() - t0:.1f} s]")
            except Exception as exc:
                if runner.name == benchlib.REFERENCE:
                    raise
                msg = f"{runner.name}: epoch check FAILED, not timed: {type(exc).__name__}: {exc}"
                log(msg)
                report["checks"][f"{runner.name} epoch batch {batch}"] = msg
                failures.append(msg)
        results = {r.name: [] for r in timed}
        discarded = {r.name: [] for r in timed}
        for rep in range(args.repeats):
            for runner in timed:
                while True:
                    idle()
                    meter = benchlib.ForeignLoad()
                    res = runner.epoch(setup)
                    res.other_load = meter.load()
                    contended = res.other_load is not None and res.other_load > args.max_load
                    retry = contended and len(discarded[runner.name]) < args.retries
                    log(f"  batch {batch} repeat {rep + 1}/{args.repeats} {runner.name}: "
                        f"{res.seconds:.3f} s, loss {res.loss:.6f}, other load {fmt_load(res.other_load)}"
                        + (" -> discarded, re-run" if retry else ""))
                    if not retry:
                        break
                    discarded[runner.name].append(res)
                results[runner.name].append(res)
        for runner in timed:
            for res in results[runner.name]:
                try:
                    benchlib.check_epoch_loss(runner.name, res, ref_result)
                except AssertionError as exc:
                    failures.append(str(exc))
            secs = [r.seconds for r in results[runner.name]]
            report["epochs"].append({
                "backend": runner.name, "label": runner.label, "batch": batch, "rows": setup.n,
                "steps": setup.steps, "seconds": stats(secs),
                "samples_per_s": setup.n / statistics.median(secs),
                "gflops_dense": setup.flops / statistics.median(secs) / 1e9,
                "other_load": [r.other_load for r in results[runner.name]],
                "discarded_contended": [{"seconds": r.seconds, "other_load": r.other_load}
                                        for r in discarded[runner.name]],
                "loss": results[runner.name][0].loss, "train_accuracy": results[runner.name][0].accuracy,
                "reference_loss": ref_result.loss,
            })

    # 4. Inference: single image, 10k test set.
    X_test = np.ascontiguousarray(data.X_test, dtype=model.dtype)
    reference_probs = predict_proba(model, X_test, benchlib.get_backend(benchlib.REFERENCE))
    for runner in runners:
        single, full = runner.inference_calls(model, X_test)
        idle()
        meter = benchlib.ForeignLoad()
        probs = full()
        ok = bool(np.allclose(probs, reference_probs, rtol=benchlib.OP_RTOL, atol=benchlib.OP_ATOL))
        if not ok and runner.name != "torch":
            failures.append(f"{runner.name}: 10k inference differs from the reference")
        s1 = samples(single, 3 if args.quick else 7, 0.05 if args.quick else 0.3)
        s2 = samples(full, 2 if args.quick else 7, 0.0)
        report["inference"].append({"backend": runner.name, "label": runner.label,
                                    "single_image_seconds": stats(s1), "test_10k_seconds": stats(s2),
                                    "rows": len(X_test), "matches_reference": ok,
                                    "other_load": meter.load()})
        log(f"{runner.name}: single image {statistics.median(s1) * 1e6:.1f} us, "
            f"10k {statistics.median(s2) * 1e3:.1f} ms")

    # 5. Process start of compiled backends: cold JIT and warm cache.
    if not args.no_startup:
        report["startup"] = startup(runners, quick=args.quick, idle=idle)

    report["blas_after"] = benchlib.blas_info()  # now with every library loaded
    report["numba_threads"] = numba_threads()
    report["failures"] = failures
    report["idle_waits_seconds"] = waits
    report["total_seconds"] = time.perf_counter() - t_start

    benchlib.write_report(markdown(report, info), report, args.markdown, args.json)
    log(f"total {report['total_seconds']:.1f} s")
    if failures:
        log("FAILED: " + "; ".join(failures))
        return 1
    return 0


def load_cell(loads):
    loads = [x for x in loads if x is not None]
    if not loads:
        return "n/a"
    return f"{statistics.median(loads):.2f} / {max(loads):.2f}"


def numba_threads():
    if "numba" not in sys.modules:
        return None
    import numba
    out = {"NUMBA_NUM_THREADS": numba.config.NUMBA_NUM_THREADS}
    try:
        out["threading_layer"] = numba.threading_layer()
    except Exception:
        out["threading_layer"] = None  # no parallel region ran
    return out


def startup(runners, quick, idle=lambda: None):
    """numpy (baseline), then each non-reference backend: cold (fresh
    NUMBA_CACHE_DIR) and warm (the same directory again) process start."""
    out = {"baseline": None, "backends": {}}
    names = [r.name for r in runners if isinstance(r, BackendRunner) and r.name != benchlib.REFERENCE]
    if not names:
        return out
    idle()
    out["baseline"] = benchlib.process_start(benchlib.REFERENCE, None)
    log(f"process start numpy: {out['baseline']['wall']:.2f} s")
    for name in names:
        cold, warm, cache_counts = [], [], []
        for _ in range(1 if quick else 2):
            with tempfile.TemporaryDirectory(prefix="fastmlp-numba-cache-") as cache:
                idle()
                meter = benchlib.ForeignLoad()
                cold.append(benchlib.process_start(name, cache))
                cache_counts.append(benchlib.cache_files(cache))
                for _ in range(1 if quick else 3):
                    idle()
                    warm.append(benchlib.process_start(name, cache))
                cold[-1]["other_load_during_cold_and_warm"] = meter.load()
        out["backends"][name] = {"cold": cold, "warm": warm, "cache_files": cache_counts}
        log(f"process start {name}: cold {[round(c['wall'], 2) for c in cold]} s, "
            f"warm {[round(w['wall'], 2) for w in warm]} s, cache files {cache_counts}")
    return out


# ------------------------------------------------------------------ report

def markdown(report, info):
    v = info["versions"]
    lines = ["# fastmlp backend comparison", ""]
    lines += [f"- {line}" for line in benchlib.header_lines(info, report["blas_after"])]
    if report.get("numba_threads"):
        lines.append(f"- numba threads: {report['numba_threads']}")
    sg = report["sgemm"]
    epochs = report["epochs"]
    rows = epochs[0]["rows"] if epochs else sg["rows"]
    gflop = benchlib.epoch_flops(rows) / 1e9
    layer_rates = ", ".join(f"{g['gemm']}: {g['gflops']:.0f}" for g in sg["layer_shapes"])
    lines += [
        f"- workload: 784-128-64-10 float32, {rows} MNIST rows, default recipe (TrainConfig()): "
        "momentum 0.9 Nesterov, lr 0.05 cosine (epoch 0 of 20), weight decay 1e-3 on W",
        "- epoch time = row permutation + all train_batches calls (chunked as fastmlp.train.run); "
        "evaluation, init and compilation excluded; each repeat starts from the same initial model; "
        "repeats interleaved across backends",
        f"- dense-equivalent FLOPs per epoch: 2n(3·Σ i·o − 784·128) = 454400·n = {gflop:.3f} GFLOP "
        "(forward + dW for every layer, dX for all but the first)",
        f"- checks before timing: ops vs NumPy (rtol {benchlib.OP_RTOL:g}, atol {benchlib.OP_ATOL:g}) "
        f"at batch 32/128/512; epoch mean loss vs NumPy within rtol {benchlib.EPOCH_LOSS_RTOL:g}",
        "",
        f"SGEMM peak: **{sg['peak_gflops']:.1f} GFLOP/s** (np.matmul float32, best of "
        + ", ".join(f"{k}: {r:.1f}" for k, r in sg["square_gflops"].items())
        + f") → dense floor **{sg['dense_floor_seconds']:.3f} s/epoch** ({gflop:.2f} GFLOP / peak). "
        f"At the layer shapes of batch {sg['batch']} the same GEMMs take "
        f"≥ {sg['layer_shape_floor_seconds']:.3f} s/epoch "
        f"({layer_rates} GFLOP/s).",
        "",
        "| backend | batch | epoch s median | min | max | samples/s | GFLOP/s (dense eq.) "
        "| % of SGEMM peak | speed-up vs NumPy | epoch loss | other load (CPUs) median / max "
        "| contended re-runs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ref = {e["batch"]: e["seconds"]["median"] for e in epochs if e["backend"] == benchlib.REFERENCE}
    for e in epochs:
        s = e["seconds"]
        ratio = ref.get(e["batch"])
        ratio = f"{ratio / s['median']:.2f}×" if ratio else "n/a"
        lines.append(
            f"| {e['label']} | {e['batch']} | {fmt_s(s['median'])} | {fmt_s(s['min'])} | {fmt_s(s['max'])} "
            f"| {e['samples_per_s']:,.0f} | {e['gflops_dense']:.2f} "
            f"| {100 * e['gflops_dense'] / sg['peak_gflops']:.1f}% | {ratio} | {e['loss']:.5f} "
            f"| {load_cell(e['other_load'])} | {len(e['discarded_contended'])} |")
    for label, secs in ((f"dense floor at SGEMM peak", sg["dense_floor_seconds"]),
                        (f"floor at layer-shape SGEMM rates", sg["layer_shape_floor_seconds"])):
        ratio = ref.get(sg["batch"])
        ratio = f"{ratio / secs:.2f}×" if ratio else "n/a"
        lines.append(f"| *{label}* | {sg['batch']} | {fmt_s(secs)} | | | {rows / secs:,.0f} "
                     f"| {gflop / secs:.2f} | {100 * gflop / secs / sg['peak_gflops']:.1f}% | {ratio} | "
                     f"| {load_cell([sg.get('other_load')])} | |")
    n_rep = {e["seconds"]["n"] for e in epochs}
    lines.append("")
    lines.append(f"Epoch repeats per backend: {', '.join(map(str, sorted(n_rep))) or 0}. "
                 "Other load: CPUs used by other processes during each timed epoch "
                 "(/proc/stat minus this process; 0 = the machine was ours alone)"
                 + (f"; an epoch with other load > {report['args']['max_load']:g} CPUs was discarded "
                    f"and re-run, at most {report['args']['retries']} times per backend (contended "
                    "re-runs: how many; their times are in the JSON)" if report["args"]["retries"]
                    else "; contended epochs were not re-run (--retries 0)")
                 + (f"; waited {sum(report['idle_waits_seconds']):.0f} s in total for other processes "
                    "to go idle before measurements" if report.get("idle_waits_seconds") else "") + ".")

    if report["inference"]:
        lines += ["", "| backend | single image µs median (min–max) | 10k test set ms median (min–max) "
                  "| images/s (10k) | matches NumPy |", "|---|---:|---:|---:|---|"]
        for r in report["inference"]:
            a, b = r["single_image_seconds"], r["test_10k_seconds"]
            lines.append(f"| {r['label']} | {a['median'] * 1e6:.1f} ({a['min'] * 1e6:.1f}–{a['max'] * 1e6:.1f}) "
                         f"| {b['median'] * 1e3:.2f} ({b['min'] * 1e3:.2f}–{b['max'] * 1e3:.2f}) "
                         f"| {r['rows'] / b['median']:,.0f} | {'yes' if r['matches_reference'] else 'NO'} |")

    st = report.get("startup")
    if st and st["backends"]:
        lines += ["", "Process start (subprocess; import, then first train_batches of 4 batches and first "
                  "forward; wall includes interpreter start):", "",
                  "| process | import s | first train_batches s | first forward s | import + first calls s "
                  "| process wall s |", "|---|---:|---:|---:|---:|---:|"]

        def row(label, runs):
            def med(key):
                return statistics.median(r[key] for r in runs)
            n = f" (median of {len(runs)})" if len(runs) > 1 else ""
            return (f"| {label}{n} | {med('import'):.3f} | {med('first_train_batches'):.3f} "
                    f"| {med('first_forward'):.3f} | {med('import_plus_first_calls'):.3f} | {med('wall'):.3f} |")

        lines.append(row("numpy (baseline, no JIT)", [st["baseline"]]))
        for name, r in st["backends"].items():
            lines.append(row(f"{name} cold JIT (fresh NUMBA_CACHE_DIR)", r["cold"]))
            lines.append(row(f"{name} warm cache", r["warm"]))
            if not any(r["cache_files"]):
                lines.append(f"| *{name} wrote no cache files: warm = cold (no cache=True)* | | | | | |")
    if report["skipped"]:
        lines += ["", "Skipped: " + "; ".join(f"{k}: {v}" for k, v in report["skipped"].items())]
    if report["failures"]:
        lines += ["", "**FAILED checks:** " + "; ".join(report["failures"])]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
