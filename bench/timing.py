"""Interleaved timing: each measured call alternates with the copy baseline.

The machine this runs on is shared and noisy, so a ratio is computed per
repetition from a copy timed right before the op, and the median of those
ratios is reported; a burst of load then moves both numerator and
denominator.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable

import jax


def block(out: Any) -> Any:
  """Waits for every array in `out` (JAX arrays; other leaves pass through)."""
  return jax.block_until_ready(out)


@dataclasses.dataclass
class Timed:
  """Per-call seconds for each repetition, and the first-call time."""

  times: list[float]
  ratios: list[float]
  first_call: float | None
  inner: int

  def summary(self) -> dict:
    ms = [t * 1e3 for t in self.times]
    out = {
        "median_ms": statistics.median(ms),
        "min_ms": min(ms),
        "max_ms": max(ms),
        "reps": len(ms),
        "inner": self.inner,
        "ratio": statistics.median(self.ratios) if self.ratios else None,
        "ratio_min": min(self.ratios) if self.ratios else None,
        "ratio_max": max(self.ratios) if self.ratios else None,
        "first_call_ms": (
            None if self.first_call is None else self.first_call * 1e3
        ),
    }
    if self.first_call is not None:
      # Tracing + lowering + compiling, less one steady-state call.
      out["compile_ms"] = max(self.first_call * 1e3 - out["median_ms"], 0.0)
    return out


def _per_call(fn: Callable[[], Any], inner: int) -> float:
  start = time.perf_counter()
  for _ in range(inner):
    block(fn())
  return (time.perf_counter() - start) / inner


def first_call(fn: Callable[[], Any]) -> float:
  start = time.perf_counter()
  block(fn())
  return time.perf_counter() - start


def calibrate(fn: Callable[[], Any], target_s: float, max_inner: int) -> int:
  """Calls per repetition so that one repetition lasts about `target_s`."""
  one = min(_per_call(fn, 1) for _ in range(3))
  if one <= 0:
    return max_inner
  return int(max(1, min(max_inner, round(target_s / one))))


def interleaved(
    baseline: Callable[[], Any],
    fns: dict[str, Callable[[], Any]],
    *,
    reps: int,
    target_s: float,
    max_inner: int = 1000,
    warm: bool = True,
) -> tuple[Timed, dict[str, Timed], dict[str, str]]:
  """Times `fns` and `baseline` in alternation: base, f1, base, f2, ...

  Every function is called once first (compiling it, if jitted: that time is
  kept as `first_call`), then calibrated, then timed `reps` times, each time
  right after a timing of the baseline. Returns the baseline's timings (all
  of them), per function its timings and its ratio to the baseline timed
  just before it in the same repetition, and the error of each function
  whose first call raised.
  """
  firsts = {}
  base_first = first_call(baseline) if warm else None
  failed = {}
  for name, fn in list(fns.items()):
    try:
      firsts[name] = first_call(fn) if warm else None
    except Exception as e:  # pylint: disable=broad-except
      # Reported as a failed row; the rest of the benchmark still runs.
      failed[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
  fns = {name: fn for name, fn in fns.items() if name not in failed}
  base_inner = calibrate(baseline, target_s, max_inner)
  inner = {name: calibrate(fn, target_s, max_inner) for name, fn in fns.items()}
  base_times: list[float] = []
  times = {name: [] for name in fns}
  ratios = {name: [] for name in fns}
  for _ in range(reps):
    for name, fn in fns.items():
      b = _per_call(baseline, base_inner)
      t = _per_call(fn, inner[name])
      base_times.append(b)
      times[name].append(t)
      ratios[name].append(t / b)
  if not fns:
    base_times = [_per_call(baseline, base_inner) for _ in range(reps)]
  base = Timed(base_times, [1.0] * len(base_times), base_first, base_inner)
  return base, {
      name: Timed(times[name], ratios[name], firsts[name], inner[name])
      for name in fns
  }, failed


def shape_str(shape) -> str:
  return "x".join(str(v) for v in shape)


def row(section, name, mode, dtype, shape, summary, note="") -> dict:
  """One result row of the bench's table (`run.py` and `train_step.py`)."""
  out = {
      "section": section, "name": name, "mode": mode, "dtype": dtype,
      "shape": shape_str(shape) if isinstance(shape, tuple) else shape,
      "note": note,
  }
  out.update(summary)
  return out
