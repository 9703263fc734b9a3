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


def t_cdf(t: float, df: int) -> float:
  """P(T <= t) for Student's t with `df` degrees of freedom."""
  if math.isnan(t):
    return math.nan
  tail = 0.5 * t_two_sided_p(t, df)
  return 1.0 - tail if t > 0 else tail


def t_ppf(q: float, df: int) -> float:
  """The `q` quantile of Student's t with `df` degrees of freedom (bisection
  on `t_cdf`, to about 1e-12)."""
  if not 0.0 < q < 1.0:
    raise ValueError(f"q must be in (0, 1), got {q}")
  lo, hi = -1.0, 1.0
  while t_cdf(lo, df) > q:
    lo *= 2.0
  while t_cdf(hi, df) < q:
    hi *= 2.0
  for _ in range(200):
    mid = 0.5 * (lo + hi)
    if t_cdf(mid, df) < q:
      lo = mid
    else:
      hi = mid
    if hi - lo < 1e-12:
      break
  return 0.5 * (lo + hi)


def tost(d: Sequence[float], margin: float,
         alpha: float = 0.05) -> dict[str, Optional[float]]:
  """Two one-sided t-tests of equivalence of the paired differences `d`
  within `(-margin, margin)`.

  `p` is the larger of the two one-sided p-values; equivalence is shown at
  level `alpha` when `p < alpha`, which is the same as the `1 - 2 alpha`
  confidence interval (`ci`, 90% at the usual 0.05) lying inside the margin.
  Returns None entries with fewer than two differences.
  """
  d = np.asarray(d, np.float64)
  n = len(d)
  out = dict(n=n, margin=margin, p=None, ci=None, level=1 - 2 * alpha)
  if n < 2:
    return out
  mean, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(n))
  half = t_ppf(1 - alpha, n - 1) * se
  out["ci"] = [mean - half, mean + half]
  if se == 0.0:
    out["p"] = 0.0 if abs(mean) < margin else 1.0
    return out
  p_lower = 1.0 - t_cdf((mean + margin) / se, n - 1)  # H0: mean <= -margin
  p_upper = t_cdf((mean - margin) / se, n - 1)  # H0: mean >= +margin
  out["p"] = max(p_lower, p_upper)
  return out


def power_paired(effect: float, sd: float, n: int, alpha: float = 0.05,
                 draws: int = 200_000, seed: int = 0) -> Optional[float]:
  """Power of the two-sided paired t-test at level `alpha` to detect a mean
  difference `effect` when the differences have standard deviation `sd`,
  with `n` pairs: P(|T| > t_crit) under the noncentral t, by simulation
  from a fixed seed (so a summary is reproducible byte for byte)."""
  if n < 2 or not sd > 0:
    return None
  df = n - 1
  rng = np.random.default_rng(seed)
  z = rng.standard_normal(draws) + effect / (sd / math.sqrt(n))
  t = z / np.sqrt(rng.chisquare(df, draws) / df)
  return float(np.mean(np.abs(t) > t_ppf(1 - alpha / 2, df)))
