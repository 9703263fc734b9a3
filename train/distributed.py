"""Multi-process runs with `jax.distributed`: joining one, each process's
share of a global batch, and the placement of state and batches on the
devices of all processes (`Parallel`).

A multi-process run is one SPMD program: every process runs the same Python
code, and the jitted steps span `jax.devices()` of all processes. Each
process loads only the rows of a global batch that its own devices hold, and
`jax.make_array_from_process_local_data` assembles the global array.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

# The mapped axis of `--parallel pmap`.
PMAP_AXIS = "batch"

# The trainer's own environment variables for the explicit flags
# (JAX_COORDINATOR_ADDRESS is also read by jax.distributed itself).
ENV = {"coordinator_address": "JAX_COORDINATOR_ADDRESS",
       "num_processes": "JAX_NUM_PROCESSES",
       "process_id": "JAX_PROCESS_ID"}


def _launched_by_cluster() -> bool:
  """A multi-task SLURM step (srun) or an Open MPI launch (mpirun)."""
  slurm = ("SLURM_STEP_NODELIST" in os.environ
           and int(os.environ.get("SLURM_NTASKS", "1")) > 1)
  ompi = (int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
          or "OMPI_MCA_orte_hnp_uri" in os.environ)
  return slurm or ompi


def launch_settings(cfg) -> dict:
  """The explicit `jax.distributed.initialize` arguments: flags first, then
  their environment variables; None where neither is set."""
  out = {}
  for name, env in ENV.items():
    value = getattr(cfg, name)
    if value is None and os.environ.get(env):
      value = os.environ[env]
    out[name] = (int(value) if value is not None and name != "coordinator_address"
                 else value)
  return out


def maybe_initialize(cfg) -> bool:
  """Joins a multi-process run if one is configured; returns whether it did.

  `cfg.distributed` True always calls `jax.distributed.initialize()` (with
  JAX's own detection of TPU pods, SLURM and Open MPI for what the flags do
  not give); False never does; None (auto) does when an explicit setting is
  given or the process was started by `srun` or `mpirun` with several tasks.
  Must run before anything touches a device.
  """
  if jax.distributed.is_initialized() or not wanted(cfg):
    return False
  jax.distributed.initialize(**launch_settings(cfg))
  return True


def wanted(cfg) -> bool:
  """Whether `maybe_initialize` would call `jax.distributed.initialize()`."""
  if cfg.distributed is not None:
    return cfg.distributed
  settings = launch_settings(cfg)
  if settings["num_processes"] == 1:  # explicitly one process: nothing to join
    return False
  return (any(v is not None for v in settings.values())
          or _launched_by_cluster())


def is_main() -> bool:
  """Process 0: the one that prints and writes files."""
  return jax.process_index() == 0


def any_process(flag: bool) -> bool:
  """Whether `flag` holds in any process; every process must call this at
  the same point (it is a collective in a multi-process run)."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(np.any(multihost_utils.process_allgather(np.bool_(flag))))


def local_rows(
    sharding: jax.sharding.Sharding,
    batch_size: int,
    process_index: Optional[int] = None,
    process_of: Callable[[jax.Device], int] = lambda d: d.process_index,
) -> np.ndarray:
  """The rows of a `[batch_size, ...]` global batch that one process loads.

  They are the rows its devices hold under `sharding`, in increasing order:
  exactly the layout `jax.make_array_from_process_local_data` expects of the
  process-local data. For the trainer's 1-D batch mesh this is one contiguous
  block per process; any device order of the mesh works.

  Args:
    sharding: the batch sharding (over the devices of every process).
    batch_size: the global batch size.
    process_index: the process (default: this one).
    process_of: maps a device to its process (tests pass a fake mapping).

  Returns:
    int64 indices into the global batch, sorted, without duplicates.
  """
  if process_index is None:
    process_index = jax.process_index()
  rows = set()
  for device, index in sharding.devices_indices_map((batch_size,)).items():
    if process_of(device) == process_index:
      rows.update(range(batch_size)[index[0]])
  return np.array(sorted(rows), np.int64)


class Parallel:
  """Placement of state and batches for `--parallel jit` or `pmap`."""

  def __init__(self, kind: str):
    self.kind = kind
    # Every device of every process: under jax.distributed the mesh spans
    # all hosts, and each step is one global program.
    self.n = jax.device_count()
    self.processes = jax.process_count()
    axis = "data" if kind == "jit" else PMAP_AXIS
    # Auto axes: XLA propagates the batch sharding through the step. (The
    # default Explicit axes would make every op's sharding part of its type.)
    self.mesh = jax.make_mesh((self.n,), (axis,),
                              axis_types=(jax.sharding.AxisType.Auto,))
    self.data = NamedSharding(self.mesh, P(axis))
    self.replicated = NamedSharding(self.mesh, P())

  def rows(self, batch_size: int) -> Optional[np.ndarray]:
    """The rows of each global batch this process loads (None: all of them,
    in a single-process run)."""
    if self.processes == 1:
      return None
    return local_rows(self.data, batch_size)

  def put_batch(self, x: np.ndarray) -> jax.Array:
    """Splits a batch over the devices (asynchronously).

    In a single-process run `x` is the global batch. In a multi-process run it
    is this process's rows of it (`rows`), and the global array is assembled
    from every process's share without any process holding all of it.
    """
    if self.kind == "pmap":
      x = x.reshape((self.n, -1) + x.shape[1:])
    if self.processes > 1:
      return jax.make_array_from_process_local_data(self.data, x)
    return jax.device_put(x, self.data)

  def local_rows_of(self, x: jax.Array) -> np.ndarray:
    """This process's rows of a batch-sharded array, as NumPy (all of it in a
    single-process run)."""
    if self.processes == 1:
      return np.asarray(x)
    shards = {s.index[0].start or 0: s.data for s in x.addressable_shards}
    return np.concatenate([np.asarray(shards[k]) for k in sorted(shards)])

  def put_state(self, state):
    """Replicates a host state: one sharded copy (jit) or one per device."""
    if self.kind == "jit" and self.processes > 1:
      # Every process holds the same state (same seed, or the same
      # checkpoint); each puts its copy on its own devices.
      def put(x):
        if isinstance(x, jax.Array) and x.sharding == self.replicated:
          return x
        x = np.asarray(jax.device_get(x))
        return jax.make_array_from_process_local_data(self.replicated, x,
                                                      x.shape)
      return jax.tree.map(put, state)
    if self.kind == "jit":
      return jax.device_put(state, self.replicated)
    stack = lambda x: np.broadcast_to(x, (self.n,) + np.shape(x))
    return jax.device_put(jax.tree.map(stack, jax.device_get(state)), self.data)

  def unreplicate(self, tree):
    """One copy of replicated values (pmap keeps one per device)."""
    return tree if self.kind == "jit" else jax.tree.map(lambda x: x[0], tree)

  def compile(self, train_step, eval_step):
    """Jitted (or pmapped) train and eval steps; the state is donated."""
    if self.kind == "jit":
      train = jax.jit(
          train_step,
          in_shardings=(self.replicated, self.data, self.data, self.replicated),
          out_shardings=(self.replicated, self.replicated),
          donate_argnums=0,
      )
      evaluate = jax.jit(
          eval_step,
          in_shardings=(self.replicated, self.data, self.data, self.data),
          out_shardings=self.replicated,
      )
      return train, evaluate
    train = jax.pmap(train_step, axis_name=PMAP_AXIS, in_axes=(0, 0, 0, None),
                     donate_argnums=0)
    evaluate = jax.pmap(eval_step, axis_name=PMAP_AXIS)
    return train, evaluate
