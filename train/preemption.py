"""Preemption: SIGTERM (a scheduler's notice) and SIGINT (Ctrl-C) stop a run
at a step boundary, after a checkpoint, instead of killing it."""

from __future__ import annotations

import signal
import threading
from typing import Optional

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Signals:
  """While active (a context manager), SIGTERM and SIGINT are recorded in
  `received` for the training loop to act on; a second one stops the process
  at once (KeyboardInterrupt). Only the main thread can receive signals: in
  another thread this does nothing."""

  def __init__(self):
    self.received: Optional[int] = None
    self._previous = {}

  def _handle(self, signum, frame) -> None:
    del frame
    if self.received is not None:
      raise KeyboardInterrupt
    self.received = signum

  def __enter__(self) -> "Signals":
    if threading.current_thread() is threading.main_thread():
      for signum in SIGNALS:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}


def name(signum: Optional[int]) -> str:
  """'SIGTERM', 'SIGINT', or a phrase for a signal another process got."""
  if signum is None:
    return "a signal to another process of the run"
  return signal.Signals(signum).name
