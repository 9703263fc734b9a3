"""Orbax checkpoints of the training state and the data loader's state,
robust to interrupted saves."""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Optional

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

# The items of a step: the training state ("default", the folder a
# single-item checkpoint uses, so older checkpoints still restore), the
# data loader's iterator state, when it has one (Grain), and the trainer's
# progress within the epoch (JSON: the losses of the epoch's steps so far).
_STATE, _LOADER, _PROGRESS = "default", "loader", "progress"
# Written when a save is finalised: the step's metadata and the state's tree.
_COMPLETE_MARKERS = ("_CHECKPOINT_METADATA", os.path.join(_STATE, "_METADATA"))


class CheckpointError(RuntimeError):
  """A complete checkpoint that does not fit the current run's state."""


def _key_name(k) -> str:
  # Dict keys, sequence indices and named-tuple fields (optax states), which
  # the saved metadata stores as dict keys.
  for attr in ("key", "idx", "name"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def _describe(tree) -> dict[str, tuple]:
  """`{'params/conv/kernel': (shape, dtype)}` for every leaf of a state."""
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {"/".join(_key_name(k) for k in path):
          (tuple(leaf.shape), str(leaf.dtype)) for path, leaf in flat}


def structure_diff(saved, target, limit: int = 5) -> list[str]:
  """What differs between a saved state and the one the run expects: missing
  and unexpected leaves, and other shapes or dtypes (at most `limit` each)."""
  a, b = _describe(saved), _describe(target)
  missing = sorted(set(b) - set(a))
  extra = sorted(set(a) - set(b))
  changed = sorted(k for k in set(a) & set(b) if a[k] != b[k])
  out = []
  if missing:
    out.append(f"not in the checkpoint: {', '.join(missing[:limit])}"
               + (f" (+{len(missing) - limit} more)" if len(missing) > limit
                  else ""))
  if extra:
    out.append(f"not in this run's state: {', '.join(extra[:limit])}"
               + (f" (+{len(extra) - limit} more)" if len(extra) > limit
                  else ""))
  for k in changed[:limit]:
    out.append(f"{k}: saved {a[k][0]} {a[k][1]}, expected {b[k][0]} {b[k][1]}")
  return out


def _process_0_decides(due: bool) -> bool:
  """Process 0's decision in every process: a save is collective, so all
  processes must take it together, and their clocks differ."""
  if jax.process_count() == 1:
    return due
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(multihost_utils.broadcast_one_to_all(np.bool_(due)))


class SavePolicy:
  """When to save: every `every` steps, but only once `minutes` have passed
  since the last save (whichever is rarer), and always at `last_step`.

  Args:
    every: steps between considered saves (the trainer's default: an epoch).
    minutes: the least time between saves (0: save every `every` steps).
    last_step: the step that is always saved.
    clock: seconds, monotonic (tests pass a fake one).
    agree: makes the processes agree on a decision (tests pass identity).
  """

  def __init__(self, every: int, minutes: float, last_step: int,
               clock: Callable[[], float] = time.monotonic,
               agree: Callable[[bool], bool] = _process_0_decides):
    self.every, self.seconds, self.last_step = every, minutes * 60, last_step
    self._clock, self._agree = clock, agree
    self._last_save = clock()

  def should_save(self, step: int) -> bool:
    if step == self.last_step:
      return True
    if step % self.every:
      return False
    return self._agree(self._clock() - self._last_save >= self.seconds)

  def saved(self) -> None:
    self._last_save = self._clock()


class _Frozen:
  """A loader's state when the save was asked for: the loader reads on
  while Orbax finishes the save."""

  def __init__(self, state: bytes):
    self._state = state

  def get_state(self) -> bytes:
    return self._state


class Checkpointer:
  """Saves the state and restores the newest complete checkpoint.

  A step may also hold a data loader's state, saved and restored by Grain's
  Orbax handler: one JSON file per process, `loader/process_<i>-of-<n>.json`.

  Orbax writes each step into a temporary directory and renames it into
  place only once complete, so a save killed half-way leaves a
  `<step>.orbax-checkpoint-tmp-*` folder that is never listed as a step (and
  is deleted on the next start). A step folder without the files that a
  finalised save writes is skipped with a warning, in favour of the one
  before. Anything else (a complete checkpoint of another structure, a read
  error) stops the run: silently starting over would discard the training.

  Args:
    directory: where the step folders live.
    max_to_keep: how many recent checkpoints to keep.
  """

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True)
    # The handlers, stated up front: otherwise orbax infers the item layout
    # from the newest step folder, and a broken one would make every step
    # unreadable.
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={_STATE: ocp.StandardCheckpointHandler(),
                       _LOADER: grain.checkpoint.CheckpointHandler(),
                       _PROGRESS: ocp.JsonCheckpointHandler()})

  def save(self, step: int, state: Any, loader: Any = None,
           progress: Optional[dict[str, Any]] = None) -> None:
    """Starts an asynchronous save; training continues meanwhile.

    Args:
      step: the global step.
      state: the training state.
      loader: a data loader with Grain's `get_state() -> bytes` (the state
        after `step` batches), or None.
      progress: JSON-able host values that the state does not hold (the
        trainer's running epoch losses), or None.
    """
    items = {_STATE: ocp.args.StandardSave(state)}
    if loader is not None:
      items[_LOADER] = grain.checkpoint.CheckpointSave(
          _Frozen(loader.get_state()))
    if progress is not None:
      items[_PROGRESS] = ocp.args.JsonSave(progress)
    self._manager.save(step, args=ocp.args.Composite(**items), force=True)

  def _complete(self, step: int) -> bool:
    folder = os.path.join(self.directory, str(step))
    return all(os.path.exists(os.path.join(folder, m))
               for m in _COMPLETE_MARKERS)

  def restore_latest(self, target: Any, loader: Any = None
                     ) -> Optional[tuple[int, Any, Optional[dict[str, Any]]]]:
    """Restores the newest complete checkpoint into `target`'s structure.

    Args:
      target: a pytree of `jax.ShapeDtypeStruct` (with shardings) or arrays
        describing the state.
      loader: a data loader whose saved state is restored into it (Grain's
        `set_state`), then checked by `loader.check(step, path)`, which
        lists what does not fit; or None.

    Returns:
      `(step, state, progress)`, or None if there is no complete checkpoint;
      `progress` is what `save` was given, or None where it was given none
      (checkpoints of older trainers too).

    Raises:
      CheckpointError: the newest complete checkpoint has another structure
        (leaves, shapes or dtypes) than `target`, lacks this process's
        loader state, holds one that does not fit, or cannot be read.
    """
    for step in sorted(self._manager.all_steps(), reverse=True):
      if not self._complete(step):
        logging.warning("skipping incomplete checkpoint %s",
                        os.path.join(self.directory, str(step)))
        continue
      path = os.path.join(self.directory, str(step))
      try:
        saved = self._manager.item_metadata(step)[_STATE].tree
      except Exception as e:  # pylint: disable=broad-except
        raise CheckpointError(
            f"cannot read the metadata of checkpoint {path} "
            f"({type(e).__name__}: {e}).") from e
      diff = structure_diff(saved, target)
      if diff:
        raise CheckpointError(
            f"checkpoint {path} does not fit this run's state ("
            + "; ".join(diff) + "). It was written by another version of the "
            "trainer or its libraries, or with other model settings; resume "
            "it with those, or use another --workdir.")
      items = {_STATE: ocp.args.StandardRestore(target)}
      if loader is not None:
        self._check_loader_files(path)
        items[_LOADER] = grain.checkpoint.CheckpointRestore(loader)
      if os.path.isdir(os.path.join(path, _PROGRESS)):
        items[_PROGRESS] = ocp.args.JsonRestore()
      try:
        restored = self._manager.restore(step,
                                         args=ocp.args.Composite(**items))
      except Exception as e:  # pylint: disable=broad-except
        raise CheckpointError(
            f"cannot read checkpoint {path} ({type(e).__name__}: {e}). "
            "Delete that step folder to resume from the one before.") from e
      if loader is not None:
        problems = loader.check(step, path)
        if problems:
          raise CheckpointError(
              f"checkpoint {path} does not fit this run's data loader ("
              + "; ".join(problems) + ").")
      return step, restored[_STATE], restored.get(_PROGRESS)
    return None

  @staticmethod
  def _check_loader_files(path: str) -> None:
    """Stops early if this process's loader state is not in the step."""
    folder = os.path.join(path, _LOADER)
    mine = (f"process_{jax.process_index()}-of-{jax.process_count()}"
            ".json")
    if os.path.exists(os.path.join(folder, mine)):
      return
    if not os.path.isdir(folder):
      raise CheckpointError(
          f"checkpoint {path} holds no data loader state (it was written by "
          "the in-memory loader or an older trainer), which this Grain run "
          "resumes from. Use the loader that wrote it, or another "
          "--workdir.")
    saved = sorted(f for f in os.listdir(folder) if f.endswith(".json"))
    raise CheckpointError(
        f"checkpoint {path} holds the loader state of {', '.join(saved)}, "
        f"not {mine}: a Grain run resumes with as many processes as it was "
        "saved with.")

  def close(self) -> None:
    """Waits for pending saves to finish."""
    self._manager.wait_until_finished()
    self._manager.close()
