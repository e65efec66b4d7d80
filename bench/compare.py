"""Compare the backends on one training epoch and print a markdown table.

    python bench/compare.py                  # 60000 rows, 7 repeats
    python bench/compare.py --quick          # CI: 6000 rows, 1 repeat (< 60 s)
    python bench/compare.py --json out.json --markdown out.md
    python bench/compare.py --hidden "128,64;512,256" --batch-sizes 128,512 \
        --data /usr/share/datasets/fashion-mnist --rows 30000   # a sweep

The workload is the default recipe (fastmlp.train.TrainConfig()): 784-128-64-10
float32, batch 128, Nesterov momentum 0.9, lr 0.05 on the 20-epoch cosine
schedule (epoch 0's slice), weight decay 1e-3 on W, 60000 MNIST rows; --hidden,
--batch-sizes, --rows and --data change the network(s), batch size(s), rows
and data set, and every network x batch size gets its rows in the table. An
epoch's time covers the row permutation and all train_batches calls, chunked as
fastmlp.train.run does; evaluation, init and compilation are outside it (see
bench/benchlib.py). Repeats start from the same initial model each time and
are interleaved across runners (round-robin), so a disturbance hits all alike.

Runners: the textbook yardstick (bench/textbook.py: the plain-NumPy MLP a
typical user writes, same recipe, same initial weights, epoch order and lr
slice, one call per epoch), every registered backend, and a PyTorch row
(eager nn.Linear/ReLU/CrossEntropyLoss, torch.optim.SGD with momentum 0.9,
nesterov=True, the same lr schedule and weight decay on weights only, same
initial weights, float32, torch.set_num_threads(2), data as tensors in memory,
each batch gathered by index) when torch is importable: `pip install
torch==2.13.0` (optional; never a dependency of fastmlp). Speed-ups are given
against the textbook and the NumPy backend (their median seconds / the row's).

Before anything is timed: every op of every backend is checked against the
NumPy reference at batch 32/128/512 for every network (relative error within
1e-5, fastmlp/tolerances.py),
and one untimed epoch per runner (textbook and torch included) must reproduce
the reference's mean loss within rtol 1e-3 (this epoch is also the warm-up:
compilation never lands in a timed epoch). A backend that fails to load or
fails a check is reported and not timed.

Also measured: the machine's SGEMM peak and, per network x batch size, the
dense floor it implies and the floor at the layer shapes' SGEMM rates;
single-image and 10k-test-set inference per network (with the ratio to the
NumPy backend); and for the numba backend, in subprocesses, the cold start
(a fresh NUMBA_CACHE_DIR: the shipped compiled kernels are seeded into it),
the warm-cache start, and the start that compiles everything (seeding off).
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
from fastmlp.errors import FastmlpError  # noqa: E402
from fastmlp.evaluate import predict_proba  # noqa: E402
from fastmlp.model import parse_hidden  # noqa: E402


# Untimed batches each runner trains between the idle wait and its timed
# epoch, RAMP_BATCHES at a time until RAMP_SECONDS have passed. The wait
# sleeps at least a second, and the cores come back from it slow: measured
# 2026-12-03 on the Xeon guest, the numba epoch took 0.225 s (median of 5)
# after a 1 s sleep against 0.204 s back to back, and 0.204 s again after
# 16 untimed batches; on the Zen 5 guest (2026-12-06) the first 10-20 ms
# after the sleep ran at 2-3x the batch time, 16 batches being 2.5 ms of
# them (numba epoch 0.0875 s, median of 4, after 16 batches; 0.0809 after
# 256; the textbook's 0.210 and 0.211). A user's epochs run back to back.
RAMP_BATCHES = 16
RAMP_SECONDS = 0.05


# ------------------------------------------------------------------ runners

class EpochRunner:
    """Epochs through an object with ``train_batches`` (benchlib.run_epoch)."""

    def __init__(self, name, module, label):
        self.name, self.module, self.label = name, module, label

    def warm_up(self, setup, batches=2):
        benchlib.warm_up_epoch(self.module, setup, batches)

    def epoch(self, setup):
        state = benchlib.fresh_state(setup)  # not timed
        return benchlib.run_epoch(self.module, setup, state)


class TextbookRunner(EpochRunner):
    """The yardstick: bench/textbook.py, a user's plain-NumPy MLP (training only)."""

    def __init__(self):
        super().__init__(benchlib.TEXTBOOK_NAME, benchlib.TEXTBOOK, "textbook NumPy (yardstick)")


