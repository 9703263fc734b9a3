"""A run's metrics: JSON-lines files that survive a crash, and optional
TensorBoard event files.

`metrics.jsonl` holds one record per epoch, `steps.jsonl` one per
`--log-every` steps; `tensorboard/` (with `--tensorboard`) holds the same
scalars as event files, written by tensorboardX (no TensorFlow needed).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Optional

TENSORBOARD_HINT = ("--tensorboard writes through tensorboardX, which is not "
                    "installed: pip install 'cutmix-jax[tensorboard]' (or "
                    "tensorboardX).")


class MetricsError(ValueError):
  """A metrics file damaged other than by a crash while writing it."""


def read(path: str) -> list[dict[str, Any]]:
  """The records of a JSON-lines file.

  A crash can leave only the last line torn (each record is one line,
  written and flushed at once): such a line is dropped with a warning.

  Raises:
    MetricsError: a line other than the last is not a JSON record.
  """
  with open(path) as f:
    lines = [line for line in f.read().split("\n") if line.strip()]
  records = []
  for number, line in enumerate(lines, start=1):
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError as e:
      if number < len(lines):
        raise MetricsError(
            f"{path}, line {number}, is not a JSON record ({e}); only the "
            "last line can be torn by a crash. Fix or delete that line.") \
            from None
      logging.warning("%s: dropped its last line, torn by a crash while it "
                      "was written: %r", path, line[:80])
  return records


class JsonLines:
  """Records in a JSON-lines file, kept consistent with the checkpoints.

  Opening a resumed run's file keeps the records up to the restored step
  (the later ones will be recomputed) and drops a torn last line, then
  rewrites the file atomically (a temporary file renamed over it). Each
  record is then appended as one line and flushed to the disk at once.

  Args:
    path: the file.
    restored_step: the step the run resumes from (0: a new run, which
      starts the file empty).
    write: False on processes other than 0: records are kept in memory only.
  """

  def __init__(self, path: str, restored_step: int, write: bool = True):
    self.path = path
    self.write = write
    self.records: list[dict[str, Any]] = []
    if not write:
      return
    if restored_step and os.path.exists(path):
      self.records = [r for r in read(path) if r["step"] <= restored_step]
    with open(path + ".tmp", "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in self.records)
    os.replace(path + ".tmp", path)

  def append(self, record: dict[str, Any]) -> None:
    self.records.append(record)
    if not self.write:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
      f.flush()
      os.fsync(f.fileno())


def require_tensorboard() -> None:
  """Raises ImportError with an install hint if tensorboardX is missing."""
  try:
    import tensorboardX  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    raise ImportError(TENSORBOARD_HINT) from e


class TensorBoard:
  """Scalars as TensorBoard event files in `logdir`.

  A resumed run hides the events after its restored step that the run
  before wrote (TensorBoard's `purge_step`): they are written again.

  Args:
    logdir: the directory of the event files.
    restored_step: the step the run resumes from (0: a new run).
  """

  def __init__(self, logdir: str, restored_step: int):
    import tensorboardX  # pylint: disable=g-import-not-at-top
    self._writer = tensorboardX.SummaryWriter(
        logdir, purge_step=restored_step + 1 if restored_step else None)

  def write(self, group: str, record: dict[str, Any]) -> None:
    """Each number of `record` as scalar `<group>/<key>` at its 'step'."""
    for key, value in record.items():
      if key not in ("step", "epoch") and isinstance(value, (int, float)):
        self._writer.add_scalar(f"{group}/{key}", value, record["step"])

  def close(self) -> None:
    self._writer.close()


class Logs:
  """The run's metrics files: epochs, steps and (optionally) TensorBoard.

  Args:
    workdir: the run directory.
    restored_step: the step the run resumes from (0: a new run).
    write: whether this process writes files (process 0).
    tensorboard: also write TensorBoard event files.
  """

  def __init__(self, workdir: str, restored_step: int, write: bool,
               tensorboard: bool):
    self.epochs = JsonLines(os.path.join(workdir, "metrics.jsonl"),
                            restored_step, write)
    self.steps = JsonLines(os.path.join(workdir, "steps.jsonl"),
                           restored_step, write)
    self._board: Optional[TensorBoard] = (
        TensorBoard(os.path.join(workdir, "tensorboard"), restored_step)
        if tensorboard and write else None)

  def epoch(self, record: dict[str, Any]) -> None:
    self.epochs.append(record)
    if self._board:
      self._board.write("epoch", record)

  def step(self, record: dict[str, Any]) -> None:
    self.steps.append(record)
    if self._board:
      self._board.write("train", record)

  def close(self) -> None:
    if self._board:
      self._board.close()
