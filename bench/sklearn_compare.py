"""fastmlp.MLPClassifier next to scikit-learn's MLPClassifier, in one run.

    python bench/sklearn_compare.py                # the README table
    python bench/sklearn_compare.py --quick        # CI: MNIST cut to 3000 rows, 1 repeat
    python bench/sklearn_compare.py --json out.json --markdown out.md

Data sets: MNIST (the shipped 60000/10000 split, pixel / 255, as the engine
trains it: no scaler), and three that scikit-learn ships offline, each split
75/25 (stratified, random_state 0) and standardized in a Pipeline
(StandardScaler, then the classifier): load_digits (64 features, 10
classes), load_breast_cancer (30, 2), load_wine (13, 3).

Classifiers, all with hidden layers (128, 64), the same epochs (20) and batch
size (128), otherwise their own defaults:
    fastmlp numpy / numba   fastmlp.MLPClassifier(backend=...): Nesterov momentum
                            lr 0.05 cosine, weight decay 1e-3, float32
    sklearn                 sklearn.neural_network.MLPClassifier(hidden_layer_sizes=
                            (128, 64), max_iter=epochs, batch_size=128, random_state=0):
                            Adam lr 1e-3, alpha 1e-4, float64; its ConvergenceWarning
                            (it would like more epochs) is silenced

Accuracy is on the test split (every repeat gives the same: all three are
seeded). Fit time is the wall time of ``fit`` (for the small sets, of the
Pipeline's fit), median (min-max) over the repeats, which are interleaved
across classifiers so that a disturbance hits all alike; the Numba kernels
are compiled before anything is timed. Before each fit the script waits (up
to --max-wait s) for other processes to go quiet; "load" is the most CPUs
other processes used during any timed fit of that row (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import benchlib  # noqa: E402

HIDDEN = (128, 64)
QUICK_ROWS = 3000


def classifiers(epochs, batch_size):
    """name -> a function making a fresh, unfitted classifier."""
    from sklearn.neural_network import MLPClassifier as SklearnMLP

    import fastmlp

    return {
        "fastmlp numpy": lambda: fastmlp.MLPClassifier(HIDDEN, epochs=epochs,
                                                       batch_size=batch_size, backend="numpy"),
        "fastmlp numba": lambda: fastmlp.MLPClassifier(HIDDEN, epochs=epochs,
                                                       batch_size=batch_size, backend="numba"),
        "sklearn": lambda: SklearnMLP(hidden_layer_sizes=HIDDEN, max_iter=epochs,
                                      batch_size=batch_size, random_state=0),
    }


def datasets(quick):
    """name -> (X_train, X_test, y_train, y_test, standardize)."""
    from sklearn.datasets import load_breast_cancer, load_digits, load_wine
    from sklearn.model_selection import train_test_split

    import fastmlp

    mnist = fastmlp.load_dataset()
    rows = QUICK_ROWS if quick else len(mnist.X_train)
    sets = {"MNIST": (mnist.X_train[:rows], mnist.X_test, mnist.y_train[:rows], mnist.y_test, False)}
    for name, loader in (("digits", load_digits), ("breast_cancer", load_breast_cancer),
                         ("wine", load_wine)):
        X, y = loader(return_X_y=True)
        split = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
        sets[name] = (*split, True)
    return sets


def timed_fit(make, data):
    """(test accuracy, fit seconds, other processes' load during the fit)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X_train, X_test, y_train, y_test, standardize = data
    model = make_pipeline(StandardScaler(), make()) if standardize else make()
    meter = benchlib.ForeignLoad()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        model.fit(X_train, y_train)
        seconds = time.perf_counter() - start
    load = meter.load()
    return float(model.score(X_test, y_test)), seconds, load


def measure(sets, makers, repeats, max_wait):
    """{(data set, classifier): {"accuracy", "seconds": stats, "load"}}, the
    repeats interleaved across classifiers; before each fit, up to
    ``max_wait`` s for other processes to go quiet."""
    results = {}
    for data_name, data in sets.items():
        for r in range(repeats):
            for name, make in makers.items():
                benchlib.wait_for_idle(max_wait, log=benchlib.log)
                benchlib.log(f"{data_name}: {name}, repeat {r + 1}/{repeats}")
                accuracy, seconds, load = timed_fit(make, data)
                entry = results.setdefault((data_name, name), {"accuracy": accuracy, "times": [],
                                                               "load": 0.0})
                if accuracy != entry["accuracy"]:
                    raise SystemExit(f"{data_name} {name}: accuracy changed between repeats "
                                     f"({entry['accuracy']} then {accuracy}): not deterministic")
                entry["times"].append(seconds)
                entry["load"] = max(entry["load"], load or 0.0)
    for entry in results.values():
        entry["seconds"] = benchlib.stats(entry.pop("times"))
    return results


def markdown(sets, makers, results, args) -> str:
    names = list(makers)
    lines = [f"{HIDDEN[0]}-{HIDDEN[1]} hidden, {args.epochs} epochs, batch {args.batch_size}; "
             f"median (min-max) of {args.repeats} fits; load: the most CPUs other processes "
             "used during a fit", "",
             "| data (train/test rows, features) | " + " | ".join(
                 f"{n} accuracy | {n} fit s" for n in names) + " | load |",
             "|---|" + "---:|---:|" * len(names) + "---:|"]
    for data_name, (X_train, X_test, *_rest) in sets.items():
        cells = []
        for name in names:
            entry = results[(data_name, name)]
            s = entry["seconds"]
            cells += [f"{entry['accuracy'] * 100:.2f}%",
                      f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})"]
        load = max(results[(data_name, n)]["load"] for n in names)
        lines.append(f"| {data_name} ({len(X_train)}/{len(X_test)}, {X_train.shape[1]}) | "
                     + " | ".join(cells) + f" | {load:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"MNIST cut to {QUICK_ROWS} rows, 1 repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--max-wait", type=float, default=30,
                        help="seconds to wait for an idle machine before each fit (default 30)")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--markdown", metavar="PATH")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1
    import fastmlp
    from fastmlp.readiness import prepare

    benchlib.log("getting the numba kernels ready (outside any timing) ...")
    prepare(fastmlp.get_backend("numba"), np.float32)
    sets, makers = datasets(args.quick), classifiers(args.epochs, args.batch_size)
    results = measure(sets, makers, args.repeats, 0 if args.quick else args.max_wait)
    info = benchlib.machine_info()
    md = "\n".join(benchlib.header_lines(info, benchlib.blas_info()) + [""]
                   + [markdown(sets, makers, results, args)])
    report = {"machine": info, "args": vars(args),
              "results": [{"data": d, "classifier": c, **r} for (d, c), r in results.items()]}
    benchlib.write_report(md, report, args.markdown, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
