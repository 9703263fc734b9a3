"""The per-draw structure of the cuboid and mask samplers.

Partners, which draw each sample uses (one per batch, pair or sample) and
whether it mixes at all come from `pairing.plan`, the structure behind
`sample_cutmix`, so every sampler honours `mode`, `pairing`, `groups`,
`prob`, `axis_name` and `invariant` the same way.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from cutmix_jax._src import pairing as pairing_lib
from cutmix_jax._src import prng
from cutmix_jax._src import validation


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
  """Who mixes with whom, whether each sample mixes, and the draw's words.

  Attributes:
    plan: the `pairing.Plan`: partners, draws and the words' sub-streams.
    active: bool `[batch]`, whether the sample mixes: its draw was applied
      (`prob`) and it is not paired with itself.
    words: uint32 `[len(rows), num_draws]`, the sampler's own rows.
  """

  plan: pairing_lib.Plan
  active: jax.Array
  words: jax.Array


def draw_structure(key, batch_size, *, mode, pairing, groups, prob,
                   axis_name, invariant=False, rows=()):
  """Validates the common options, draws the pairing structure and reads
  the words: row 0 decides `prob`, as for every sampler, and `rows` (which
  must not include 0) are the sampler's own, all hashed in one call."""
  batch_size, groups = pairing_lib.check_common(
      key, batch_size, mode, pairing, groups, prob, invariant)
  plan = pairing_lib.plan(key, batch_size, mode=mode, pairing=pairing,
                          groups=groups, axis_name=axis_name,
                          invariant=invariant)
  always = validation.is_static_number(prob) and float(prob) == 1.0
  words = plan.words(((), (0,))[not always] + tuple(rows))
  if always:
    applied = jnp.ones((plan.num_draws,), bool)
  else:
    applied, words = prng.uniform(words[0]) < prob, words[1:]
  return Structure(plan=plan, words=words,
                   active=plan.per_sample(applied) & plan.has_partner)
