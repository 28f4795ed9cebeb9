"""Which platform JAX runs on: the accelerator it finds, by default.

`mlc run`, `mlc predict`, `mlc serve` and `mlc.load` leave the choice to JAX (a GPU or TPU
when one is there, else the CPU). `--device cpu` or `MLC_DEVICE=cpu` forces the CPU;
`--device gpu` / `tpu` insists on one (an error, not a quiet fallback, when it is missing).
A JAX_PLATFORMS set by the user is respected as it is.

The one case handled quietly: JAX's CUDA plugin installed on a machine without an NVIDIA
driver (a laptop, a CI runner with `jax[cuda12]` in its lock file). JAX would try CUDA on
every start and print driver warnings; there we run on the CPU directly. Every other
accelerator stays visible, so a machine with a GPU never trains on the CPU silently.

Nothing here imports jax unless it is already imported (then the setting goes through
jax.config, which works until the first device is touched).
"""
from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path

from mlc.diagnostics import UserError

DEVICE_ENV = "MLC_DEVICE"
CHOICES = ("auto", "cpu", "gpu", "tpu")


def nvidia_driver_present() -> bool:
    return Path("/proc/driver/nvidia/version").exists() or any(Path("/dev").glob("nvidia[0-9]*"))


def cuda_plugin_installed() -> bool:
    """JAX finds its plugins through the `jax_plugins` entry points (jax-cuda12-plugin registers one)."""
    try:
        names = {ep.name for ep in metadata.entry_points(group="jax_plugins")}
    except Exception:  # noqa: BLE001 - broken metadata of some other package: assume none
        return False
    return any("cuda" in name for name in names)


def platforms_for(device: str | None, environ: dict | None = None) -> str | None:
    """The JAX_PLATFORMS value for a --device choice, or None to leave JAX's default alone."""
    env = os.environ if environ is None else environ
    choice = (device or env.get(DEVICE_ENV) or "auto").strip().lower()
    if choice not in CHOICES:
        source = "--device" if device else DEVICE_ENV
        raise UserError(f"{source} {choice!r} is not a device; use one of {', '.join(CHOICES)}")
    if choice == "cpu":
        return "cpu"
    if choice in ("gpu", "tpu"):
        return choice
    if env.get("JAX_PLATFORMS"):  # the user's own setting
        return None
    if cuda_plugin_installed() and not nvidia_driver_present():
        return "cpu"
    return None


def select(device: str | None = None) -> None:
    """Apply a --device choice before the first device is touched."""
    platforms = platforms_for(device)
    if platforms is None:
        return
    os.environ["JAX_PLATFORMS"] = platforms
    if "jax" in sys.modules:  # jax reads JAX_PLATFORMS at import; later changes go through its config
        sys.modules["jax"].config.update("jax_platforms", platforms)


def cpu_only() -> bool:
    """Whether JAX can only run on the CPU in this process, decided without importing JAX
    when it is not imported yet: JAX_PLATFORMS says cpu (as --device cpu sets it), or no
    accelerator plugin is installed (JAX finds GPUs and TPUs only through the `jax_plugins`
    entry points or namespace, and libtpu). Where JAX is imported, its default backend says."""
    platforms = os.environ.get("JAX_PLATFORMS", "").strip().lower()
    if platforms:
        return platforms == "cpu"
    if "jax" in sys.modules:
        return sys.modules["jax"].default_backend() == "cpu"
    from importlib.util import find_spec
    try:
        plugins = list(metadata.entry_points(group="jax_plugins"))
    except Exception:  # noqa: BLE001 - unreadable metadata: assume an accelerator may be there
        return False
    return not plugins and find_spec("jax_plugins") is None and find_spec("libtpu") is None


def check_available(device: str | None) -> None:
    """For an explicit --device gpu/tpu: a clear error when JAX cannot start that platform."""
    choice = (device or os.environ.get(DEVICE_ENV) or "auto").strip().lower()
    if choice not in ("gpu", "tpu"):
        return
    import jax
    try:
        jax.devices(choice)
    except RuntimeError as e:
        first = (str(e).splitlines()[0] if str(e) else type(e).__name__).split(" (set JAX_PLATFORMS")[0]
        raise UserError(f"--device {choice}: JAX finds no {choice} here ({first}); "
                        f"use --device cpu, or install jax with {choice} support") from None
