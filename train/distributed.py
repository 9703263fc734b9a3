"""Multi-process runs with `jax.distributed`: joining one, and each process's
share of a global batch.

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
