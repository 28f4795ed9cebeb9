"""The device mlc runs on: JAX's own choice by default, --device / MLC_DEVICE to force one."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers_frontend import cli_env
from mlc import accelerator
from mlc.diagnostics import UserError


def test_default_leaves_the_choice_to_jax_and_cpu_forces_the_cpu():
    assert accelerator.platforms_for(None, {}) is None  # no CUDA plugin here: JAX picks
    assert accelerator.platforms_for("cpu", {}) == "cpu"
    assert accelerator.platforms_for(None, {"MLC_DEVICE": "cpu"}) == "cpu"
    assert accelerator.platforms_for("gpu", {"MLC_DEVICE": "cpu"}) == "gpu"  # the flag wins
    assert accelerator.platforms_for(None, {"JAX_PLATFORMS": "cuda"}) is None  # the user's own setting
    with pytest.raises(UserError, match="MLC_DEVICE 'cuda0' is not a device; use one of auto, cpu, gpu, tpu"):
        accelerator.platforms_for(None, {"MLC_DEVICE": "cuda0"})


def test_cuda_plugin_without_a_driver_runs_on_the_cpu_quietly(tmp_path):
    """A real installed distribution (metadata only) registering a CUDA jax plugin."""
    dist = tmp_path / "jax_cuda99_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: jax-cuda99-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[jax_plugins]\nxla_cuda99 = jax_cuda99_plugin\n")
    code = "from mlc import accelerator as a; print(a.cuda_plugin_installed(), a.platforms_for(None, {}))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    expected = "True None" if accelerator.nvidia_driver_present() else "True cpu"
    assert out.stdout.strip() == expected, out.stderr


def test_cpu_only_is_known_without_importing_jax(tmp_path):
    """The numpy back end serves a few rows only where JAX could not use an accelerator:
    JAX_PLATFORMS=cpu, or no accelerator plugin installed; a plugin (entry point) or a
    JAX_PLATFORMS naming another platform turns it off. Nothing imports JAX to decide."""
    code = "import sys; from mlc import accelerator as a; print(a.cpu_only(), 'jax' in sys.modules)"
    base = {k: v for k, v in os.environ.items() if k not in ("JAX_PLATFORMS", "PYTHONPATH")}

    def ask(extra_path=None, **env):
        paths = ([str(extra_path)] if extra_path else []) + sys.path
        out = subprocess.run([sys.executable, "-c", code], env={**base, **env, "PYTHONPATH": os.pathsep.join(paths)},
                             capture_output=True, text=True, timeout=60)
        return out.stdout.strip() or out.stderr
    assert ask(JAX_PLATFORMS="cpu") == "True False"
    assert ask(JAX_PLATFORMS="cuda") == "False False"
    plain = ask()
    assert plain.endswith("False")
    if plain == "True False":  # this machine has no accelerator plugin: one installed turns the path off
        dist = tmp_path / "jax_tpu99_plugin-1.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: jax-tpu99-plugin\nVersion: 1.0\n")
        (dist / "entry_points.txt").write_text("[jax_plugins]\nxla_tpu99 = jax_tpu99_plugin\n")
        assert ask(tmp_path) == "False False"


def test_device_flag_on_the_command_line(tmp_path):
    env = {k: v for k, v in cli_env().items() if k != "JAX_PLATFORMS"}
    bad = subprocess.run([sys.executable, "-m", "mlc.cli", "explain", "examples/titanic.dml", "--device", "tpu"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "error: --device tpu: JAX finds no tpu here" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr
    ok = subprocess.run([sys.executable, "-m", "mlc.cli", "explain", "examples/titanic.dml", "--device", "cpu"],
                        env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    env_bad = subprocess.run([sys.executable, "-m", "mlc.cli", "check", "examples/titanic.dml"],
                             env={**env, "MLC_DEVICE": "quantum"}, capture_output=True, text=True, timeout=120)
    assert env_bad.returncode == 2 and "MLC_DEVICE 'quantum' is not a device" in env_bad.stderr
