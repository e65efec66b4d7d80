"""scikit-learn when it is installed, a minimal stand-in when it is not.

``fastmlp.MLPClassifier`` is a real scikit-learn estimator (it derives from
``sklearn.base.BaseEstimator`` and ``ClassifierMixin``, so ``clone``,
``Pipeline``, ``GridSearchCV`` and the estimator checks see what they
expect). scikit-learn stays optional at run time: without it the same class
derives from the small stand-ins below, which follow the same conventions
(parameters are the ``__init__`` arguments; ``score`` is accuracy), so
fitting, predicting, saving and exporting work all the same.
"""

import inspect

import numpy as np

from fastmlp.errors import FastmlpError

try:
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.exceptions import DataConversionWarning
    from sklearn.exceptions import NotFittedError as _SklearnNotFitted

    HAVE_SKLEARN = True
except ImportError:
    HAVE_SKLEARN = False

    class BaseEstimator:
        """get_params / set_params over the ``__init__`` arguments, as in sklearn."""

        @classmethod
        def _get_param_names(cls):
            signature = inspect.signature(cls.__init__)
            return sorted(p.name for p in signature.parameters.values() if p.name != "self")

        def get_params(self, deep=True):
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params):
            valid = self._get_param_names()
            for name, value in params.items():
                if name not in valid:
                    raise ValueError(f"Invalid parameter {name!r} for estimator "
                                     f"{type(self).__name__}; valid parameters: {', '.join(valid)}")
                setattr(self, name, value)
            return self

        def __repr__(self):
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
            return f"{type(self).__name__}({args})"

    class ClassifierMixin:
        """score = mean accuracy, as in sklearn."""

        _estimator_type = "classifier"

        def score(self, X, y, sample_weight=None):
            predicted = self.predict(X)
            return float(np.average(predicted == np.asarray(y), weights=sample_weight))

    class DataConversionWarning(UserWarning):
        """The stand-in for sklearn.exceptions.DataConversionWarning."""

    class _SklearnNotFitted(ValueError, AttributeError):
        """The stand-in for sklearn.exceptions.NotFittedError."""


class NotFittedError(FastmlpError, _SklearnNotFitted):
    """predict (or save, export) before fit: a FastmlpError for the CLI's
    one-line reporting, and scikit-learn's NotFittedError for its tools."""