class BackendRunner(EpochRunner):
    """Epochs and inference through a fastmlp backend module."""

    def __init__(self, name, module):
        super().__init__(name, module, f"{name} (reference)" if name == benchlib.REFERENCE else name)

    def inference_calls(self, model, X_test):
        x, few = X_test[0], X_test[:MID_ROWS]
        single = lambda: model.predict_proba(x[None, :], self.module)  # noqa: E731
        mid = lambda: predict_proba(model, few, self.module)  # noqa: E731
        full = lambda: predict_proba(model, X_test, self.module)  # noqa: E731
        return single, mid, full


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

    def warm_up(self, setup, batches=2):
        self._epoch(setup, steps=batches)

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
        x, few = X_test[0], X_test[:MID_ROWS]
        return (lambda: probs(x[None, :])), (lambda: probs(few)), (lambda: probs(X_test))


# ------------------------------------------------------------------ measurement helpers

samples, stats, log = benchlib.samples, benchlib.stats, benchlib.log
# The inference table's middle size: a predict call of a thousand images
# (below 2048 rows the Numba backend ran one thread until 2026-12-03).
MID_ROWS = 1000


def fmt_load(x):
    return "n/a" if x is None else f"{x:.2f} CPUs"


def fmt_s(x):
    return f"{x:.3f}" if x >= 0.1 else f"{x:.4f}"


# ------------------------------------------------------------------ arguments

def parse_networks(values) -> list[tuple]:
    """--hidden values ("128,64", or several networks "128,64;512,256") -> hidden tuples, in order."""
    networks = []
    for value in values or ["128,64"]:
        for part in value.split(";"):
            if part.strip() and parse_hidden(part) not in networks:
                networks.append(parse_hidden(part))
    return networks


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help=f"CI mode: {benchlib.QUICK_ROWS} rows, 1 repeat, short inference/SGEMM timing")
    p.add_argument("--repeats", type=int, default=None, help="timed epochs per backend (default 7; quick 1)")
    p.add_argument("--rows", type=int, default=None, help="training rows (default all, 60000; quick 6000)")
    p.add_argument("--batch-sizes", default="128", help="comma-separated (default 128)")
    p.add_argument("--hidden", action="append", metavar="SIZES",
                   help="hidden layer sizes, e.g. 128,64 (the default); repeat the option or separate "
                        "networks with ';' (\"128,64;512,256\") to sweep: every network x batch size is timed")
    p.add_argument("--data", metavar="DIR", default=None,
                   help="IDX data directory (fastmlp.data.load_dataset: train-images-idx3-ubyte[.gz] ...), "
                        "e.g. /usr/share/datasets/fashion-mnist; default the shipped MNIST")
    p.add_argument("--backends", default=None,
                   help=f"comma-separated (default: all registered: {','.join(benchlib.backend_names())})")
    p.add_argument("--no-textbook", action="store_true", help="skip the textbook NumPy yardstick row")
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
    try:
        args.batch_sizes = [int(s) for s in args.batch_sizes.split(",") if s.strip()]
        args.hidden = parse_networks(args.hidden)
    except (ValueError, FastmlpError) as exc:
        p.error(str(exc))
    if not args.batch_sizes or min(args.batch_sizes) < 1:
        p.error("--batch-sizes: positive integers, e.g. 128,512")
    return args


# ------------------------------------------------------------------ phases

