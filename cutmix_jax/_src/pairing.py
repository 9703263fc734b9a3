"""Who mixes with whom, and where each draw's random words come from.

One `Plan` serves every sampler, so all honour `mode`, `pairing`, `groups`,
`prob`, `axis_name` and `invariant` alike; `partner_rows` fetches each
sample's partner for the appliers. The sampler's key is a node with
these sub-streams, each a distinct `fold_in`, so no counter is hashed twice:

- `WORDS`: the leaf of the per-draw words, column = draw index (the global
  draw index with `invariant=True`), rows at fixed positions per method;
- `PERM`: the leaf of the random permutation of `pairing='permute'`;
- `RETRY_FIRST`, `RETRY_SECOND`: nodes of Jöhnk's retry rounds for a
  draw's first and second λ;
- `NOISE`: the leaf of FMix's Fourier noise.

Without `invariant`, the axis index of `axis_name` is folded into the key
first, so each shard has its own node.
"""

from __future__ import annotations

import inspect
from typing import NamedTuple, Sequence, Union

import jax
import jax.numpy as jnp
from jax import lax

from cutmix_jax._src import beta
from cutmix_jax._src import params as params_lib
from cutmix_jax._src import prng
from cutmix_jax._src import sharding
from cutmix_jax._src import validation

AxisName = Union[str, Sequence[str], None]

WORDS, PERM, RETRY_FIRST, RETRY_SECOND, NOISE = range(5)

# The fixed first row of each part of a box or blend draw's words, in the
# `WORDS` leaf; mask and cuboid samplers read 'apply' and 'cut_lam' too, and
# their own rows from 'box'.
ROWS = {"apply": 0, "switch": 1, "box": 2, "cut_lam": 6,
        "mix_lam": 6 + beta.ROWS, "cutout_box": 6 + 2 * beta.ROWS,
        "resize_box": 8 + 2 * beta.ROWS}
LAM_ROW = ROWS["cut_lam"]  # a sampler's (first) λ
BOX_ROW = ROWS["box"]  # the first of a sampler's own rows


def check_common(key, batch_size, mode, pairing, groups, prob,
                 invariant=False, cross_device=False, axis_name=None):
  """Validates the options every sampler shares; returns (batch, groups)."""
  validation.check_key(key)
  batch_size = validation.check_size(batch_size, "batch_size")
  validation.check_choice(mode, "mode", params_lib.MODES)
  validation.check_choice(pairing, "pairing", params_lib.PAIRINGS)
  groups = validation.check_size(groups, "groups")
  if batch_size % groups:
    raise ValueError(
        f"batch_size {batch_size} is not divisible by groups={groups}; pairing"
        " stays inside equal blocks of the batch.")
  if mode == "pair" and pairing == "roll":
    raise ValueError(
        "mode='pair' needs a symmetric pairing ('flip' or 'permute'); "
        "'roll' pairs i with i - 1, which is not mutual.")
  validation.check_probability(prob, "prob")
  if invariant:
    if mode == "batch":
      raise ValueError(
          "invariant=True needs mode='elem' or 'pair': one draw per batch "
          "depends on how the batch is split over devices.")
    if batch_size % 2:
      raise ValueError(
          f"invariant=True pairs samples (2k, 2k + 1), so the (per-shard) "
          f"batch size must be even, got {batch_size}.")
  if cross_device:
    if axis_name is None:
      raise ValueError(
          "cross_device=True needs axis_name (inside shard_map or pmap); under "
          "plain jit over a sharded batch, groups=1 already pairs across "
          "devices.")
    if invariant:
      raise ValueError(
          "cross_device=True and invariant=True exclude each other: invariant "
          "draws pair samples (2k, 2k + 1) inside a shard.")
    if pairing not in ("flip", "roll"):
      raise ValueError(
          f"cross_device=True supports pairing 'flip' or 'roll' (one "
          f"lax.ppermute); got pairing={pairing!r}.")
    if groups != 1:
      raise ValueError(
          f"cross_device=True pairs over the whole global batch; groups must "
          f"be 1, got {groups}.")
  return batch_size, groups


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


