"""The per-draw structure shared by the cuboid and mask samplers.

Partners, which draw each sample uses (one per batch, pair or sample) and
whether it mixes at all, decided exactly as `sample_cutmix` decides them, so
every sampler honours `mode`, `pairing`, `groups`, `prob` and `axis_name` the
same way.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from cutmix_jax._src import sampling


class Structure(NamedTuple):
  """Who mixes with whom, and which of `num_draws` draws each sample uses.

  Attributes:
    key: a fresh key for the sampler's own draws.
    batch_size: the validated static batch size.
    groups: the validated static number of pairing blocks.
    partner: int32 `[batch]`.
    draw: int32 `[batch]`, the index of the draw each sample uses.
    num_draws: static number of draws: 1, one per pair, or the batch size.
    active: bool `[batch]`, whether the sample mixes: its draw was applied
      (`prob`) and it is not paired with itself.
  """

  key: jax.Array
  batch_size: int
  groups: int
  partner: jax.Array
  draw: jax.Array
  num_draws: int
  active: jax.Array


def draw_structure(key, batch_size, *, mode, pairing, groups, prob, axis_name):
  """Validates the common options and draws the pairing structure."""
  batch_size, groups = sampling._check_common(  # pylint: disable=protected-access
      key, batch_size, mode, pairing, groups, prob
  )
  key = sampling._fold_axis(key, axis_name)  # pylint: disable=protected-access
  k_pair, k_apply, k_draw = jax.random.split(key, 3)
  partner, pair_draw, pair_draws = sampling._pairing_structure(  # pylint: disable=protected-access
      k_pair, batch_size, groups, pairing, mode
  )
  samples = jnp.arange(batch_size, dtype=jnp.int32)
  num_draws, draw = {
      "batch": (1, jnp.zeros_like(samples)),
      "elem": (batch_size, samples),
      "pair": (pair_draws, pair_draw),
  }[mode]
  applied = jax.random.uniform(k_apply, (num_draws,)) < prob
  active = applied[draw] & (partner != samples)
  return Structure(
      key=k_draw,
      batch_size=batch_size,
      groups=groups,
      partner=partner,
      draw=draw,
      num_draws=num_draws,
      active=active,
  )