class Run:
    """One invocation: its arguments, the report being built, failures, idle waits."""

    def __init__(self, args):
        self.args = args
        self.t_start = time.perf_counter()
        self.info = benchlib.machine_info()
        self.failures, self.waits = [], []
        self.gemm_rates = {}  # SGEMM GFLOP/s per GEMM shape, measured once for all setups
        self.report = {"meta": self.info, "args": dict(vars(args)), "data": None, "checks": {},
                       "sgemm": None, "floors": [], "epochs": [], "inference": [], "startup": None,
                       "skipped": {}, "backend_sources": {}}

    def idle(self):
        """Wait (up to --wait-idle s) for the other processes to leave the CPUs."""
        waited, _ = benchlib.wait_for_idle(self.args.wait_idle, log=log)
        if waited > 1.5:
            self.waits.append(waited)

    def fail(self, key, msg):
        log(msg)
        self.report["checks"][key] = msg
        self.failures.append(msg)


def main(argv=None) -> int:
    args = parse_args(argv)
    run = Run(args)
    for line in benchlib.header_lines(run.info, benchlib.blas_info()):
        log(line)
    runners = load_runners(run)
    data = load_data(run)
    models = {hidden: benchlib.trained_model(data, hidden=hidden) for hidden in args.hidden}
    runners = check_ops(run, runners, models, data)
    measure_sgemm_peak(run)
    for hidden in args.hidden:
        for batch in args.batch_sizes:
            run_setup(run, runners, benchlib.make_epoch_setup(data, args.rows, batch, hidden))
    for model in models.values():
        measure_inference(run, runners, model, data)
    if not args.no_startup:
        run.report["startup"] = startup(runners, quick=args.quick, idle=run.idle)
    return finish(run)


def load_runners(run):
    """The textbook yardstick, the reference, the other backends (a half-written
    one is skipped with its reason; an error with --strict), PyTorch if it imports."""
    args, report = run.args, run.report
    names = args.backends.split(",") if args.backends else benchlib.backend_names()
    names = [benchlib.REFERENCE] + [n for n in names if n != benchlib.REFERENCE]
    runners = [] if args.no_textbook else [TextbookRunner()]
    for name in names:
        module, reason = benchlib.load_backend(name)
        if module is None and name == benchlib.REFERENCE:
            raise SystemExit(f"the reference backend does not load: {reason}")
        if module is None:
            log(f"skipping backend {name}: {reason}")
            report["skipped"][name] = reason
            if args.strict:
                run.failures.append(f"{name}: {reason}")
        else:
            runners.append(BackendRunner(name, module))
            report["backend_sources"][name] = benchlib.source_digest(module)
    if not args.no_torch:
        try:
            runners.append(TorchRunner(args.torch_threads))
        except ImportError as exc:
            log(f"no PyTorch row: {exc} (optional: pip install torch==2.13.0)")
            report["skipped"]["torch"] = str(exc)
    return runners


def load_data(run):
    """The data set (--data or the shipped MNIST) and its sparsity over the rows trained on."""
    from fastmlp.data import load_dataset
    try:
        data = load_dataset(run.args.data)
    except FastmlpError as exc:
        raise SystemExit(f"--data: {exc}") from None
    X = data.X_train[:run.args.rows]
    run.report["data"] = {"source": str(data.source), "checksum": data.checksum, "rows": len(X),
                          "test_rows": len(data.X_test), "nonzero_fraction": benchlib.nonzero_fraction(X)}
    log(f"data: {data.source}, {len(X)} training rows, "
        f"{100 * run.report['data']['nonzero_fraction']:.1f}% of their pixels nonzero")
    return data


