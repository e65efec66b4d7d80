"""The shipped compiled kernels (kernels/compiled_bundle.py) and the CPU
level they are compiled for (kernels/numba_target.py)."""

import json
import os
import pickle
import subprocess
import sys
import zipfile

import numba
import pytest

from fastmlp.kernels import compiled_bundle, numba_target
from fastmlp.kernels.numba_jit import SOURCES_DIGEST


def _manifest(level):
    with zipfile.ZipFile(compiled_bundle.bundle_path(level)) as bundle:
        return json.loads(bundle.read(compiled_bundle.MANIFEST))


@pytest.mark.parametrize("level", list(numba_target.LEVELS))
def test_each_shipped_bundle_was_compiled_from_these_sources(level):
    """A kernel edit without a rebuild would ship a bundle no one can load
    (every first run would compile again): rebuild with
    ``python -m fastmlp.kernels.compiled_bundle``."""
    manifest = _manifest(level)
    assert manifest["identity"]["sources_digest"] == SOURCES_DIGEST, "rebuild the bundle"
    assert manifest["identity"]["numba"] == numba.__version__
    assert manifest["identity"]["target"] == level
    with zipfile.ZipFile(compiled_bundle.bundle_path(level)) as bundle:
        names = set(bundle.namelist())
    assert set(manifest["files"]) | {compiled_bundle.MANIFEST} == names
    assert any(n.startswith("numba_train.batch_worker-") and n.endswith(".nbi") for n in names)


_LOAD = """
import json, numpy as np
from numba.core.registry import CPUDispatcher
from fastmlp.kernels import numba_backend as nb, numba_target
nb.prepare(np.float32, augment=True, pen=True)
# then what `fastmlp train` and the GUI run on the default network
from fastmlp.train import TrainConfig, TrainState
config = TrainConfig()
state = TrainState.fresh(config)
m = state.model
rng = np.random.default_rng(0)
X = (rng.random((300, 784)) * (rng.random((300, 784)) < 0.2)).astype(np.float32)
y = rng.integers(0, 10, 300)
nb.train_batches(m.W, m.b, state.optimizer.slots, 0, X, y, np.arange(300), 128, 0, 3, np.full(3, 0.01),
                 config.optimizer_config(), 0.0)
nb.forward(m.W, m.b, X[:1]), nb.forward(m.W, m.b, X)
nb.linear_forward(X[:1], m.W[0], m.b[0], np.empty((1, 128), np.float32), True)
nb.linear_backward(X[:1], m.W[0], np.ones((1, 128), np.float32), np.empty_like(m.W[0]),
                   np.empty_like(m.b[0]), np.empty((1, 784), np.float32))
stats = {}
for module in list(__import__("sys").modules.values()):
    if getattr(module, "__name__", "").startswith("fastmlp.kernels."):
        for name, f in vars(module).items():
            if isinstance(f, CPUDispatcher) and f.stats.cache_hits | f.stats.cache_misses:
                stats[module.__name__ + "." + name] = (sum(f.stats.cache_hits.values()),
                                                       sum(f.stats.cache_misses.values()))
print(json.dumps({"target": numba_target.TARGET, "stats": stats}))
"""


