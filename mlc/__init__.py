"""mlc: a compiler for declarative machine learning.

Embed a trained model with `mlc.load("out/model.mlc").predict(rows)`.
"""
__version__ = "0.1.0"


def load(path, device=None):
    """Load a model.mlc or .mlcc artifact; returns a Model with .predict(rows).

    It runs on the accelerator JAX finds; device="cpu" (or MLC_DEVICE=cpu) forces the CPU,
    as long as nothing in the process has used a JAX device yet."""
    from mlc import accelerator
    accelerator.select(device)
    from mlc.runtime.artifact import load as _load
    return _load(path)
