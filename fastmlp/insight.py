"""Inside the network for one input.

Every layer's activations, and the saliency of a class (why this answer).

No Tk here: the GUI's panels draw these, tests check them against finite
differences and across backends.

Both are composed from the kernel contract's single ops, so they run on
either backend with the same code the training uses:

    forward:   A[0] = x,  A[l+1] = relu(A[l] @ W[l] + b[l]),  logits = A[L] (no ReLU)
    saliency:  d logits[c] / d x, by backpropagating delta = onehot(c):
               dA[l] = delta @ W[l].T          (linear_backward with dX)
               delta = dA[l] * (A[l] > 0)      (relu_backward)

which is the first layer's input gradient that training never computes.
The score is the class's logit, not its probability: the logit's gradient
says what pushes the network towards that class, while the softmax's mixes in
every other class and vanishes when the network is already sure
(Simonyan, Vedaldi & Zisserman 2014, "Deep inside convolutional networks").
"""

from dataclasses import dataclass

import numpy as np

from fastmlp.model import MLP, N_CLASSES, N_INPUTS


@dataclass(frozen=True)
class Trace:
    """One input through the network.
    layers: [A[0], ..., A[L]], A[0] = x: (1, 784), A[l]: (1, sizes[l]) in the
    model's dtype; A[L] are the logits (no ReLU)."""

    layers: list

    @property
    def x(self) -> np.ndarray:
        """(784,) the network input."""
        return self.layers[0][0]

    @property
    def hidden(self) -> list:
        """[(sizes[1],), ..., (sizes[L-1],)] the ReLU activations of each hidden layer."""
        return [a[0] for a in self.layers[1:-1]]

    @property
    def logits(self) -> np.ndarray:
        """(10,) the last layer's outputs, before softmax."""
        return self.layers[-1][0]

    @property
    def probs(self) -> np.ndarray:
        """(10,) softmax of the logits, shifted by the max (exp never overflows)."""
        e = np.exp(self.logits - self.logits.max())
        return e / e.sum()


def trace(model: MLP, backend, x, prepared=False) -> Trace:
    """x: (784,) in [0, 1] -> its Trace, by the backend's linear_forward. The
    trace starts at what the first layer reads (``model.prepared``: the
    deskewed picture for a model trained deskewed), and so does the
    saliency. prepared: x is that already (the GUI's Answer.seen)."""
    x = np.asarray(x).reshape(1, N_INPUTS)
    A = [np.ascontiguousarray(x, dtype=model.dtype) if prepared else model.prepared(x)]
    last = len(model.W) - 1
    for l, (W, b) in enumerate(zip(model.W, model.b)):
        out = np.empty((1, W.shape[1]), model.dtype)
        A.append(backend.linear_forward(A[l], W, b, out, relu=l < last))
    return Trace(A)


def saliency(model: MLP, backend, traced: Trace, digit: int) -> np.ndarray:
    """(784,) d logits[digit] / d x at the traced input, by the backend's
    linear_backward (dX) and relu_backward, last layer first."""
    if not 0 <= digit < N_CLASSES:
        raise ValueError(f"digit {digit}: must be in 0..{N_CLASSES - 1}")
    A = traced.layers
    delta = np.zeros((1, N_CLASSES), model.dtype)
    delta[0, digit] = 1.0
    for l in reversed(range(len(model.W))):
        W = model.W[l]
        # dW and db are computed too (the op's contract); scratch here.
        dW, db = np.empty_like(W), np.empty_like(model.b[l])
        dX = np.empty_like(A[l])
        backend.linear_backward(A[l], W, delta, dW, db, dX)
        delta = backend.relu_backward(dX, A[l], dX) if l > 0 else dX
    return delta[0]


def warm_up(backend, dtype) -> None:
    """Run trace and saliency once on a tiny network, so that a compiled
    backend has compiled these single ops (their argument types) before the
    GUI first calls them; the GUI runs this in its background preparation."""
    model = MLP.init((8,), seed=0, dtype=dtype)
    traced = trace(model, backend, np.zeros(N_INPUTS))
    saliency(model, backend, traced, 0)
