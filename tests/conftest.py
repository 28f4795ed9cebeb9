"""Shared pytest setup. Keep this small; helpers live in tests/helpers_*.py."""
import sys
from pathlib import Path

# Let test modules `import helpers_frontend` under any --import-mode.
sys.path.insert(0, str(Path(__file__).parent))

import os  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def kernel_cache(tmp_path_factory):
    """A fresh, empty Triton kernel cache (MLC_CACHE_DIR) for one test module, so
    kernels compile for real and cache hits can be observed."""
    old = os.environ.get("MLC_CACHE_DIR")
    path = tmp_path_factory.mktemp("mlc_cache")
    os.environ["MLC_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("MLC_CACHE_DIR", None)
    else:
        os.environ["MLC_CACHE_DIR"] = old


@pytest.fixture
def cuda_kernel_calls():
    """Tests that lower to jax-triton kernel calls for cuda need JAX's CUDA kernel-call
    serializer. CI installs it (the README's first command), so there it must be found."""
    from mlc.backends.triton import jax_call
    why = jax_call.cuda_kernel_calls()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI installs the CUDA kernel-call serializer (README): {why}")
        pytest.skip(why)
