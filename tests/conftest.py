"""Shared pytest setup. Keep this small; helpers live in tests/helpers_*.py."""
import sys
from pathlib import Path

# Let test modules `import helpers_frontend` under any --import-mode.
sys.path.insert(0, str(Path(__file__).parent))

import os  # noqa: E402

import pytest  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


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


@pytest.fixture(scope="session")
def example_run(tmp_path_factory):
    """example_run(name) -> (report, folder): `mlc run examples/NAME.dml` with seed 0 and the
    program's defaults, trained once per session and shared by every module that only reads
    it (report.json, model.mlc), since each full run costs seconds of compiling and training.
    A test may add files of its own to the folder, never change or remove what the run wrote."""
    from mlc.runtime.run import run
    done = {}

    def get(name: str):
        if name not in done:
            folder = tmp_path_factory.mktemp(f"example_{name}")
            done[name] = (run(EXAMPLES / f"{name}.dml", folder, seed=0, log=lambda m: None), folder)
        return done[name]
    return get


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