def check_ops(run, runners, models, data):
    """Every op of every backend against the reference, for every network at
    batch 32/128/512, before anything is timed. Returns the runners that passed."""
    checked = [r for r in runners if isinstance(r, BackendRunner) and r.name != benchlib.REFERENCE]
    if not checked:
        return runners
    cases = [case for model in models.values() for batch in benchlib.OP_BATCH_SIZES
             for case in benchlib.op_cases(benchlib.op_inputs(model, data, batch))]
    failed = set()
    for runner in checked:
        t0 = time.perf_counter()
        try:
            for case in cases:
                benchlib.check_case(runner.module, case)
            run.report["checks"][f"{runner.name} ops"] = "ok"
            log(f"{runner.name}: every op matches the reference at batch "
                f"{'/'.join(map(str, benchlib.OP_BATCH_SIZES))} for "
                f"{', '.join(benchlib.network_name(m.sizes) for m in models.values())} "
                f"(relative error <= {benchlib.BACKEND_VS_REFERENCE['float32']:g}) "
                f"[{time.perf_counter() - t0:.1f} s incl. compile]")
        except Exception as exc:  # AssertionError, or a half-written backend's TypeError/TypingError
            msg = f"{type(exc).__name__}: " + " ".join(str(exc).split())[:400]
            run.fail(f"{runner.name} ops", f"{runner.name} ops: op check FAILED, not timed: {msg}")
            failed.add(runner.name)
    return [r for r in runners if r.name not in failed]


def measure_sgemm_peak(run):
    """The machine's SGEMM peak (numpy's BLAS, its own threads)."""
    run.idle()
    meter = benchlib.ForeignLoad()
    sgemm = benchlib.sgemm_peak(quick=run.args.quick)
    sgemm["other_load"] = meter.load()
    run.report["sgemm"] = sgemm
    log(f"SGEMM peak {sgemm['peak_gflops']:.1f} GFLOP/s")


def run_setup(run, runners, setup):
    """One network x batch size: its floors, an untimed check epoch per runner
    (reference first), then interleaved timed repeats of those that passed."""
    tag = f"{benchlib.network_name(setup.sizes)} batch {setup.config.batch_size}"
    run.idle()
    meter = benchlib.ForeignLoad()
    floors = benchlib.gemm_floors(setup.n, setup.config.batch_size, setup.sizes,
                                  run.report["sgemm"]["peak_gflops"], run.args.quick, run.gemm_rates)
    floors["other_load"] = meter.load()
    run.report["floors"].append(floors)
    log(f"{tag}: {setup.flops / 1e9:.3f} GFLOP/epoch (dense eq.), dense floor "
        f"{floors['dense_floor_seconds']:.3f} s, layer-shape floor {floors['layer_shape_floor_seconds']:.3f} s")
    ref_result, timed = check_epochs(run, runners, setup, tag)
    results, discarded = timed_repeats(run, timed, setup, tag)
    for runner in timed:
        record_epochs(run, runner, setup, results[runner.name], discarded[runner.name], ref_result)


def check_epochs(run, runners, setup, tag):
    """Warm-up, then one untimed epoch per runner whose mean loss must be the
    reference's within EPOCH_LOSS_RTOL. Returns (reference result, runners to time)."""
    ref_result, timed = None, []
    for runner in sorted(runners, key=lambda r: r.name != benchlib.REFERENCE):
        key = f"{runner.name} epoch {tag}"
        t0 = time.perf_counter()
        try:
            runner.warm_up(setup)
            check = runner.epoch(setup)
            if runner.name == benchlib.REFERENCE:
                ref_result = check
            benchlib.check_epoch_loss(runner.name, check, ref_result)
            run.report["checks"][key] = "ok"
            timed.append(runner)
            log(f"{runner.name} {tag}: check epoch loss {check.loss:.6f} (reference "
                f"{ref_result.loss:.6f}) [{time.perf_counter() - t0:.1f} s]")
        except Exception as exc:
            if runner.name == benchlib.REFERENCE:
                raise
            run.fail(key, f"{runner.name} {tag}: epoch check FAILED, not timed: {type(exc).__name__}: {exc}")
    return ref_result, sorted(timed, key=runners.index)


def ramp(runner, setup):
    """Untimed batches, RAMP_BATCHES at a time, until RAMP_SECONDS have passed."""
    start = time.perf_counter()
    runner.warm_up(setup, RAMP_BATCHES)
    while time.perf_counter() - start < RAMP_SECONDS:
        runner.warm_up(setup, RAMP_BATCHES)