def draw(key, batch_size, *, mode, pairing, groups, prob, axis_name,
         invariant=False, rows=()):
  """Validates the common options, plans the pairing and reads the words of
  a mask or cuboid draw in one hash call: row 0 decides `prob`, as for every
  sampler, and `rows` (which must not include 0) are the sampler's own.

  Returns:
    `(plan, active, words)`: the `Plan`; bool `[batch]`, whether each sample
    mixes (its draw was applied and it is not paired with itself); and
    uint32 `[len(rows), num_draws]`.
  """
  batch_size, groups = check_common(
      key, batch_size, mode, pairing, groups, prob, invariant)
  p = plan(key, batch_size, mode=mode, pairing=pairing, groups=groups,
           axis_name=axis_name, invariant=invariant)
  always = validation.is_static_number(prob) and float(prob) == 1.0
  words = p.words(((), (0,))[not always] + tuple(rows))
  if always:
    applied = jnp.ones((p.num_draws,), bool)
  else:
    applied, words = prng.uniform(words[0]) < prob, words[1:]
  return p, p.per_sample(applied) & p.has_partner, words


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


# The options every sampler shares, documented once; `with_common_args`
# puts the entries of a sampler's own parameters into its docstring.
_COMMON_ARGS = {
    "prob": """\
prob: chance of mixing at all (the official `cutmix_prob`), applied once:
  per batch in 'batch' mode, per pair in 'pair' mode, per sample in
  'elem' mode. May be traced; a traced value is not range-checked: at 1
  or above every draw mixes, at 0 or below (or NaN) none does.""",
    "mode": """\
mode: 'batch' (one draw for the whole batch, as in the paper), 'pair'
  (a sample and its partner share one draw, so they swap the same region)
  or 'elem' (an independent draw per sample). Per-sample modes cost the
  same as 'batch': the pixel work is one fused select either way.""",
    "pairing": """\
pairing: 'flip' pairs sample i with batch - 1 - i (a reversal, the cheapest
  to apply; an odd batch's middle sample is paired with itself and so is
  left unchanged), 'roll' pairs i with i - 1 (torchvision's rule) and
  'permute' uses a random permutation as the official code does
  (self-pairs can occur; a self-paired sample is unchanged).""",
    "groups": """\
groups: split the batch into this many equal contiguous blocks and pair
  only inside each. With the batch sharded over `groups` devices no image
  crosses a device, under plain `jax.jit` too.""",
    "axis_name": """\
axis_name: inside `shard_map` or `pmap`, the mapped axis (or axes) whose
  index is folded into the key, so that a replicated key gives each shard
  its own draw. Pairing stays inside the shard.""",
    "invariant": """\
invariant: make every draw a function of the key and the global sample
  index only, so the same global batch gets bit-identical draws on 1, 2,
  4 or 8 devices, under `jit`, `shard_map` or `pmap` (with `axis_name`,
  shards are taken as consecutive blocks of the global batch). Sample
  (or pair) i reads column i of the key's words, and pairs are the global
  samples (2k, 2k + 1), so the per-shard batch must be even and mode
  'elem' or 'pair'; `pairing` and `groups` are then not used.""",
    "cross_device": """\
cross_device: with `axis_name`, pair over the global batch instead of
  inside each shard: the draw equals a single-device draw for the global
  batch (shards taken as consecutive blocks), and partners are fetched
  with one `lax.ppermute`: 'flip' moves every shard's whole batch (shard
  i swaps with shard n - 1 - i), 'roll' moves one sample per shard. So a
  per-device batch of 1 or 2 still gets real mixing.""",
}


def with_common_args(fn):
  """Fills `{common_args}` in a sampler's docstring with the shared options
  it takes, in the order of its signature."""
  names = [n for n in inspect.signature(fn).parameters if n in _COMMON_ARGS]
  text = "\n".join(
      "    " + line for n in names for line in _COMMON_ARGS[n].splitlines())
  fn.__doc__ = fn.__doc__.replace("{common_args}\n", text + "\n")
  return fn
