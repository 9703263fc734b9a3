"""Orbax checkpoints of the training state, robust to interrupted saves."""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

import orbax.checkpoint as ocp


class Checkpointer:
  """Saves the state every N steps and restores the newest readable one.

  Orbax writes each step into a temporary directory and renames it into
  place only once complete, so a save killed half-way leaves a
  `<step>.orbax-checkpoint-tmp-*` folder that is never listed as a step (and
  is deleted on the next start). A finalised step that still cannot be read
  (say, a disk error) is skipped with a warning in favour of the one before.

  Args:
    directory: where the step folders live.
    max_to_keep: how many recent checkpoints to keep.
  """

  def __init__(self, directory: str, max_to_keep: int = 2):
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True)
    # A single-item handler, stated up front: otherwise orbax infers the
    # item layout from the newest step folder, and a broken one would make
    # every step unreadable.
    self._manager = ocp.CheckpointManager(
        os.path.abspath(directory), options=options,
        item_handlers=ocp.StandardCheckpointHandler())

  def save(self, step: int, state: Any) -> None:
    """Starts an asynchronous save; training continues meanwhile."""
    self._manager.save(step, args=ocp.args.StandardSave(state), force=True)

  def restore_latest(self, target: Any) -> Optional[tuple[int, Any]]:
    """Restores the newest readable checkpoint into `target`'s structure.

    Args:
      target: a pytree of `jax.ShapeDtypeStruct` (with shardings) or arrays
        describing the state.

    Returns:
      `(step, state)`, or None if there is no readable checkpoint.
    """
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        return step, self._manager.restore(
            step, args=ocp.args.StandardRestore(target))
      except Exception as e:  # pylint: disable=broad-except
        logging.warning("skipping unreadable checkpoint %d: %s", step, e)
    return None

  def close(self) -> None:
    """Waits for pending saves to finish."""
    self._manager.wait_until_finished()
    self._manager.close()
