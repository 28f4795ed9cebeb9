"""What SHOULD fuse: a cost model in bytes moved and kernels launched.

A fusion that legality.py allows is scored by what it saves: an intermediate that
no longer leaves the kernel saves a write and a read of its bytes (a graph output
is still written, so only the read is saved); reading a shared value once for two
sibling ops saves one read; and every fusion saves one kernel launch, counted as
LAUNCH_BYTES of traffic (a launch costs a few microseconds, about what a GPU moves
in that time). Candidates are tried best first. A fusion is declined when the
merged kernel would be too large to compile well (ops, distinct input tensors:
register pressure and compile time grow with both), or when it saves nothing.

Sizes use NOMINAL_BATCH for the batch dimension "B": the numbers rank choices
and explain them; they are not measurements.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlc.ir.graph import TensorType

NOMINAL_BATCH = 1024
LAUNCH_BYTES = 16 * 1024
MAX_OPS = 32
MAX_INPUTS = 12


def nbytes(t: TensorType) -> int:
    n = int(np.prod([NOMINAL_BATCH if isinstance(d, str) else d for d in t.shape], dtype=np.int64))
    return 4 * n


@dataclass(frozen=True)
class Benefit:
    bytes_saved: int
    kernels_saved: int

    @property
    def score(self) -> int:
        return self.bytes_saved + LAUNCH_BYTES * self.kernels_saved


def vertical(producer_type: TensorType, producer_is_output: bool) -> Benefit:
    """Fusing a producer into its consumer's kernel."""
    b = nbytes(producer_type)
    return Benefit(b if producer_is_output else 2 * b, 1)


def sibling(shared_type: TensorType) -> Benefit:
    """Fusing two kernels that read the same value."""
    return Benefit(nbytes(shared_type), 1)


def decline(benefit: Benefit, n_ops: int, n_inputs: int) -> str | None:
    """None if the fusion is worth it, else why not."""
    if n_ops > MAX_OPS:
        return f"the fused kernel would have {n_ops} ops (limit {MAX_OPS}): too large to compile well"
    if n_inputs > MAX_INPUTS:
        return f"the fused kernel would read {n_inputs} tensors (limit {MAX_INPUTS}): too many live inputs"
    if benefit.score <= 0:
        return "fusing saves nothing"
    return None


def human(nb: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nb < 1024 or unit == "GiB":
            return f"{nb:.0f} {unit}" if unit == "B" else f"{nb:.1f} {unit}"
        nb /= 1024
    return str(nb)
