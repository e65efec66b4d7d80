"""Augmentation: the NumPy reference kernel by construction (identity, exact
shifts and rotations, thickness), the Numba twin against it, the parameters
(determinism, geometry) and the --augment spec parser."""

import math

import numpy as np
import pytest

from fastmlp import augmentation
from fastmlp.augmentation import AugmentConfig, parse, sample_params
from fastmlp.data import load_dataset
from fastmlp.errors import FastmlpError
from fastmlp.kernels import augment_numpy as ref

SIDE = 28


@pytest.fixture(scope="module")
def fast():
    numba_kernel = pytest.importorskip("fastmlp.kernels.augment_numba")
    return numba_kernel


@pytest.fixture(scope="module")
def digits():
    """(300, 784) float32 MNIST training digits."""
    return np.ascontiguousarray(load_dataset().X_train[:300])


def identity(n, G=4):
    """Parameters that change nothing: A = [I | 0], D = 0, t = 0."""
    A = np.zeros((n, 2, 3), np.float32)
    A[:, 0, 0] = A[:, 1, 1] = 1
    return A, np.zeros((n, G, G, 2), np.float32), np.zeros(n, np.float32)


def run(kernel, X, A, D, t):
    return kernel.augment(X, A, D, t, np.full_like(X, np.nan))


def kernels(fast):
    return [ref, fast]


# ----------------------------------------------------- exact by construction

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_identity_parameters_return_the_input_exactly(fast, digits, dtype):
    X = digits[:50].astype(dtype)
    for kernel in kernels(fast):
        np.testing.assert_array_equal(run(kernel, X, *identity(len(X))), X)


def test_no_augmentation_samples_the_identity(fast, digits):
    # --augment none: the drawn parameters are the identity, the images unchanged.
    p = sample_params(augmentation.NONE, len(digits), np.random.default_rng(0))
    for kernel in kernels(fast):
        np.testing.assert_array_equal(run(kernel, digits, p.A, p.D, p.thickness), digits)


def test_shift_by_one_pixel_moves_the_image_by_one_pixel(fast, digits):
    X = digits[:20]
    A, D, t = identity(len(X))
    A[:, 0, 2] = -1          # source row = row - 1: the image moves down one row
    A[:, 1, 2] = 2           # source col = col + 2: the image moves left two columns
    images = X.reshape(-1, SIDE, SIDE)
    expected = np.zeros_like(images)
    expected[:, 1:, :-2] = images[:, :-1, 2:]
    for kernel in kernels(fast):
        np.testing.assert_array_equal(run(kernel, X, A, D, t).reshape(-1, SIDE, SIDE), expected)


def test_quarter_turn_is_an_exact_permutation(fast):
    # A hand-made asymmetric pattern touching the image border.
    image = np.zeros((SIDE, SIDE), np.float32)
    image[0, :10] = 1.0                      # top edge
    image[3:20, 5] = 0.5                     # a vertical bar
    image[27, 27] = 0.25                     # bottom-right corner pixel
    image[10:13, 20:26] = np.arange(18, dtype=np.float32).reshape(3, 6) / 17
    X = image.reshape(1, -1)
    A, D, t = identity(1)
    A[0, :, :2] = [[0, 1], [-1, 0]]          # source (row, col) = (col, 27 - row)
    for kernel in kernels(fast):
        out = run(kernel, X, A, D, t).reshape(SIDE, SIDE)
        np.testing.assert_array_equal(out, np.rot90(image))


def test_constant_elastic_displacement_is_a_shift(fast, digits):
    # Every control point displaced by (-1, 0): the smooth field is -1 rows
    # everywhere (up to the rounding of its bilinear weights).
    X = digits[:20]
    A, D, t = identity(len(X))
    D[..., 0] = -1
    images = X.reshape(-1, SIDE, SIDE)
    expected = np.zeros_like(images)
    expected[:, 1:] = images[:, :-1]
    for kernel in kernels(fast):
        out = run(kernel, X, A, D, t).reshape(-1, SIDE, SIDE)
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)


def test_displacement_field_interpolates_the_control_grid():
    rng = np.random.default_rng(3)
    D = rng.uniform(-2, 2, (5, 4, 4, 2)).astype(np.float32)
    d = ref.displacement_field(D)
    assert d.shape == (5, SIDE, SIDE, 2) and d.dtype == np.float32
    # Control point (k, l) sits on pixel (9k, 9l) (27 / (4 - 1) = 9).
    np.testing.assert_allclose(d[:, ::9, ::9], D, rtol=0, atol=1e-6)
    # Bilinear: never beyond the control values, and smooth (neighbours
    # differ by at most the largest control difference / 9 pixels).
    assert np.abs(d).max() <= np.abs(D).max() + 1e-6
    assert np.abs(np.diff(d, axis=1)).max() <= 4 / 9 + 1e-5