def timed_repeats(run, timed, setup, tag):
    """--repeats rounds, each timing every runner once (round-robin), after
    the idle wait and the ramp (``ramp``); an epoch with other load
    > --max-load is discarded and re-run (up to --retries)."""
    args = run.args
    results = {r.name: [] for r in timed}
    discarded = {r.name: [] for r in timed}
    for rep in range(args.repeats):
        for runner in timed:
            while True:
                run.idle()
                ramp(runner, setup)
                meter = benchlib.ForeignLoad()
                res = runner.epoch(setup)
                res.other_load = meter.load()
                contended = res.other_load is not None and res.other_load > args.max_load
                retry = contended and len(discarded[runner.name]) < args.retries
                log(f"  {tag} repeat {rep + 1}/{args.repeats} {runner.name}: "
                    f"{res.seconds:.3f} s, loss {res.loss:.6f}, other load {fmt_load(res.other_load)}"
                    + (" -> discarded, re-run" if retry else ""))
                if not retry:
                    break
                discarded[runner.name].append(res)
            results[runner.name].append(res)
    return results, discarded


def record_epochs(run, runner, setup, results, discarded, ref_result):
    """Every timed epoch must have trained like the reference; one report entry per runner."""
    for res in results:
        try:
            benchlib.check_epoch_loss(runner.name, res, ref_result)
        except AssertionError as exc:
            run.failures.append(str(exc))
    median = statistics.median(r.seconds for r in results)
    run.report["epochs"].append({
        "backend": runner.name, "label": runner.label, "network": benchlib.network_name(setup.sizes),
        "hidden": list(setup.config.hidden), "batch": setup.config.batch_size, "rows": setup.n,
        "steps": setup.steps, "epoch_flops": setup.flops, "seconds": stats([r.seconds for r in results]),
        "samples_per_s": setup.n / median, "gflops_dense": setup.flops / median / 1e9,
        "other_load": [r.other_load for r in results],
        "discarded_contended": [{"seconds": r.seconds, "other_load": r.other_load} for r in discarded],
        "loss": results[0].loss, "train_accuracy": results[0].accuracy, "reference_loss": ref_result.loss,
    })


def measure_inference(run, runners, model, data):
    """Single image and the 10k test set with ``model``, per runner that infers
    (the textbook row trains only); probabilities checked against the reference."""
    quick = run.args.quick
    X_test = np.ascontiguousarray(data.X_test, dtype=model.dtype)
    reference_probs = predict_proba(model, X_test, benchlib.get_backend(benchlib.REFERENCE))
    network = benchlib.network_name(model.sizes)
    for runner in [r for r in runners if hasattr(r, "inference_calls")]:
        single, mid, full = runner.inference_calls(model, X_test)
        run.idle()
        meter = benchlib.ForeignLoad()
        probs = full()
        ok = benchlib.relative_error(probs, reference_probs) <= benchlib.BACKEND_VS_REFERENCE[str(probs.dtype)]
        if not ok and runner.name != "torch":
            run.failures.append(f"{runner.name}: {network} 10k inference differs from the reference")
        s1 = samples(single, 3 if quick else 7, 0.05 if quick else 0.3)
        s_mid = samples(mid, 3 if quick else 7, 0.05 if quick else 0.3)
        s2 = samples(full, 2 if quick else 7, 0.0)
        run.report["inference"].append({
            "backend": runner.name, "label": runner.label, "network": network,
            "single_image_seconds": stats(s1), "mid_seconds": stats(s_mid),
            "mid_rows": min(MID_ROWS, len(X_test)), "test_10k_seconds": stats(s2), "rows": len(X_test),
            "matches_reference": ok, "other_load": meter.load()})
        log(f"{runner.name} {network}: single image {statistics.median(s1) * 1e6:.1f} us, "
            f"10k {statistics.median(s2) * 1e3:.1f} ms")


