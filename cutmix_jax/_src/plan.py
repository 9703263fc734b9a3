"""Who mixes with whom, and where each draw's random words come from.

One `Plan` serves every sampler, so all honour `mode`, `pairing`, `groups`,
`prob`, `axis_name` and `invariant` alike, and one engine, `read_words`,
turns a plan into a draw's words. The sampler's key is a node with these
sub-streams, each a distinct `fold_in`, so no counter is hashed twice:

- `WORDS`: the leaf of the per-draw words, column = draw index (the global
  draw index with `invariant=True`), rows at fixed positions per part of
  the draw (`ROWS`);
- `PERM`: the leaf of the random permutation of `pairing='permute'`;
- `RETRY_FIRST`, `RETRY_SECOND`: nodes of Jöhnk's retry rounds for a
  draw's first and second λ;
- `NOISE`: the leaf of FMix's Fourier noise.

Without `invariant`, the axis index of `axis_name` is folded into the key
first, so each shard has its own node.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from cutmix_jax._src import beta
from cutmix_jax._src import options
from cutmix_jax._src import prng
from cutmix_jax._src import validation

WORDS, PERM, RETRY_FIRST, RETRY_SECOND, NOISE = range(5)

# The fixed first row of each part of a draw's words, in the `WORDS` leaf.
# Every sampler reads 'apply' (whether a draw mixes, unless prob is a static
# 1); a box or blend draw its parts below; a mask or cuboid draw its own
# rows from 'box' and its λ from 'cut_lam'.
ROWS = {"apply": 0, "switch": 1, "box": 2, "cut_lam": 6,
        "mix_lam": 6 + beta.ROWS, "cutout_box": 6 + 2 * beta.ROWS,
        "resize_box": 8 + 2 * beta.ROWS}


class Plan(NamedTuple):
  """The pairing structure of a draw.

  Attributes:
    key: the node of this shard's sub-streams.
    partner: int32 `[batch]`.
    draw: int32 `[batch]`, the index of the draw each sample uses.
    num_draws: static: 1, one per pair, or the batch size.
    col_offset: the global index of this shard's first draw (invariant) or 0.
    mode: static, as given.
    pairing: static, the pairing used ('flip' when invariant).
    groups: static, the pairing blocks used (pairs when invariant).
  """

  key: jax.Array
  partner: jax.Array
  draw: jax.Array
  num_draws: int
  col_offset: jax.Array
  mode: str
  pairing: str
  groups: int

  @property
  def has_partner(self) -> jax.Array:
    """bool `[batch]`: False for samples paired with themselves."""
    return self.partner != jnp.arange(self.partner.shape[0], dtype=jnp.int32)

  def per_sample(self, values: jax.Array) -> jax.Array:
    """Per-draw values `[num_draws, ...]` expanded to `[batch, ...]`."""
    batch = self.partner.shape[0]
    if self.mode == "batch":
      return jnp.broadcast_to(values, (batch,) + values.shape[1:])
    if self.mode == "pair":
      return values[self.draw]
    return values

  def words(self, rows: Sequence[int]) -> jax.Array:
    """uint32 `[len(rows), num_draws]`: rows of the `WORDS` leaf."""
    return prng.bits(prng.fold_in(self.key, WORDS), rows, self.num_draws,
                     col_offset=self.col_offset)

  def retry_key(self, which: int) -> jax.Array:
    return prng.fold_in(self.key, which)


def _partners(key, batch_size, groups, pairing, mode):
  """Partner per sample, which draw each sample uses in pair mode, and the
  number of pair draws. Pairing stays inside each of `groups` contiguous
  blocks, so a batch sharded over `groups` devices moves no images."""
  block = batch_size // groups
  offsets = (jnp.arange(groups, dtype=jnp.int32) * block)[:, None]
  j = jnp.arange(block, dtype=jnp.int32)[None, :]
  draws_per_block = (block + 1) // 2
  pair_draw = None
  if pairing == "flip":
    partner = offsets + (block - 1 - j)
    pair_draw = jnp.minimum(j, block - 1 - j)
  elif pairing == "roll":
    partner = offsets + (j - 1) % block
  else:
    perm_bits = prng.bits(prng.fold_in(key, PERM), range(groups), block)
    perm = jnp.argsort(perm_bits, axis=1).astype(jnp.int32)
    if mode == "pair":
      # Pair consecutive entries of a random permutation; an odd block's last
      # entry is paired with itself.
      mate_pos = jnp.minimum(jnp.arange(block) ^ 1, block - 1)
      inverse = jnp.argsort(perm, axis=1).astype(jnp.int32)
      partner = offsets + jnp.take_along_axis(perm, mate_pos[inverse], axis=1)
      pair_draw = inverse // 2
    else:
      partner = offsets + perm
  partner = jnp.broadcast_to(partner, (groups, block)).reshape(batch_size)
  if pair_draw is not None:
    pair_draw = jnp.broadcast_to(
        pair_draw + jnp.arange(groups)[:, None] * draws_per_block,
        (groups, block)).reshape(batch_size)
  return partner, pair_draw, groups * draws_per_block


def plan(key, batch_size, *, mode, pairing, groups, axis_name,
         invariant) -> Plan:
  """The pairing structure of a draw (validated arguments in)."""
  col_offset = jnp.uint32(0)
  if invariant:
    # Pairs are (2k, 2k + 1) of the global batch, and draw d of this shard is
    # global draw `offset + d`: nothing depends on how the batch is split.
    groups, pairing = batch_size // 2, "flip"
    if axis_name is not None:
      per_shard = batch_size if mode == "elem" else groups
      col_offset = lax.axis_index(axis_name) * per_shard
  elif axis_name is not None:
    key = prng.fold_in(key, lax.axis_index(axis_name))
  partner, pair_draw, pair_draws = _partners(key, batch_size, groups, pairing,
                                             mode)
  samples = jnp.arange(batch_size, dtype=jnp.int32)
  num_draws, draw = {
      "batch": (1, jnp.zeros_like(samples)),
      "elem": (batch_size, samples),
      "pair": (pair_draws, pair_draw),
  }[mode]
  return Plan(key=key, partner=partner, draw=draw, num_draws=num_draws,
              col_offset=col_offset, mode=mode, pairing=pairing, groups=groups)


def always(prob) -> bool:
  """Every draw applies: prob is a static 1, so no 'apply' word is read."""
  return validation.is_static_number(prob) and float(prob) == 1.0


def applied(words: Mapping[str, jax.Array], prob, num_draws: int
            ) -> jax.Array:
  """Whether each draw applies, bool `[num_draws]`: its 'apply' word against
  `prob` (read by `read_words` unless `always(prob)`)."""
  if always(prob):
    return jnp.ones((num_draws,), bool)
  return prng.uniform(words["apply"][0]) < prob


def read_words(p: Plan, wanted: Mapping[str, Sequence[int]]
               ) -> dict[str, jax.Array]:
  """Each part's words, uint32 `[len(rows), num_draws]`, for `wanted`, a
  map from `ROWS` names to rows relative to the part's first row; all from
  one `prng.bits` call, because on a CPU each PRNG call costs small kernels
  of its own."""
  words = p.words([ROWS[name] + r for name, rs in wanted.items()
                   for r in rs])
  parts, start = {}, 0
  for name, rs in wanted.items():
    parts[name], start = words[start : start + len(rs)], start + len(rs)
  return parts


def draw(key, batch_size, *, mode, pairing, groups, prob, axis_name,
         invariant=False, parts=None):
  """Validates the common options, plans the pairing and reads the words of
  a mask or cuboid draw: 'apply' decides `prob`, as for every sampler, and
  `parts` (a map as `read_words` takes, without 'apply') are the sampler's
  own.

  Returns:
    `(plan, active, words)`: the `Plan`; bool `[batch]`, whether each sample
    mixes (its draw was applied and it is not paired with itself); and the
    words of each part.
  """
  batch_size, groups = options.check_common(
      key, batch_size, mode, pairing, groups, prob, invariant)
  p = plan(key, batch_size, mode=mode, pairing=pairing, groups=groups,
           axis_name=axis_name, invariant=invariant)
  words = read_words(p, {"apply": () if always(prob) else (0,),
                         **(parts or {})})
  return (p, p.per_sample(applied(words, prob, p.num_draws)) & p.has_partner,
          words)