def test_thickness_adds_or_removes_ink(fast, digits):
    X = digits[:50]
    A, D, _ = identity(len(X))
    for kernel in kernels(fast):
        thicker = run(kernel, X, A, D, np.full(len(X), 0.5, np.float32))
        thinner = run(kernel, X, A, D, np.full(len(X), -0.5, np.float32))
        # Per pixel: between the image and its 3x3 dilation / erosion.
        assert (thicker >= X).all() and (thinner <= X).all()
        assert (thicker.sum(axis=1) > X.sum(axis=1)).all()
        assert (thinner.sum(axis=1) < X.sum(axis=1)).all()
        # Full strength is the dilation itself: a lone pixel becomes a 3x3 block.
        dot = np.zeros((1, SIDE * SIDE), np.float32)
        dot[0, 5 * SIDE + 7] = 0.75
        grown = run(kernel, dot, *identity(1)[:2], np.ones(1, np.float32)).reshape(SIDE, SIDE)
        expected = np.zeros((SIDE, SIDE), np.float32)
        expected[4:7, 6:9] = 0.75
        np.testing.assert_array_equal(grown, expected)


def test_outputs_stay_in_unit_range_and_blank_images_stay_blank(fast, digits):
    strong = AugmentConfig(rotate=180, scale=0.5, shear=45, shift=6, elastic=6, grid=3,
                           thickness=1)
    X = np.concatenate([digits[:100], np.zeros((5, SIDE * SIDE), np.float32)])
    p = sample_params(strong, len(X), np.random.default_rng(1))
    for kernel in kernels(fast):
        out = run(kernel, X, p.A, p.D, p.thickness)
        assert 0 <= out.min() and out.max() <= 1
        assert (out[100:] == 0).all()
        assert (out[:100].sum(axis=1) > 0).any()


# --------------------------------------------- the compiled twin vs the reference

PARITY_CONFIGS = {
    "default": augmentation.DEFAULT,
    "strong": AugmentConfig(rotate=90, scale=0.4, shear=30, shift=8, elastic=5, grid=7,
                            thickness=1),
    "coarse grid": AugmentConfig(rotate=5, elastic=3, grid=2, thickness=0.2),
    "affine only": AugmentConfig(rotate=20, scale=0.2, shear=10, shift=3),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", PARITY_CONFIGS)
def test_numba_matches_the_reference(fast, digits, dtype, name):
    """Both kernels do the same IEEE operations in the same order and agree to
    the bit on this machine; the tolerance (float32: 1e-5, float64: 1e-12,
    absolute, values in [0, 1]) only allows a compiler that fuses a
    multiply-add. Any real disagreement (a pixel or a weight off) is >> 1e-3."""
    # Real digits, plus full-frame noise whose ink touches every border.
    noise = np.random.default_rng(2).random((20, SIDE * SIDE), dtype=np.float32)
    X = np.concatenate([digits, noise]).astype(dtype)
    p = sample_params(PARITY_CONFIGS[name], len(X), np.random.default_rng(7))
    expected = run(ref, X, p.A, p.D, p.thickness)
    got = run(fast, X, p.A, p.D, p.thickness)
    atol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, expected, rtol=0, atol=atol)
    assert got.dtype == dtype


def test_numba_parity_on_edge_cases(fast, digits):
    X = digits[:6]
    A, D, t = identity(len(X))
    A[0, :, 2] = [40, 0]                        # shifted entirely out of the frame
    A[1, :, :2] = [[1e-12, 1], [-1, 1e-12]]     # near-degenerate slopes
    A[2, :, :2] = [[3, 0], [0, 3]]              # zoomed out: the digit a third the size
    A[3, :, :2] = [[0.2, 0], [0, 0.2]]          # zoomed in 5x: ink fills the frame
    A[4, :, 2] = [0.5, -0.5]                    # half-pixel shift: pure interpolation
    D[5] = np.random.default_rng(4).uniform(-10, 10, D[5].shape)
    t[:] = [0.3, -0.7, 1, -1, 0, 0.5]
    np.testing.assert_allclose(run(fast, X, A, D, t), run(ref, X, A, D, t), rtol=0, atol=1e-5)
    assert (run(fast, X, A, D, t)[0] == 0).all()


