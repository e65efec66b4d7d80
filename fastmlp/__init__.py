"""fastmlp: a handwritten-digit MLP from first principles.

The engine (data, model, training, checkpoints, CLI) lives here; the kernels
behind it are in ``fastmlp.kernels`` (a NumPy reference and a Numba twin).
"""

__version__ = "0.1.0"
