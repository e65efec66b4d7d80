"""The benchmarks' shared code under one name.

``import benchlib`` reaches the modules below, one per job.

    workload.py  the default recipe's epoch, timed through the engine's own
                 loop (fastmlp.train.train_steps), the textbook yardstick
                 behind train_batches, the check of each epoch's loss
    opcheck.py   the per-op cases on one real batch and their check against
                 the reference
    floors.py    the FLOP count of an epoch and the machine's SGEMM rates
    timing.py    samples of seconds per call, their statistics
    machine.py   the machine header, the code measured, other processes' load
    startup.py   a fresh interpreter's import and first calls
    reports.py   progress to stderr, the markdown report, report files

The tolerances of every check are fastmlp/tolerances.py's, shared with the
tests and ``fastmlp gradcheck``. Used by the pytest-benchmark files
(bench/test_bench_*.py, via bench/conftest.py) and the scripts
(bench/compare.py, ...). Nothing here is imported by the package itself.
"""

# The names the benchmark files and scripts use, by module (re-exported).
from fastmlp.kernels import get_backend  # noqa: F401
from fastmlp.tolerances import (BACKEND_VS_REFERENCE, CORRECT_SLACK,  # noqa: F401
                                EPOCH_LOSS_RTOL, relative_error)
from fastmlp.train import epoch_order  # noqa: F401
from floors import (epoch_flops, gemm_floors, layer_gemms, network_name,  # noqa: F401
                    sgemm_peak, sgemm_rate, sgemm_timing)
from machine import (ForeignLoad, blas_info, header_lines, machine_info,  # noqa: F401
                     source_digest, wait_for_idle)
from opcheck import OP_BATCH_SIZES, OpCase, check_case, op_cases, op_inputs, run_case  # noqa: F401
from reports import log, write_report  # noqa: F401
from startup import cache_files, process_start  # noqa: F401
from timing import samples, stats, time_call  # noqa: F401
from workload import (QUICK_ENV, QUICK_ROWS, REFERENCE, TEXTBOOK, TEXTBOOK_NAME,  # noqa: F401
                      EpochResult, EpochSetup, backend_names, check_epoch_loss, fresh_state,
                      load_backend, make_epoch_setup, nonzero_fraction, quick_mode, run_epoch,
                      trained_model, warm_up_epoch)