def test_numba_results_do_not_depend_on_threads_or_batching(fast, digits):
    numba = pytest.importorskip("numba")
    p = sample_params(augmentation.DEFAULT, len(digits), np.random.default_rng(5))
    whole = run(fast, digits, p.A, p.D, p.thickness)
    part = run(fast, digits[37:101], p.A[37:101], p.D[37:101], p.thickness[37:101])
    np.testing.assert_array_equal(part, whole[37:101])
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        np.testing.assert_array_equal(run(fast, digits, p.A, p.D, p.thickness), whole)
    finally:
        numba.set_num_threads(threads)


def test_numba_compiles_once_for_writable_and_read_only_inputs(fast, digits):
    """Regression: the training set is read-only and a deskewed copy of it
    is not; Numba types the two apart, so the op compiled a second
    specialization inside the first timed epoch (6 s of a cold run) after
    prepare() had compiled the other. It now reads every input as read-only."""
    pytest.importorskip("numba")
    from fastmlp.kernels import numba_backend
    from fastmlp.kernels.augment_numba import _augment
    n = 3
    params = (np.zeros((n, 2, 3), np.float32), np.zeros((n, 4, 4, 2), np.float32),
              np.zeros(n, np.float32))
    frozen = np.ascontiguousarray(digits[:n], np.float32)
    frozen.flags.writeable = False
    for X in (frozen, frozen.copy()):
        for p in (params, tuple(a.copy() for a in params)):
            for a in p:
                a.flags.writeable = X.flags.writeable
            numba_backend.augment(X, *p, np.empty((n, 784), np.float32))
    float32 = [sig for sig in _augment.signatures if str(sig[0].dtype) == "float32"]
    assert len(float32) == 1


def test_numba_rejects_bad_arrays(fast, digits):
    X = digits[:4]
    A, D, t = identity(4)
    same = X.copy()
    with pytest.raises(ValueError, match="overlap"):
        fast.augment(same, A, D, t, same)
    with pytest.raises(ValueError, match="out must"):
        fast.augment(X, A, D, t, np.empty((4, 784), np.float64))
    with pytest.raises(ValueError, match="expected"):
        fast.augment(X, A[:3], D, t, np.empty_like(X))
    with pytest.raises(TypeError, match="float32 or float64"):
        fast.augment(X.astype(np.float16), A, D, t, np.empty_like(X, np.float16))


# ------------------------------------------------------------------ parameters

