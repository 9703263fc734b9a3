"""Random words: the one place any sampler gets randomness from.

Every draw hashes counters with Threefry-2x32 under a key. A key is used in
exactly one of two roles, never both: a *node* is only ever passed to
`fold_in` (each datum once), and a *leaf* only to `bits`. `fold_in` hashes the
counter `(0, d)`, and `bits` hashes `(column, row // 2)`, so a key used in both
roles could hash the same counter twice; keeping the roles apart makes every
(key, counter) pair of a draw distinct. `tests/test_prng.py` checks this over
every sampler with `record_hashes`.

Word `(r, c)` of a leaf is output `r % 2` of the hash of `(c, r // 2)`. It
depends on its row and column only, not on how many rows or columns were
asked for: a sampler reads its rows at fixed positions, so the stream does not
depend on which of its options are static, and column `c` can be the global
index of a sample, so a sharded draw is computed where it lives.
"""

from __future__ import annotations

import contextlib
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))

# Test hook: when a list, every hash appends its (k0, k1, x0, x1) words.
_recorded = None


@contextlib.contextmanager
def record_hashes():
  """Records the `(k0, k1, x0, x1)` of every Threefry hash traced inside.

  A test-only hook: functions must be traced inside the context (eager, or a
  fresh `jax.jit`); the records arrive through `jax.debug.callback`, one per
  executed hash, so a `lax.switch` records only its taken branch and a loop
  each iteration.

  Yields:
    A list that fills with uint32 `[n, 4]` arrays.
  """
  global _recorded
  previous, _recorded = _recorded, []
  try:
    yield _recorded
  finally:
    _recorded = previous


def recording() -> bool:
  """Whether `record_hashes` is active (a draw must then be traced afresh)."""
  return _recorded is not None


def threefry2x32(k0, k1, x0, x1):
  """Threefry-2x32 (20 rounds), unrolled, as JAX computes it on GPUs.

  On CPUs JAX emits the rounds as a 5-step while loop, a fixed cost of a few
  tens of microseconds per call that dominated a draw for a CIFAR batch;
  unrolled, the hash fuses with its consumers into one loop.
  """
  if _recorded is not None:
    sink = _recorded
    jax.debug.callback(
        lambda *w: sink.append(np.stack(np.broadcast_arrays(*w), -1).reshape(
            -1, 4)), k0, k1, x0, x1)
  ks = (k0, k1, k0 ^ k1 ^ np.uint32(0x1BD11BDA))
  x0, x1 = x0 + ks[0], x1 + ks[1]
  for i in range(5):
    for r in _ROTATIONS[i % 2]:
      x0 = x0 + x1
      x1 = x0 ^ ((x1 << np.uint32(r)) | (x1 >> np.uint32(32 - r)))
    x0 = x0 + ks[(i + 1) % 3]
    x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
  return x0, x1


def _is_typed(key) -> bool:
  return jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)


def _is_threefry(key) -> bool:
  if _is_typed(key):
    return str(jax.random.key_impl(key)) == "threefry2x32"
  return jax.config.jax_default_prng_impl == "threefry2x32"


def fold_in(key: jax.Array, data) -> jax.Array:
  """`jax.random.fold_in(key, data)`, bit for bit; `data` may be a vector.

  For threefry keys the new key is the unrolled hash of the counter
  `(0, data)`, as JAX computes it; other key types go to JAX.
  """
  if not _is_threefry(key):
    fold = jax.random.fold_in
    return fold(key, data) if jnp.ndim(data) == 0 else jax.vmap(
        fold, (None, 0))(key, data)
  raw = jax.random.key_data(key) if _is_typed(key) else key
  data = jnp.asarray(data, dtype=jnp.uint32)
  hashed = jnp.stack(
      threefry2x32(raw[0], raw[1], jnp.zeros_like(data), data), axis=-1)
  if _is_typed(key):
    return jax.random.wrap_key_data(hashed, impl=jax.random.key_impl(key))
  return hashed


def bits(key: jax.Array, rows: Sequence[int], cols: int, *,
         col_offset=0) -> jax.Array:
  """uint32 words `[len(rows), cols]`: rows `rows` of the leaf `key`.

  Word `(r, c)` is output `r % 2` of Threefry of the counter
  `(c + col_offset, r // 2)` (equal to `jax.extend.random.threefry2x32_p` on
  it). Each needed row pair is hashed once, in one call, and the words are
  materialised (an optimization barrier) so the small per-sample kernels that
  read them do not each re-hash them. `col_offset` may be traced. Other key
  types draw each column from `jax.random.bits(fold_in(key, c), ...)`.
  """
  rows = tuple(int(r) for r in rows)
  pairs = sorted({r // 2 for r in rows})
  if not rows or cols == 0:
    return jnp.zeros((len(rows), cols), jnp.uint32)
  column = lax.broadcasted_iota(jnp.uint32, (len(pairs), cols), 1) + jnp.asarray(
      col_offset).astype(jnp.uint32)
  if not _is_threefry(key):
    # No counter access in other PRNGs: one key per column, drawn by a loop
    # (vmap of an 'rbg' key's bits is not its unbatched bits).
    span = max(pairs) + 1
    words = lax.map(lambda c: jax.random.bits(
        jax.random.fold_in(key, c), (span, 2), jnp.uint32), column[0])
    words = words.transpose(1, 2, 0)[np.asarray(pairs)]
  else:
    raw = jax.random.key_data(key) if _is_typed(key) else key
    pair = jnp.asarray(np.asarray(pairs, np.uint32))[:, None]
    first, second = threefry2x32(raw[0], raw[1], column,
                                 jnp.broadcast_to(pair, column.shape))
    words = jnp.stack([first, second], axis=1)
  index = {p: i for i, p in enumerate(pairs)}
  flat = [2 * index[r // 2] + r % 2 for r in rows]
  if flat == list(range(2 * len(pairs))):
    # Every word in order (FMix's noise: a thousand rows): one reshape, not
    # a slice per row, which took XLA minutes to compile.
    picked = words.reshape(len(rows), cols)
  else:
    picked = jnp.stack([words[index[r // 2], r % 2] for r in rows])
  return lax.optimization_barrier(picked)


def unfused(x: jax.Array) -> jax.Array:
  """`x`, materialised, so that no multiply before it and add after it are
  contracted into one FMA. XLA's CPU backend contracts them inside a fusion
  but eager mode runs op by op, so without this an eager draw and a jitted
  one differ in the last bit. Only for per-draw vectors: it costs a buffer.
  """
  return lax.optimization_barrier(x)


def uniform(words: jax.Array) -> jax.Array:
  """Uniform [0, 1) float32 from uint32 words, as `jax.random.uniform` does."""
  mantissa = (words >> 9) | jnp.uint32(0x3F800000)
  return lax.bitcast_convert_type(mantissa, jnp.float32) - 1.0


def uniform_int(words: jax.Array, n) -> jax.Array:
  """Integers uniform in [0, n) from uint32 words (bias below n / 2**32)."""
  return (words % jnp.asarray(n).astype(jnp.uint32)).astype(jnp.int32)


def normal(words: jax.Array) -> jax.Array:
  """Standard normal float32 from uint32 words, as `jax.random.normal` does:
  sqrt(2) * erfinv(u) for u uniform in (-1, 1)."""
  lo = np.nextafter(np.float32(-1.0), np.float32(0.0))
  u = unfused(uniform(words) * (np.float32(1.0) - lo)) + lo
  return np.float32(np.sqrt(2)) * lax.erf_inv(jnp.maximum(lo, u))
