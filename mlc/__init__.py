"""mlc: a compiler for declarative machine learning.

Embed a trained model with `mlc.load("out/model.mlc").predict(rows)`.
"""
__version__ = "0.1.0"


def load(path):
    """Load a model.mlc artifact; returns a Model with .predict(rows)."""
    from mlc.runtime.artifact import load as _load
    return _load(path)
