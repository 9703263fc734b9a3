"""The per-draw structure of the cuboid and mask samplers.

Partners, which draw each sample uses (one per batch, pair or sample) and
whether it mixes at all come from `sampling._plan`, the structure behind
`sample_cutmix`, so every sampler honours `mode`, `pairing`, `groups`,
`prob`, `axis_name` and `invariant` the same way.
"""

from __future__ import annotations

from typing import NamedTuple

import jax

from cutmix_jax._src import sampling


_ARGS_DOC = """\
    prob: chance of mixing, applied once per batch, pair or sample.
    mode: 'batch', 'pair' or 'elem', as in `sample_cutmix`.
    pairing: 'flip', 'roll' or 'permute', as in `sample_cutmix`.
    groups: pair only inside this many equal contiguous blocks.
    axis_name: as in `sample_cutmix`.
    invariant: as in `sample_cutmix`: each draw depends on the key and its
      global index only, so any number of devices gives the same draw."""


def with_structure_args(fn):
  """Fills `{structure_args}` in a sampler's docstring: the options every
  sampler built on `draw_structure` shares, documented once."""
  fn.__doc__ = fn.__doc__.replace("{structure_args}", _ARGS_DOC)
  return fn


class Structure(NamedTuple):
  """Who mixes with whom, and the keys of the sampler's own draws.

  Attributes:
    partner: int32 `[batch]`.
    draw: int32 `[batch]`, the index of the draw each sample uses.
    num_draws: static number of draws: 1, one per pair, or the batch size.
    draw_keys: `[num_draws]` keys, one per draw, for the sampler's own
      randomness; with `invariant`, draw d's key depends on the key and the
      global draw index only.
    active: bool `[batch]`, whether the sample mixes: its draw was applied
      (`prob`) and it is not paired with itself.
    pairing: static, the pairing used.
    groups: static, the pairing blocks used.
  """

  partner: jax.Array
  draw: jax.Array
  num_draws: int
  draw_keys: jax.Array
  active: jax.Array
  pairing: str
  groups: int


def draw_structure(key, batch_size, *, mode, pairing, groups, prob, axis_name,
                   invariant=False):
  """Validates the common options and draws the pairing structure."""
  # pylint: disable=protected-access
  batch_size, groups = sampling._check_common(
      key, batch_size, mode, pairing, groups, prob, invariant)
  plan = sampling._plan(key, batch_size, mode=mode, pairing=pairing,
                        groups=groups, axis_name=axis_name,
                        invariant=invariant)
  # pylint: enable=protected-access
  if plan.draw_keys is None:
    k_apply, k_draw = jax.random.split(plan.key)
    applied = jax.random.uniform(k_apply, (plan.num_draws,)) < prob
    draw_keys = jax.random.split(k_draw, plan.num_draws)
  else:
    applied = jax.vmap(
        lambda k: jax.random.uniform(jax.random.fold_in(k, 0)))(
            plan.draw_keys) < prob
    draw_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(plan.draw_keys)
  return Structure(
      partner=plan.partner,
      draw=plan.draw,
      num_draws=plan.num_draws,
      draw_keys=draw_keys,
      active=plan.per_sample(applied) & plan.has_partner,
      pairing=plan.pairing,
      groups=plan.groups,
  )