def finish(run) -> int:
    """Write the report; 1 if any check failed."""
    report = run.report
    report["blas_after"] = benchlib.blas_info()  # now with every library loaded
    report["numba_threads"] = numba_threads()
    report["failures"] = run.failures
    report["idle_waits_seconds"] = run.waits
    report["total_seconds"] = time.perf_counter() - run.t_start
    benchlib.write_report(markdown(report, run.info), report, run.args.markdown, run.args.json)
    log(f"total {report['total_seconds']:.1f} s")
    if run.failures:
        log("FAILED: " + "; ".join(run.failures))
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
    NUMBA_CACHE_DIR, which the shipped compiled kernels seed), warm (the same
    directory again), and compiling (a fresh directory, seeding off: a CPU or
    Numba no bundle fits, or edited kernels) process start."""
    out = {"baseline": None, "backends": {}}
    names = [r.name for r in runners if isinstance(r, BackendRunner) and r.name != benchlib.REFERENCE]
    if not names:
        return out
    idle()
    out["baseline"] = benchlib.process_start(benchlib.REFERENCE, None)
    log(f"process start numpy: {out['baseline']['wall']:.2f} s")
    for name in names:
        cold, warm, compiling, cache_counts = [], [], [], []
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
            with tempfile.TemporaryDirectory(prefix="fastmlp-numba-cache-") as cache:
                idle()
                compiling.append(benchlib.process_start(name, cache, bundle=False))
        out["backends"][name] = {"cold": cold, "warm": warm, "compiling": compiling,
                                 "cache_files": cache_counts}
        log(f"process start {name}: cold {[round(c['wall'], 2) for c in cold]} s, "
            f"warm {[round(w['wall'], 2) for w in warm]} s, "
            f"compiling {[round(c['wall'], 2) for c in compiling]} s, cache files {cache_counts}")
    return out


# ------------------------------------------------------------------ report

def markdown(report, info):
    lines = md_header(report, info)
    lines += md_epochs(report)
    lines += md_epoch_notes(report)
    lines += md_inference(report)
    lines += md_startup(report.get("startup"))
    if report["skipped"]:
        lines += ["", "Skipped: " + "; ".join(f"{k}: {v}" for k, v in report["skipped"].items())]
    if report["failures"]:
        lines += ["", "**FAILED checks:** " + "; ".join(report["failures"])]
    return "\n".join(lines)


def md_header(report, info):
    """Machine, workload, data, FLOPs per network, checks, SGEMM peak."""
    lines = ["# fastmlp backend comparison", ""]
    lines += [f"- {line}" for line in benchlib.header_lines(info, report["blas_after"])]
    if report.get("numba_threads"):
        lines.append(f"- numba threads: {report['numba_threads']}")
    data, sg = report["data"], report["sgemm"]
    networks = list(dict.fromkeys(f["network"] for f in report["floors"]))
    batches = list(dict.fromkeys(f["batch"] for f in report["floors"]))
    lines += [
        f"- workload: {', '.join(networks)} float32, batch {'/'.join(map(str, batches))}, default recipe "
        "(TrainConfig(hidden=..., batch_size=...)): momentum 0.9 Nesterov, lr 0.05 cosine (epoch 0 of 20), "
        "weight decay 1e-3 on W",
        f"- data: {data['source']}, {data['rows']} training rows, **{100 * data['nonzero_fraction']:.1f}% of "
        f"their pixels nonzero** (the compiled backend skips zeros); {data['test_rows']} test rows for inference",
        "- epoch time = row permutation + all train_batches calls (chunked as fastmlp.train.run); "
        "evaluation, init and compilation excluded; each repeat starts from the same initial model "
        "(TrainState.fresh); repeats interleaved across backends",
        "- textbook: bench/textbook.py, the MLP a typical user writes in plain NumPy (X @ W + b, "
        "np.maximum, softmax, A.T @ dZ; same recipe, same initial weights, epoch order and lr slice), "
        "one call per epoch",
        "- dense-equivalent FLOPs per epoch: 2n(3·Σ i·o − i₀·o₀) (forward + dW for every layer, dX for "
        "all but the first): " + "; ".join(
            f"{f['network']}: {f['epoch_flops'] / f['rows']:,.0f}·n = {f['epoch_flops'] / 1e9:.3f} GFLOP"
            for f in {f["network"]: f for f in report["floors"]}.values()),
        f"- checks before timing: ops vs NumPy (relative error <= {benchlib.BACKEND_VS_REFERENCE['float32']:g}) "
        f"at batch 32/128/512 for every network; epoch mean loss vs NumPy within rtol "
        f"{benchlib.EPOCH_LOSS_RTOL:g} (textbook and torch too)",
        "",
        f"SGEMM peak: **{sg['peak_gflops']:.1f} GFLOP/s** (np.matmul float32, best of "
        + ", ".join(f"{k}: {r:.1f}" for k, r in sg["square_gflops"].items())
        + "); dense floor = GFLOP per epoch / peak; layer-shape floor = the same GEMMs, each at the "
        "rate np.matmul reaches at its shape (rates below the table).",
    ]
    return lines


def setup_key(entry):
    return entry["network"], entry["batch"]


def median_seconds(entries, name):
    """{(network, batch): median epoch seconds} of one runner."""
    return {setup_key(e): e["seconds"]["median"] for e in entries if e["backend"] == name}


def ratio(base, secs):
    return f"{base / secs:.2f}×" if base and secs else "n/a"


EPOCH_COLUMNS = ("backend", "network", "batch", "GFLOP/epoch", "epoch s median", "min", "max", "samples/s",
                 "GFLOP/s (dense eq.)", "% of SGEMM peak", "vs textbook", "vs NumPy backend", "epoch loss",
                 "other load (CPUs) median / max", "contended re-runs")


def md_epochs(report):
    """One table: per network x batch, a row per runner, then its two floors.
    vs X = X's median seconds / this row's (> 1: faster than X)."""
    epochs, sg = report["epochs"], report["sgemm"]
    textbook = median_seconds(epochs, benchlib.TEXTBOOK_NAME)
    numpy_ref = median_seconds(epochs, benchlib.REFERENCE)
    peak = sg["peak_gflops"]
    lines = ["", "| " + " | ".join(EPOCH_COLUMNS) + " |",
             "|---|---|" + "---:|" * (len(EPOCH_COLUMNS) - 4) + "---:|---:|"]
    for floor in report["floors"]:
        key, gflop = setup_key(floor), floor["epoch_flops"] / 1e9
        lead = f"{floor['network']} | {floor['batch']} | {gflop:.2f}"
        for e in (e for e in epochs if setup_key(e) == key):
            s = e["seconds"]
            lines.append(
                f"| {e['label']} | {lead} | {fmt_s(s['median'])} | {fmt_s(s['min'])} | {fmt_s(s['max'])} "
                f"| {e['samples_per_s']:,.0f} | {e['gflops_dense']:.2f} | {100 * e['gflops_dense'] / peak:.1f}% "
                f"| {ratio(textbook.get(key), s['median'])} | {ratio(numpy_ref.get(key), s['median'])} "
                f"| {e['loss']:.5f} | {load_cell(e['other_load'])} | {len(e['discarded_contended'])} |")
        for label, secs in (("dense floor at SGEMM peak", floor["dense_floor_seconds"]),
                            ("floor at layer-shape SGEMM rates", floor["layer_shape_floor_seconds"])):
            lines.append(
                f"| *{label}* | {lead} | {fmt_s(secs)} | | | {floor['rows'] / secs:,.0f} | {gflop / secs:.2f} "
                f"| {100 * gflop / secs / peak:.1f}% | {ratio(textbook.get(key), secs)} "
                f"| {ratio(numpy_ref.get(key), secs)} | | {load_cell([floor.get('other_load')])} | |")
    return lines


def md_epoch_notes(report):
    """Each compiled backend against textbook, NumPy and PyTorch per setup; the
    layer-shape SGEMM rates; repeats and other load."""
    epochs, args = report["epochs"], report["args"]
    textbook = median_seconds(epochs, benchlib.TEXTBOOK_NAME)
    numpy_ref = median_seconds(epochs, benchlib.REFERENCE)
    torch_s = median_seconds(epochs, "torch")
    others = [e for e in epochs if e["backend"] not in (benchlib.TEXTBOOK_NAME, benchlib.REFERENCE, "torch")]
    lines = ["", "Speed-ups (the other's median epoch seconds / this one's; > 1: faster):"] if others else []
    for e in others:
        key, secs = setup_key(e), e["seconds"]["median"]
        vs_torch = (f"**{ratio(torch_s[key], secs)}**" if key in torch_s
                    else "n/a (no PyTorch row: torch not importable, or skipped)")
        lines.append(f"- {e['network']} batch {e['batch']}: {e['backend']} vs PyTorch eager {vs_torch}, "
                     f"vs textbook {ratio(textbook.get(key), secs)}, "
                     f"vs NumPy backend {ratio(numpy_ref.get(key), secs)}")
    lines.append("")
    for f in report["floors"]:
        lines.append(f"- layer-shape SGEMM rates, {f['network']} batch {f['batch']} (GFLOP/s): "
                     + ", ".join(f"{g['gemm']}: {g['gflops']:.0f}" for g in f["layer_shapes"]))
    n_rep = {e["seconds"]["n"] for e in epochs}
    lines.append("")
    lines.append(f"Epoch repeats per runner: {', '.join(map(str, sorted(n_rep))) or 0}. "
                 "Other load: CPUs used by other processes during each timed epoch "
                 "(/proc/stat minus this process; 0 = the machine was ours alone)"
                 + (f"; an epoch with other load > {args['max_load']:g} CPUs was discarded "
                    f"and re-run, at most {args['retries']} times per runner (contended "
                    "re-runs: how many; their times are in the JSON)" if args["retries"]
                    else "; contended epochs were not re-run (--retries 0)")
                 + (f"; waited {sum(report['idle_waits_seconds']):.0f} s in total for other processes "
                    "to go idle before measurements" if report.get("idle_waits_seconds") else "") + ".")
    return lines


def md_inference(report):
    rows = report["inference"]
    if not rows:
        return []
    numpy_10k = {r["network"]: r["test_10k_seconds"]["median"] for r in rows
                 if r["backend"] == benchlib.REFERENCE}
    numpy_mid = {r["network"]: r["mid_seconds"]["median"] for r in rows
                 if r["backend"] == benchlib.REFERENCE}
    mid_rows = rows[0]["mid_rows"]
    lines = ["", f"| backend | network | single image µs median (min–max) | {mid_rows:,} images ms "
             f"median (min–max) | {mid_rows:,} vs NumPy backend | 10k test set ms median (min–max) "
             "| images/s (10k) | 10k vs NumPy backend | matches NumPy |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        a, m, b = r["single_image_seconds"], r["mid_seconds"], r["test_10k_seconds"]
        lines.append(f"| {r['label']} | {r['network']} "
                     f"| {a['median'] * 1e6:.1f} ({a['min'] * 1e6:.1f}–{a['max'] * 1e6:.1f}) "
                     f"| {m['median'] * 1e3:.2f} ({m['min'] * 1e3:.2f}–{m['max'] * 1e3:.2f}) "
                     f"| {ratio(numpy_mid.get(r['network']), m['median'])} "
                     f"| {b['median'] * 1e3:.2f} ({b['min'] * 1e3:.2f}–{b['max'] * 1e3:.2f}) "
                     f"| {r['rows'] / b['median']:,.0f} | {ratio(numpy_10k.get(r['network']), b['median'])} "
                     f"| {'yes' if r['matches_reference'] else 'NO'} |")
    return lines


def md_startup(st):
    if not st or not st["backends"]:
        return []
    lines = ["", "Process start (subprocess; import, then first train_batches of 4 batches and first "
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
        lines.append(row(f"{name} cold: fresh NUMBA_CACHE_DIR, the shipped kernels seeded", r["cold"]))
        lines.append(row(f"{name} warm cache", r["warm"]))
        if r.get("compiling"):
            lines.append(row(f"{name} compiling: fresh NUMBA_CACHE_DIR, FASTMLP_NUMBA_BUNDLE=0",
                             r["compiling"]))
        if not any(r["cache_files"]):
            lines.append(f"| *{name} wrote no cache files: warm = cold (no cache=True)* | | | | | |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