def _prepare_on_a_fresh_cache(tmp_path, **env_extra):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), **env_extra)
    done = subprocess.run([sys.executable, "-c", _LOAD], capture_output=True, text=True,
                          timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(sys.implementation.cache_tag != "cpython-311",
                    reason="the bundles are compiled for CPython 3.11")
def test_a_first_run_loads_every_kernel_it_needs_from_the_bundle(tmp_path):
    """On a fresh cache, prepare (what `fastmlp train` waits for) and then
    training, inference and the GUI's one-image calls on the default network
    compile nothing: every kernel they run is a cache hit, seeded from the bundle."""
    result = _prepare_on_a_fresh_cache(tmp_path)
    if result["target"] not in numba_target.LEVELS:
        pytest.skip(f"no bundle for this CPU ({result['target']})")
    stats = result["stats"]
    assert "fastmlp.kernels.numba_train.batch_worker" in stats
    assert "fastmlp.kernels.augment_numba._augment" in stats
    assert {name: s for name, s in stats.items() if s[1] != 0} == {}   # no compile
    assert all(hits >= 1 for hits, _ in stats.values())


def _fake_bundle(path, identity, files):
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr(compiled_bundle.MANIFEST,
                        json.dumps({"identity": identity, "files": sorted(files)}))
        for name, data in files.items():
            bundle.writestr(name, data)


def _index(stamp, version=None):
    return pickle.dumps(version or numba.__version__) + pickle.dumps((stamp, {}))


@pytest.fixture
def fake_level(tmp_path, monkeypatch):
    """A bundle of level "test" in tmp_path/bundle: one entry f-1 (an index
    and its data file), stamped with the sources' digest."""
    monkeypatch.setattr(compiled_bundle, "BUNDLE_DIR", str(tmp_path / "bundle"))
    monkeypatch.delenv(compiled_bundle.BUNDLE_ENV, raising=False)
    os.makedirs(tmp_path / "bundle")
    files = {"m.f-1.py311.nbi": _index(SOURCES_DIGEST), "m.f-1.py311.1.nbc": b"data"}
    _fake_bundle(compiled_bundle.bundle_path("test"), compiled_bundle.expected_manifest("test"),
                 files)
    return files


def test_seeding_copies_what_is_missing_or_stale_and_leaves_a_current_entry(tmp_path, fake_level):
    cache = tmp_path / "cache"
    assert compiled_bundle.seed(str(cache), "test") == 1
    assert (cache / "m.f-1.py311.1.nbc").read_bytes() == b"data"
    assert (cache / "m.f-1.py311.nbi").read_bytes() == fake_level["m.f-1.py311.nbi"]
    assert compiled_bundle.seed(str(cache), "test") == 0          # current: left alone
    (cache / "m.f-1.py311.nbi").write_bytes(_index("an older digest"))
    assert compiled_bundle.seed(str(cache), "test") == 1          # stale: replaced
    (cache / "m.f-1.py311.nbi").write_bytes(b"truncated")
    assert compiled_bundle.seed(str(cache), "test") == 1          # unreadable: replaced
    assert sorted(os.listdir(cache)) == ["m.f-1.py311.1.nbc", "m.f-1.py311.nbi"]   # no temp files
    umask = os.umask(0)
    os.umask(umask)
    for name in os.listdir(cache):   # as readable as Numba's own files, not mkstemp's 0600
        assert os.stat(cache / name).st_mode & 0o777 == 0o666 & ~umask


def test_seeding_is_off_when_asked(tmp_path, fake_level, monkeypatch):
    monkeypatch.setenv(compiled_bundle.BUNDLE_ENV, "0")
    assert compiled_bundle.seed(str(tmp_path / "cache"), "test") == 0
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("field, value", [("sources_digest", "0" * 64), ("numba", "0.1.0"),
                                          ("python", "cpython-27"), ("target", "another")])
def test_a_bundle_that_does_not_fit_this_process_is_not_copied(tmp_path, fake_level, field, value):
    identity = dict(compiled_bundle.expected_manifest("test"), **{field: value})
    _fake_bundle(compiled_bundle.bundle_path("test"), identity, fake_level)
    assert compiled_bundle.seed(str(tmp_path / "cache"), "test") == 0
    assert not (tmp_path / "cache").exists()


def test_a_missing_or_broken_bundle_copies_nothing(tmp_path, fake_level):
    assert compiled_bundle.seed(str(tmp_path / "cache"), "no-such-level") == 0
    with open(compiled_bundle.bundle_path("test"), "wb") as f:
        f.write(b"not a zip")
    assert compiled_bundle.seed(str(tmp_path / "cache"), "test") == 0


def test_an_unwritable_cache_directory_copies_nothing(tmp_path, fake_level):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert compiled_bundle.seed(str(blocker / "cache"), "test") == 0


_V3 = set(numba_target.LEVELS["x86-64-v3"])
_V4 = set(numba_target.LEVELS["x86-64-v4"])


@pytest.mark.parametrize("features, level", [
    (_V4 | {"avx512vnni", "amx-tile"}, "x86-64-v4"),
    (_V4 - {"avx512bw"}, "x86-64-v3"),              # AVX-512 F without BW (Knights Landing)
    (_V3, "x86-64-v3"),
    (_V3 - {"movbe"}, "native"),
    (set(), "native"),                               # another architecture
])
def test_the_best_level_is_the_highest_whose_every_feature_the_cpu_has(features, level):
    assert numba_target.best_level(features) == level


def test_a_level_takes_only_the_extras_the_host_has():
    assert numba_target.level_features(_V4 | {"prfchw", "amx-tile"}) == "+prfchw"
    assert numba_target.level_features(_V3) == ""


def test_the_target_follows_the_user(monkeypatch):
    monkeypatch.setattr(numba_target, "host_features", lambda: _V4)
    monkeypatch.delenv("NUMBA_CPU_NAME", raising=False)
    monkeypatch.delenv(numba_target.TARGET_ENV, raising=False)
    assert numba_target.choose() == "x86-64-v4"
    monkeypatch.setenv(numba_target.TARGET_ENV, "x86-64-v3")
    assert numba_target.choose() == "x86-64-v3"
    monkeypatch.setenv(numba_target.TARGET_ENV, "native")
    assert numba_target.choose() == "native"
    monkeypatch.setattr(numba_target, "host_features", lambda: _V3)
    monkeypatch.setenv(numba_target.TARGET_ENV, "x86-64-v4")
    assert numba_target.choose() == "native"          # code for a CPU this one is not
    monkeypatch.setenv("NUMBA_CPU_NAME", "skylake")
    assert numba_target.choose() == "skylake"         # the user's own Numba setting wins


def test_this_process_compiles_for_the_chosen_level():
    """Numba's codegen says the level's name and no host features (only the
    extras every level is compiled with): the key
    under which a bundle's entries were stored; the kernels' vectors are the
    level's (64 bytes for v4's AVX-512, 32 for v3's AVX2)."""
    if numba_target.TARGET not in numba_target.LEVELS:
        pytest.skip(f"this CPU has no portable level ({numba_target.TARGET})")
    from numba.core.registry import cpu_target
    triple, name, features = cpu_target.target_context.codegen().magic_tuple()
    assert (name, features) == (numba_target.TARGET,
                                numba_target.level_features(numba_target.host_features()))
    assert numba_target.vector_bytes() == (64 if numba_target.TARGET == "x86-64-v4" else 32)


def test_the_level_compiles_the_write_prefetch_to_prefetchw():
    """claim_piece's prefetch_for_write is ``prefetchw`` on a level where the
    host has prfchw (the level's extra feature); it reads and writes nothing:
    the array is unchanged, and an empty or one-element span is fine."""
    if numba_target.TARGET not in numba_target.LEVELS:
        pytest.skip(f"this CPU has no portable level ({numba_target.TARGET})")
    if "prfchw" not in numba_target.host_features():
        pytest.skip("this CPU does not report prfchw: the level compiles without it")
    import numpy as np
    from fastmlp.kernels.numba_ir import prefetch_for_write

    @numba.njit
    def claim(a, lo, hi):
        prefetch_for_write(a, lo, hi)

    a = np.arange(1000, dtype=np.float32)
    for lo, hi in ((0, 1000), (17, 18), (500, 500)):
        claim(a, lo, hi)
    np.testing.assert_array_equal(a, np.arange(1000, dtype=np.float32))
    asm = claim.inspect_asm(claim.signatures[0])
    assert "prefetchw" in asm