def test_same_seed_same_parameters_and_images(fast, digits):
    a = sample_params(augmentation.DEFAULT, 300, augmentation.epoch_rng(3, 4))
    b = sample_params(augmentation.DEFAULT, 300, augmentation.epoch_rng(3, 4))
    c = sample_params(augmentation.DEFAULT, 300, augmentation.epoch_rng(3, 5))
    for field in ("A", "D", "thickness"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        assert not np.array_equal(getattr(a, field), getattr(c, field))
    for kernel in kernels(fast):
        np.testing.assert_array_equal(run(kernel, digits, a.A, a.D, a.thickness),
                                      run(kernel, digits, b.A, b.D, b.thickness))


def test_parameters_have_the_documented_shapes_and_ranges():
    config = AugmentConfig(rotate=12, scale=0.1, shear=8, shift=2, elastic=2, grid=5,
                           thickness=0.5)
    p = sample_params(config, 1000, np.random.default_rng(0))
    assert p.A.shape == (1000, 2, 3) and p.D.shape == (1000, 5, 5, 2)
    assert p.thickness.shape == (1000,)
    assert p.A.dtype == p.D.dtype == p.thickness.dtype == np.float32
    assert np.abs(p.D).max() <= 2 and np.abs(p.D).max() > 1.9
    assert np.abs(p.thickness).max() <= 0.5 and p.thickness.min() < -0.4
    # det A = 1 / zoom^2 (rotation and shear preserve area).
    det = np.linalg.det(p.A[:, :, :2].astype(np.float64))
    assert ((det >= 1 / 1.1**2 - 1e-5) & (det <= 1 / 0.9**2 + 1e-5)).all()


def test_shift_moves_the_ink_by_the_drawn_amount(digits):
    # Only shifts: A = [I | -shift], and the ink's centre of mass moves by +shift
    # (on digits at least 4 pixels from every border, so no ink leaves the frame).
    images = digits.reshape(-1, SIDE, SIDE)
    margin = (images[:, :4].any(axis=(1, 2)) | images[:, -4:].any(axis=(1, 2))
              | images[:, :, :4].any(axis=(1, 2)) | images[:, :, -4:].any(axis=(1, 2)))
    X = digits[~margin][:50]
    assert len(X) == 50
    p = sample_params(AugmentConfig(shift=3), len(X), np.random.default_rng(6))
    np.testing.assert_array_equal(p.A[:, :, :2], np.broadcast_to(np.eye(2), (len(X), 2, 2)))
    out = run(ref, X, p.A, p.D, p.thickness)
    grid = np.indices((SIDE, SIDE)).reshape(2, -1)

    def centre(images):
        return images @ grid.T / images.sum(axis=1, keepdims=True)

    np.testing.assert_allclose(centre(out) - centre(X), -p.A[:, :, 2], atol=0.05)


def test_rotation_turns_the_ink_by_the_drawn_angle(digits):
    # Rotation only: A is a rotation matrix; the ink's principal axis turns by
    # the same angle (checked on elongated digits, where the axis is clear).
    p = sample_params(AugmentConfig(rotate=30), 300, np.random.default_rng(8))
    angle = np.arctan2(p.A[:, 0, 1], p.A[:, 0, 0])          # A = R(-angle)
    assert np.abs(np.degrees(angle)).max() <= 30
    np.testing.assert_allclose(p.A[:, 0, 0], p.A[:, 1, 1])
    np.testing.assert_allclose(p.A[:, 0, 1], -p.A[:, 1, 0])
    out = run(ref, digits, p.A, p.D, p.thickness)
    grid = np.indices((SIDE, SIDE)).reshape(2, -1).astype(np.float64)

    def axis(image):
        w = image / image.sum()
        centred = grid - grid @ w[:, None]
        cov = (centred * w) @ centred.T
        values, vectors = np.linalg.eigh(cov)
        return math.atan2(vectors[1, 1], vectors[0, 1]), values[1] / values[0]

    checked = 0
    for image, turned, a in zip(digits, out, angle):
        before, elongation = axis(image)
        if elongation < 6:
            continue
        after, _ = axis(turned)
        # The output at p is the source at R(-angle) p: the content turns by
        # +angle (axis angles in the (row, col) plane, modulo pi).
        delta = (after - before - a + math.pi / 2) % math.pi - math.pi / 2
        assert abs(delta) < math.radians(3), (before, after, a)
        checked += 1
    assert checked >= 20


# ------------------------------------------------------------------- the spec

@pytest.mark.parametrize("spec, expected", [
    ("default", augmentation.DEFAULT),
    ("none", AugmentConfig()),
    ("rotate=12", AugmentConfig(rotate=12)),
    ("default,elastic=0", AugmentConfig(rotate=12, scale=0.1, shear=8, shift=2, thickness=0.5)),
    ("rotate=12,scale=0.1,shear=8,shift=2,elastic=2,thickness=0.5", augmentation.DEFAULT),
    (" elastic = 3 , grid = 6 ", AugmentConfig(elastic=3, grid=6)),
    ("rotate=12.3456789,shift=1e-3", AugmentConfig(rotate=12.3456789, shift=0.001)),
])
def test_parse_good_specs(spec, expected):
    config = parse(spec)
    assert config == expected
    assert parse(config.spec()) == config


def test_canonical_spec():
    assert augmentation.NONE.spec() == "none" and not augmentation.NONE.enabled
    assert augmentation.DEFAULT.enabled
    assert augmentation.DEFAULT.spec() == ("rotate=12,scale=0.1,shear=8,shift=2,elastic=2,grid=4,"
                                      "thickness=0.5")
    assert AugmentConfig(grid=7).spec() == "none"     # grid alone changes nothing


@pytest.mark.parametrize("spec, words", [
    ("rotate=abc", ["rotate=abc", "not a number"]),
    ("bogus=1", ["bogus", "unknown key", "rotate"]),
    ("rotate", ["'rotate'", "key=value"]),
    ("scale=1", ["scale=1", "[0, 1)"]),
    ("grid=2.5", ["grid=2.5", "integer"]),
    ("grid=1", ["grid=1", "[2, 28]"]),
    ("rotate=-5", ["rotate=-5", "[0, 180]"]),
    ("thickness=nan", ["thickness=nan", "[0, 1]"]),
    ("elastic=inf", ["elastic=inf"]),
    ("", ["empty"]),
    ("default,,", ["key=value"]),
])
def test_parse_bad_specs_fail_in_one_line(spec, words):
    with pytest.raises(FastmlpError) as info:
        parse(spec)
    message = str(info.value)
    assert "\n" not in message and message.startswith("--augment")
    for word in words:
        assert word in message


def test_config_checks_its_fields():
    with pytest.raises(FastmlpError, match="shear"):
        AugmentConfig(shear=90)
    assert AugmentConfig(grid=5.0).grid == 5 and isinstance(AugmentConfig(grid=5.0).grid, int)


# ------------------------------------- training integration (fastmlp.train)
# Active once TrainConfig has an ``augment`` field and the backends expose
# ``augment`` (see the integration notes in fastmlp/augmentation.py's callers).

def _integrated():
    import dataclasses

    from fastmlp.kernels import get_backend
    from fastmlp.train import TrainConfig
    return ("augment" in {f.name for f in dataclasses.fields(TrainConfig)}
            and callable(getattr(get_backend("numpy"), "augment", None)))


integration = pytest.mark.skipif(not _integrated(), reason="train.py not yet integrated")


@integration
def test_training_sees_each_epochs_augmented_images():
    from fastmlp.kernels import get_backend
    from fastmlp.train import TrainConfig, TrainState, run

    data = load_dataset()
    numpy_backend = get_backend("numpy")
    seen = []

    class Recording:
        """The reference backend, recording the images each chunk trains on."""
        name = "recording"

        def __getattr__(self, name):
            return getattr(numpy_backend, name)

        def train_batches(self, W, b, slots, step, X, *args):
            seen.append(X.copy())
            return numpy_backend.train_batches(W, b, slots, step, X, *args)

    config = TrainConfig(epochs=2, limit=256, batch_size=256, augment="default", seed=3)
    assert config.augment == augmentation.DEFAULT.spec()          # stored canonical
    run(config, data, Recording(), TrainState.fresh(config))
    X = data.X_train[:256]
    for epoch, images in enumerate(seen):
        p = sample_params(augmentation.DEFAULT, 256, augmentation.epoch_rng(3, epoch))
        np.testing.assert_array_equal(images, run_reference(X, p))
    assert not np.array_equal(seen[0], seen[1])


def run_reference(X, p):
    return ref.augment(X, p.A, p.D, p.thickness, np.empty_like(X))


@integration
@pytest.mark.parametrize("backend_name", ["numpy", "numba"])
def test_augmented_training_is_deterministic_and_resumes_exactly(backend_name):
    from fastmlp.kernels import get_backend
    from fastmlp.train import TrainConfig, TrainState, run

    data = load_dataset()
    backend = get_backend(backend_name)
    # 125 batches of 8 per epoch: several chunks per epoch on either backend.
    config = TrainConfig(epochs=2, limit=1000, batch_size=8, augment="default", optimizer="adam",
                         lr=1e-3)
    whole = TrainState.fresh(config)
    run(config, data, backend, whole)
    again = TrainState.fresh(config)
    run(config, data, backend, again)
    plain_config = TrainConfig(epochs=2, limit=1000, batch_size=8, optimizer="adam", lr=1e-3)
    plain = TrainState.fresh(plain_config)
    run(plain_config, data, backend, plain)

    calls = []
    chunks = -(-125 // getattr(backend, "batches_per_call", 1))     # per epoch
    stopped = TrainState.fresh(config)
    status = run(config, data, backend, stopped, on_chunk=lambda *a: calls.append(1),
                 should_stop=lambda: len(calls) == chunks + 1)     # early in epoch 2
    assert status == "stopped" and stopped.epoch == 1 and stopped.step > 0
    run(config, data, backend, stopped)
    for l in range(3):
        np.testing.assert_array_equal(whole.model.W[l], again.model.W[l])
        np.testing.assert_array_equal(whole.model.W[l], stopped.model.W[l])
        assert not np.array_equal(whole.model.W[l], plain.model.W[l])


@integration
def test_cli_augment_flag_errors_in_one_line_and_resume_keeps_it(tmp_path):
    import contextlib
    import io

    from fastmlp.cli import main

    def cli(*argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in argv])
        return code, out.getvalue(), err.getvalue()

    model = tmp_path / "m.npz"
    code, _, err = cli("train", "--augment", "rotate=abc", "--out", model)
    assert code == 2 and err.count("\n") == 1 and "rotate=abc" in err
    code, out, _ = cli("train", "--augment", "default", "--epochs", 1, "--limit", 300,
                       "--out", model, "--quiet")
    assert code == 0 and "augment rotate=12" in out
    code, _, _ = cli("train", "--resume", model, "--epochs", 2, "--augment", "default", "--quiet")
    assert code == 0
    code, _, err = cli("train", "--resume", model, "--epochs", 3, "--augment", "none")
    assert code == 2 and "--augment none" in err and err.count("\n") == 1
