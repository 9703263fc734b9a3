"""Exact symmetric Beta(α, α) variates from random words.

α = 1 is Uniform(0, 1); α > 1/2 uses Ulrich's rejection-free polar method;
α <= 1/2 uses Jöhnk's rejection method with `PROPOSALS` proposals per variate
and an exact retry loop. The words are always `ROWS` rows at fixed positions,
whichever method runs and whether α is static or traced, so the key alone
decides λ.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from cutmix_jax._src import prng
from cutmix_jax._src import validation

# Jöhnk's method accepts a proposal with probability >= pi / 4 for α <= 1/2,
# so 8 proposals per variate leave about 1 in 200,000 variates to the exact
# retry loop, which therefore almost never iterates. Tests lower it to force
# the loop.
PROPOSALS = 8
ROWS = 16  # words per variate: 2 * PROPOSALS at the default


def rows_needed(alpha: Any) -> tuple[int, ...]:
  """The rows of the `ROWS` that the method for α reads (all when traced)."""
  if validation.is_static_number(alpha):
    if float(alpha) == 1.0:
      return (0,)
    if float(alpha) > 0.5:
      return (0, 1)
  return tuple(range(2 * PROPOSALS))


def _ulrich(u, v, a):
  """Exact Beta(a, a) for a > 1/2 without rejection (Ulrich 1984).

  X = 1/2 + 1/2 * sqrt(1 - U^(2 / (2a - 1))) * cos(2 pi V); see Devroye,
  Non-Uniform Random Variate Generation (1986), section IX.4.
  """
  one_minus_power = -jnp.expm1(jnp.log(u) * (2.0 / (2.0 * a - 1.0)))
  polar = jnp.sqrt(one_minus_power) * jnp.cos(2.0 * jnp.pi * v)
  return 0.5 + 0.5 * prng.unfused(polar)


def _johnk_proposals(u, inv_a):
  # A product with 1 / a, not a division by a: XLA turns a division by a
  # constant into that product, so a static and a traced α round alike.
  log_x, log_y = jnp.log(u) * inv_a
  log_sum = jnp.logaddexp(log_x, log_y)
  # Small α puts much mass within 1e-8 of 0 and 1. Compute the smaller of
  # λ and 1 - λ as an exp of a log-ratio (a sigmoid saturates there) and
  # the larger as one minus it, so both tails keep float32 resolution.
  lam = jnp.where(log_x <= log_y, jnp.exp(log_x - log_sum),
                  -jnp.expm1(log_y - log_sum))
  return log_sum <= 0, lam


def _johnk(u, inv_a, retry_uniforms):
  """Exact Beta(a, a) for a <= 1/2 by Jöhnk's rejection method (1964).

  X = U^(1/a), Y = V^(1/a), accepted when X + Y <= 1, gives X / (X + Y), in
  log space so that tiny `a` does not underflow. `u` holds all proposals,
  `[2, PROPOSALS, n]`; the first accepted is taken. Variates that reject them
  all are redrawn by a loop from `retry_uniforms(i)`, so the draw is exact,
  not truncated.
  """
  accept, lam = _johnk_proposals(u, inv_a)
  first = jnp.argmax(accept, axis=0)
  lam = jnp.take_along_axis(lam, first[None], axis=0)[0]
  done = jnp.any(accept, axis=0)

  def retry(state):
    i, done, lam = state
    acc, candidate = _johnk_proposals(retry_uniforms(i), inv_a)
    return i + 1, done | acc, jnp.where(done, lam, candidate)

  _, _, lam = lax.while_loop(lambda s: ~jnp.all(s[1]), retry,
                             (jnp.int32(0), done, lam))
  return lam


def lam_from_words(words: jax.Array, alpha: Any, retry_key: jax.Array, *,
                   col_offset=0) -> jax.Array:
  """λ ~ Beta(α, α), float32 `[n]`, from words `[len(rows_needed(α)), n]`.

  Retry round i of Jöhnk's method reads rows 0 and 1 of the leaf
  `fold_in(retry_key, i)`, at the same columns (`col_offset` on), so each
  variate's retries depend on its own column only. A traced α picks the
  method at run time (no recompile) and gives NaN for α <= 0.
  """
  n = words.shape[1]
  a = jnp.asarray(alpha, jnp.float32)
  # Jöhnk's loop never accepts for α < 0 or NaN, and under vmap a traced α
  # runs every branch of the switch below: such an α draws with 1/α = 1, and
  # its λ is replaced by NaN at the end.
  inv_a = 1.0 / jnp.where(a > 0, a, 1.0)

  def retry_uniforms(i):
    leaf = prng.fold_in(retry_key, i)
    return prng.uniform(prng.bits(leaf, (0, 1), n, col_offset=col_offset))

  def johnk(w):
    u = prng.uniform(w[: 2 * PROPOSALS]).reshape(2, PROPOSALS, n)
    return _johnk(u, inv_a, retry_uniforms)

  methods = (johnk, lambda w: _ulrich(prng.uniform(w[0]), prng.uniform(w[1]),
                                      a), lambda w: prng.uniform(w[0]))
  if validation.is_static_number(alpha):
    which = 2 if float(alpha) == 1.0 else int(float(alpha) > 0.5)
    return methods[which](words)
  which = jnp.where(a == 1.0, 2, (a > 0.5).astype(jnp.int32))
  return jnp.where(a > 0, lax.switch(which, methods, words), jnp.nan)
