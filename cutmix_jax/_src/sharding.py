"""Reshapes and gathers that keep an explicit batch sharding.

Under `jax.make_mesh`'s default explicit axes, shardings are part of array
types and a reshape or gather must say where its output lives. The ops here
only ever move data along the batch axis, so the output keeps the input's
batch sharding. Without an explicit mesh they are the plain jnp ops.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec as P


def _spec(x: jax.Array) -> tuple:
  spec = tuple(jax.typeof(x).sharding.spec)
  return spec + (None,) * (x.ndim - len(spec))


def is_explicit(x: jax.Array) -> bool:
  """Whether `x` carries an explicit (sharding-in-types) sharding."""
  return any(s is not None for s in _spec(x))


def only_batch_sharded(x: jax.Array) -> bool:
  return all(s is None for s in _spec(x)[1:])


def batch_shards(x: jax.Array) -> int:
  """How many shards the batch axis of an explicitly sharded `x` has."""
  axes = _spec(x)[0]
  if axes is None:
    return 1
  axes = (axes,) if isinstance(axes, str) else axes
  mesh = jax.typeof(x).sharding.mesh
  return math.prod(mesh.shape[a] for a in axes)


def reshape(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Reshape that keeps the batch axis first and its sharding with it."""
  if not is_explicit(x):
    return x.reshape(shape)
  sharding = jax.typeof(x).sharding
  out = sharding.update(spec=P(_spec(x)[0], *([None] * (len(shape) - 1))))
  return lax.reshape(x, shape, out_sharding=out)


def take_rows(x: jax.Array, index: jax.Array) -> jax.Array:
  """`x[index]` along the batch axis, keeping the batch sharding."""
  if not is_explicit(x):
    return jnp.take(x, index, axis=0)
  return x.at[index].get(out_sharding=jax.typeof(x).sharding)


def like_batch(values: jax.Array, x: jax.Array) -> jax.Array:
  """Per-sample `values` `[batch, ...]` sharded along the batch like `x`, so
  that a `vmap` over both sees one batch sharding."""
  if not is_explicit(x):
    return values
  out = jax.typeof(x).sharding.update(
      spec=P(_spec(x)[0], *([None] * (values.ndim - 1))))
  return jax.sharding.reshard(values, out)
