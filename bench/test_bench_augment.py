"""The augment op per backend.

--augment default on MNIST training images, 1024 of them (256 in quick mode;
the reference takes ~0.25 ms an image).

Before timing, the backend's images are compared with the NumPy reference's
for the same parameters (rtol 1e-5, atol 1e-6; tests/test_augment.py finds
them bit-identical), and one warm-up call runs so compilation is not timed.
The op's share of a training epoch is bench/augment_cost.py's job.
"""

import numpy as np

from fastmlp import augmentation

import benchlib


def test_augment(benchmark, backend, reference, mnist, quick):
    n = 256 if quick else 1024
    X = np.ascontiguousarray(mnist.X_train[:n])
    params = augmentation.sample_params(augmentation.DEFAULT, n, augmentation.epoch_rng(0, 0))
    args = (X, params.A, params.D, params.thickness)
    want = reference.augment(*args, np.empty_like(X))
    out = np.empty_like(X)
    got = backend.augment(*args, out)          # correctness first; also the warm-up
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    benchmark.group = f"augment {n} images"
    benchmark.extra_info.update(backend=backend.name, images=n)
    benchmark(backend.augment, *args, out)
    assert np.array_equal(out, got)            # timed calls wrote the same images
