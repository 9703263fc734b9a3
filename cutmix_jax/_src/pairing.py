"""Fetching each sample's partner: `partner_rows`, for every applier."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from cutmix_jax._src import params as params_lib
from cutmix_jax._src import sharding


def partner_rows(params: params_lib.Draw, x: jax.Array) -> jax.Array:
  """Each sample's partner, `x[params.partner]`, as cheaply as the pairing
  allows: a reversal or a roll inside each group; a gather only for 'permute'
  (or where an explicit sharding rules the cheap form out).

  Args:
    params: any draw.
    x: a batch-major array `[batch, ...]`.

  Returns:
    `x[params.partner]`, with the shape and dtype of `x`.

  >>> from cutmix_jax import sample_mixup
  >>> p = sample_mixup(jax.random.key(0), 3)  # pairing='flip'
  >>> partner_rows(p, jnp.array([10, 20, 30])).tolist()
  [30, 20, 10]
  """
  if getattr(params, "exchange_axis", None) is not None:
    return _partner_rows_across(params, x)
  batch = x.shape[0]
  groups = params.groups
  explicit = sharding.is_explicit(x)
  gather = params.pairing == "permute" or (
      explicit
      and (groups % sharding.batch_shards(x) or params.pairing == "roll")
      and not (groups == 1 and params.pairing == "flip")
  )
  if gather:
    return sharding.take_rows(x, params.partner)
  if groups == 1 and params.pairing == "flip":
    return lax.rev(x, (0,))
  grouped = sharding.reshape(x, (groups, batch // groups) + x.shape[1:])
  if params.pairing == "flip":
    grouped = lax.rev(grouped, (1,))
  else:
    grouped = jnp.roll(grouped, 1, axis=1)
  return sharding.reshape(grouped, x.shape)


def _partner_rows_across(params, x: jax.Array) -> jax.Array:
  """Partners on other shards (`cross_device=True`), by one `lax.ppermute`.

  Global 'flip' pairs global sample g with G - 1 - g: shard i's partners are
  shard n - 1 - i's samples reversed, so each shard swaps its whole batch.
  Global 'roll' pairs g with g - 1: only each shard's last sample moves, to
  the next shard.
  """
  axis = params.exchange_axis
  shards = lax.axis_size(axis)
  if params.pairing == "flip":
    swapped = lax.ppermute(x, axis, [(i, shards - 1 - i) for i in range(shards)])
    return lax.rev(swapped, (0,))
  last = lax.ppermute(x[-1:], axis, [(i, (i + 1) % shards)
                                      for i in range(shards)])
  return jnp.concatenate([last, x[:-1]], axis=0)
