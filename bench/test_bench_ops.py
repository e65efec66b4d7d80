"""Per-op benchmarks: every backend x batch 32/128/512 x op.

Inputs are real: MNIST rows and the activations/gradients of a trained
784-128-64-10 float32 model (benchlib.op_inputs). Before timing, the backend's
output is compared with the NumPy reference's on the same inputs
(relative error within fastmlp.tolerances.BACKEND_VS_REFERENCE;
benchlib.check_case), and one warm-up call runs so
compilation is not timed.
"""

import pytest

import benchlib

_inputs = {}


def _cases(model, mnist, batch):
    if batch not in _inputs:
        inp = benchlib.op_inputs(model, mnist, batch)
        _inputs[batch] = {case.id: case for case in benchlib.op_cases(inp)}
    return _inputs[batch]


# Case ids do not depend on the batch; build them once from a tiny stand-in.
def _case_ids():
    import numpy as np

    from fastmlp.model import MLP
    model = MLP.init()
    X = np.zeros((4, 784), np.float32)

    class Data:
        X_train, y_train = X, np.zeros(4, np.int64)

    return [case.id for case in benchlib.op_cases(benchlib.op_inputs(model, Data, 4))]


CASE_IDS = _case_ids()


@pytest.mark.parametrize("case_id", CASE_IDS)
@pytest.mark.parametrize("batch", benchlib.OP_BATCH_SIZES)
def test_op(benchmark, backend, model, mnist, batch, case_id):
    case = _cases(model, mnist, batch)[case_id]
    benchlib.check_case(backend, case)        # correctness first
    args = case.make()
    benchlib.run_case(backend, case, args)    # warm-up: compile outside the timing
    benchmark.group = f"op {case_id} batch {batch}"
    benchmark.extra_info.update(backend=backend.name, batch=batch, op=case.op)
    op = getattr(backend, case.op)
    benchmark(op, *args)
