"""Paired comparisons for the experiment summaries: mean ± SE, a paired
t-test and Holm's correction, in NumPy and the standard library only (the
`train` extra has no SciPy)."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np


def _betacf(a: float, b: float, x: float) -> float:
  """The continued fraction of the incomplete beta function (modified Lentz),
  which converges fast for x < (a + 1) / (a + b + 2)."""
  tiny, eps = 1e-300, 1e-15
  qab, qap, qam = a + b, a + 1.0, a - 1.0
  c, d = 1.0, 1.0 - qab * x / qap
  d = 1.0 / (d if abs(d) > tiny else tiny)
  h = d
  for m in range(1, 500):
    m2 = 2 * m
    for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
               -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
      d = 1.0 + aa * d
      d = 1.0 / (d if abs(d) > tiny else tiny)
      c = 1.0 + aa / c
      c = c if abs(c) > tiny else tiny
      h *= d * c
    if abs(d * c - 1.0) < eps:
      break
  return h


def betainc(a: float, b: float, x: float) -> float:
  """The regularised incomplete beta function I_x(a, b)."""
  if x <= 0.0:
    return 0.0
  if x >= 1.0:
    return 1.0
  log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
               + a * math.log(x) + b * math.log1p(-x))
  if x < (a + 1.0) / (a + b + 2.0):
    return math.exp(log_front) * _betacf(a, b, x) / a
  return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: int) -> float:
  """P(|T| >= |t|) for Student's t with `df` degrees of freedom."""
  if math.isnan(t):
    return math.nan
  if math.isinf(t):
    return 0.0
  return betainc(df / 2.0, 0.5, df / (df + t * t))


def paired(a: Sequence[float], b: Sequence[float]) -> dict[str, Optional[float]]:
  """The paired difference a − b: mean, SE, t and the two-sided p-value.

  Returns `se`, `t` and `p` as None with fewer than two pairs. Identical
  differences (zero spread) give p = 0 for a non-zero mean, 1 for zero.
  """
  d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
  n = len(d)
  out = dict(n=n, mean=float(d.mean()) if n else None, se=None, t=None,
             p=None, values=d.tolist())
  if n < 2:
    return out
  se = float(d.std(ddof=1) / math.sqrt(n))
  out["se"] = se
  if se == 0.0:
    out["t"] = math.copysign(math.inf, out["mean"]) if out["mean"] else 0.0
    out["p"] = 0.0 if out["mean"] else 1.0
  else:
    out["t"] = out["mean"] / se
    out["p"] = t_two_sided_p(out["t"], n - 1)
  return out


def holm(p_values: Sequence[Optional[float]]) -> list[Optional[float]]:
  """Holm's step-down adjusted p-values (None entries are left out)."""
  index = [i for i, p in enumerate(p_values) if p is not None]
  order = sorted(index, key=lambda i: p_values[i])
  adjusted: list[Optional[float]] = [None] * len(p_values)
  running = 0.0
  for rank, i in enumerate(order):
    running = max(running, min(1.0, (len(order) - rank) * p_values[i]))
    adjusted[i] = running
  return adjusted
