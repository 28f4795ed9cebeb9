"""Devices for training: the mesh, the shardings, and multi-process start-up.

Training is data parallel on a `jax.sharding.Mesh` with two axes, `data` and `model`:
each step's global batch is split over `data`, parameters are replicated, except
embedding tables of EMBED_SHARD_MIN_BYTES or more, whose rows are split over `model`
(so a table too large for one device fits on several). XLA inserts the collectives
(the gradient all-reduce, the gathers of a sharded table); nothing here is hand-written.

Why this shape: the training rows live replicated on every device (the whole-epoch
path is only taken when they fit), so each device gathers its own slice of every
batch locally and only gradients cross devices. The batch, the shuffling and the
number of steps are those of a single device, so the result does not depend on the
device count beyond floating-point reduction order.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from mlc.diagnostics import UserError

# An embedding table this large is split by rows over the `model` axis; smaller ones are
# replicated (an all-gather per step would cost more than the memory it saves).
# MLC_SHARD_MIN_BYTES overrides it (the tests shard a small table this way).
EMBED_SHARD_MIN_BYTES = 256 << 20


def shard_min_bytes() -> int:
    value = os.environ.get("MLC_SHARD_MIN_BYTES")
    return int(value) if value else EMBED_SHARD_MIN_BYTES


@dataclass
class Layout:
    """Where training runs: the mesh and the reasons for its shape (for `mlc explain`)."""
    mesh: object  # jax.sharding.Mesh
    sharded: dict  # parameter name -> reason it is split over `model`
    reason: str  # why the mesh has this shape
    split_axis: dict = None  # parameter name -> the axis split over `model` (0 rows, 1 columns)

    @property
    def data_size(self) -> int:
        return self.mesh.shape["data"]

    @property
    def model_size(self) -> int:
        return self.mesh.shape["model"]

    def param_sharding(self, name: str):
        from jax.sharding import NamedSharding, PartitionSpec as P
        if name not in self.sharded:
            return NamedSharding(self.mesh, P())
        return NamedSharding(self.mesh, P("model", None) if self.split_axis[name] == 0 else P(None, "model"))

    def replicated(self):
        from jax.sharding import NamedSharding, PartitionSpec as P
        return NamedSharding(self.mesh, P())

    def batch(self):
        from jax.sharding import NamedSharding, PartitionSpec as P
        return NamedSharding(self.mesh, P("data"))


def distributed_init(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """Join a multi-process run (`--coordinator HOST:PORT --num-processes N --process-id I`).
    coordinator "auto": JAX reads what the cluster launcher set (SLURM, Open MPI, Cloud TPU,
    JAX_COORDINATOR_ADDRESS...). Must run before anything touches a device."""
    import jax
    if coordinator is None:
        return
    if jax.distributed.is_initialized():
        return
    # On CPU the cross-process collectives need an implementation; gloo ships with jaxlib.
    platforms = os.environ.get("JAX_PLATFORMS", "")
    if platforms in ("cpu", ""):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        if coordinator == "auto":
            jax.distributed.initialize()
        else:
            if num_processes is None or process_id is None:
                raise UserError("--coordinator needs --num-processes and --process-id")
            if not 0 <= process_id < num_processes:
                raise UserError(f"--process-id {process_id} is not in 0..{num_processes - 1}")
            jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                       process_id=process_id, initialization_timeout=120)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - unreachable coordinator, bad address, timeouts
        raise UserError(f"could not join the distributed run at {coordinator}: "
                        f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def process_index() -> int:
    import jax
    return jax.process_index()


def choose_devices(limit: int | None) -> list:
    """The devices to train on: every local device (at most `limit` per process), in every process."""
    import jax
    if limit is not None and limit < 1:
        raise UserError(f"--devices must be 1 or more, not {limit}")
    local = jax.local_device_count()
    if limit is not None and limit > local:
        raise UserError(f"--devices {limit}: this machine has {local} {jax.default_backend()} "
                        f"device{'s' if local != 1 else ''}")
    per = limit or local
    if jax.process_count() == 1:
        return jax.local_devices()[:per]
    by_process: dict = {}
    for d in jax.devices():
        by_process.setdefault(d.process_index, []).append(d)
    return [d for p in sorted(by_process) for d in by_process[p][:per]]


def plan(devices: list, param_bytes: dict, batch_size: int, param_shapes: dict | None = None) -> Layout:
    """The mesh for these devices and parameters. param_bytes: name -> size of each
    parameter; param_shapes: name -> its shape (a table is split along an axis that the
    `model` size divides: its rows if it can, else its columns)."""
    from jax.sharding import Mesh
    n = len(devices)
    limit = shard_min_bytes()
    shapes = param_shapes or {}
    big = {k: b for k, b in param_bytes.items() if k.startswith("embed.") and b >= limit and len(shapes.get(k, ())) == 2}

    def axis(k, m):
        return 0 if shapes[k][0] % m == 0 else 1 if shapes[k][1] % m == 0 else None
    model, note = 1, ""
    if big and n > 1:
        # the fewest devices that bring each table under the limit and split each evenly
        need = max(-(-b // limit) for b in big.values())
        fits = [m for m in range(2, n + 1) if n % m == 0 and all(axis(k, m) is not None for k in big)]
        model = next((m for m in fits if m >= need), fits[-1] if fits else 1)
        if not fits:
            note = f"; {', '.join(big)} cannot be split evenly over a divisor of {n} devices, so replicated"
    mesh = Mesh(np.array(devices).reshape(n // model, model), ("data", "model"))
    split_axis = {k: axis(k, model) for k in big} if model > 1 else {}
    sharded = {k: f"{b / 2**20:.2f} MiB >= {limit / 2**20:g} MiB: {('rows', 'columns')[split_axis[k]]} "
                  f"split over {model} devices" for k, b in big.items()} if model > 1 else {}
    if n == 1:
        reason = "one device"
    else:
        reason = (f"{n} devices: each step's batch of {batch_size} rows split over `data` ({n // model}), "
                  + (f"large embedding tables over `model` ({model})" if model > 1 else "parameters replicated"))
        if batch_size % (n // model):
            reason += f"; {batch_size} is not a multiple of {n // model}, so some devices get one row less"
        reason += note
    return Layout(mesh, sharded, reason, split_axis)


def describe(layout: Layout) -> list[str]:
    """Lines for `mlc explain` and the report: the mesh and each sharded parameter."""
    import jax
    kind = jax.default_backend()
    procs = jax.process_count()
    head = (f"mesh data={layout.data_size} model={layout.model_size} on {kind}"
            + (f" across {procs} processes" if procs > 1 else "") + f": {layout.reason}")
    return [head] + [f"  {k} sharded: {why}" for k, why in layout.sharded.items()]


def summary(layout: Layout) -> dict:
    """Where training ran, for report.json."""
    import jax
    return {"devices": layout.data_size * layout.model_size, "data": layout.data_size,
            "model": layout.model_size, "processes": jax.process_count(), "platform": jax.default_backend(),
            "sharded": dict(layout.sharded), "reason": layout.reason}


def put(x: np.ndarray, sharding):
    """A host array as a global array with this sharding. Every process passes the same
    value and each places only the pieces its own devices hold (works across processes,
    unlike jax.device_put onto devices a process cannot address)."""
    import jax
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def to_host(tree):
    """Numpy values of a tree of global arrays, in every process (a sharded array is
    gathered across processes by XLA's all-gather)."""
    import jax
    from jax.experimental import multihost_utils

    def one(a):
        if not isinstance(a, jax.Array) or a.is_fully_addressable:
            return np.asarray(jax.device_get(a))
        if a.is_fully_replicated:
            return np.asarray(a.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(a, tiled=True))
    return jax.tree.map(one, tree)


def local(tree):
    """The tree on this process's first device, for evaluation there: a replicated array
    is its local copy (no transfer), a sharded one is gathered."""
    import jax

    def one(a):
        if isinstance(a, jax.Array) and len(a.sharding.device_set) > 1 and a.is_fully_replicated:
            return a.addressable_data(0)
        if isinstance(a, jax.Array) and len(a.sharding.device_set) > 1:
            return to_host(a)
        return a
    return jax.tree.map(one, tree)


def param_bytes(graph) -> dict:
    """name -> bytes of each parameter of a lowered graph (float32)."""
    return {k: int(np.prod(p.type.shape)) * 4 for k, p in graph.params.items()}


def layout_for(graph, devices: int | None, batch_size: int) -> Layout:
    """The layout `mlc run --devices N` trains this graph on."""
    return plan(choose_devices(devices), param_bytes(graph), batch_size,
                {k: tuple(p.type.shape) for k, p in graph.params.items()})


def spread(tree, layout: Layout):
    """Leaves left on one device (an optimizer's step count, made from no input) replicated
    over the mesh, so that every argument of the training program lives on the same devices."""
    import jax
    mesh_devices = set(layout.mesh.devices.flat)

    def one(a):
        if isinstance(a, jax.Array) and set(a.sharding.device_set) != mesh_devices:
            return put(np.asarray(a.addressable_data(0)), layout.replicated())
        return a
    return jax.tree.map(one, tree)


def agree(flag: bool) -> bool:
    """Process 0's value of `flag` in every process (a decision all of them must take together,
    such as writing a checkpoint); the flag itself in a one-process run."""
    import jax
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils
    return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag)))


def explain_training(checked, resolved, state, devices: int | None = None) -> str:
    """`mlc explain`'s closing comments: the devices and mesh training would use, and why,
    each sharded parameter, and whether the data is read whole or streamed (comments, so the
    printed program stays valid .dml)."""
    from mlc.ir.lower import lower
    graph = lower(resolved, state)
    layout = layout_for(graph, devices, resolved.train["batch_size"])
    lines = ["", "# training layout (mlc run; docs/scaling.md):"] + [f"#   {x}" for x in describe(layout)]
    from mlc.passes.check_data import data_path
    from mlc.runtime import stream
    streamed, why = stream.choose(data_path(checked))
    lines.append(f"#   data {why}" + ("" if streamed else "; streamed when larger (runtime/stream.py)"))
    if not layout.sharded:
        big = max(param_bytes(graph).items(), key=lambda kv: kv[1], default=("", 0))
        if big[0]:
            lines.append(f"#   parameters replicated: the largest, {big[0]} ({big[1] / 2**20:.2f} MiB), is under "
                         f"{shard_min_bytes() / 2**20:g} MiB, the size from which an embedding table is split")
    return "\n".join(lines) + "\n"
