"""Drawing mixing parameters: λ, boxes, partners and which operation.

Everything here works on per-sample vectors (a few hundred numbers), never on
pixels, so it is cheap next to the pixel work in `apply.py`.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from typing import Any, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from cutmix_jax._src import validation

ArrayLike = jax.typing.ArrayLike
AxisName = Union[str, Sequence[str], None]

# Jöhnk's method accepts a proposal with probability >= pi / 4 for α <= 1/2,
# so 8 proposals per variate leave about 1 in 200,000 variates to the exact
# fallback loop, which therefore almost never iterates.
_JOHNK_PROPOSALS = 8


class Op(enum.IntEnum):
  """What `apply_params` does to a sample."""

  NONE = 0  # left unchanged
  MIXUP = 1  # blended with its partner: lam * own + (1 - lam) * partner
  CUTMIX = 2  # box pasted from its partner
  CUTOUT = 3  # box filled with a constant
  RESIZEMIX = 4  # the whole partner, resized, pasted into the box


# The ops each sampler can draw; a 'switch' draw names its own in `ops`.
_METHOD_OPS = {
    "cutmix": (Op.CUTMIX,),
    "mixup": (Op.MIXUP,),
    "mix": (Op.CUTMIX, Op.MIXUP),
    "cutout": (Op.CUTOUT,),
    "resizemix": (Op.RESIZEMIX,),
}


@dataclasses.dataclass(frozen=True)
class MixParams:
  """One draw of mixing parameters for a batch, as returned by `sample_*`.

  Arrays are per sample, so one draw can be applied to images, segmentation
  maps or any other batch-major array with `apply_params`, and to labels with
  `mix_labels`.

  Attributes:
    lam: float32 `[batch]`, the weight of each sample's own label. For CutMix
      it is exactly `1 - box_area / (height * width)` of the box actually
      pasted; it is 1 for samples left unchanged and for Cutout.
    box: int32 `[batch, 4]`, `(top, left, bottom, right)` in pixels,
      half-open (rows `top <= h < bottom`). The region taken from the partner
      (CutMix) or filled (Cutout); all zeros (empty) for other samples.
    partner: int32 `[batch]`, the index of the sample each one is mixed with.
      For the two-term loss `lam * ce(logits, y) + (1 - lam) * ce(logits,
      y[partner])`.
    op: int32 `[batch]`, an `Op` per sample.
    height: static image height the boxes were drawn for.
    width: static image width.
    pairing: static, how partners were chosen ('flip', 'roll', 'permute').
    groups: static, the number of equal contiguous batch blocks that pairing
      stays inside.
    method: static, the sampler that drew this ('cutmix', 'mixup', 'mix',
      'cutout', 'resizemix', 'switch'); it lets `apply_params` emit only the
      code that can run.
    ops: static, for method 'switch', the `Op`s the draw may hold.
    exchange_axis: static, set by `cross_device=True`: the mapped axis over
      which partners are fetched from other shards. `partner` then indexes
      the global batch.
  """

  lam: jax.Array
  box: jax.Array
  partner: jax.Array
  op: jax.Array
  height: Optional[int] = None
  width: Optional[int] = None
  pairing: str = "flip"
  groups: int = 1
  method: str = "cutmix"
  ops: tuple[int, ...] = ()
  exchange_axis: Any = None

  @property
  def possible_ops(self) -> tuple[Op, ...]:
    """The ops this draw may hold, known at trace time."""
    if self.method == "switch":
      return tuple(Op(o) for o in self.ops)
    return _METHOD_OPS[self.method]


jax.tree_util.register_dataclass(
    MixParams,
    data_fields=["lam", "box", "partner", "op"],
    meta_fields=["height", "width", "pairing", "groups", "method", "ops",
                 "exchange_axis"],
)


# ---------------------------------------------------------------------------
# Random words

_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _threefry2x32(k0, k1, x0, x1):
  """Threefry-2x32 (20 rounds), unrolled, as JAX computes it on GPUs.

  On CPUs JAX emits the rounds as a 5-step while loop, a fixed cost of a few
  tens of microseconds per call that dominated a draw for a CIFAR batch;
  unrolled, the hash fuses with its consumers into one loop.
  """
  ks = (k0, k1, k0 ^ k1 ^ np.uint32(0x1BD11BDA))
  x0, x1 = x0 + ks[0], x1 + ks[1]
  for i in range(5):
    for r in _THREEFRY_ROTATIONS[i % 2]:
      x0 = x0 + x1
      x1 = x0 ^ ((x1 << np.uint32(r)) | (x1 >> np.uint32(32 - r)))
    x0 = x0 + ks[(i + 1) % 3]
    x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
  return x0, x1


def _is_threefry(key) -> bool:
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    return str(jax.random.key_impl(key)) == "threefry2x32"
  return jax.config.jax_default_prng_impl == "threefry2x32"


def _fold_in(key, data) -> jax.Array:
  """`jax.random.fold_in(key, data)`, bit for bit; `data` may be a vector.

  For threefry keys the new key is the unrolled hash of the counter
  `(0, data)`, as JAX computes it; other key types go to JAX.
  """
  if not _is_threefry(key):
    fold = jax.random.fold_in
    return fold(key, data) if jnp.ndim(data) == 0 else jax.vmap(
        fold, (None, 0))(key, data)
  typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
  raw = jax.random.key_data(key) if typed else key
  data = jnp.asarray(data, dtype=jnp.uint32)
  hashed = jnp.stack(
      _threefry2x32(raw[0], raw[1], jnp.zeros_like(data), data), axis=-1)
  if typed:
    return jax.random.wrap_key_data(hashed, impl=jax.random.key_impl(key))
  return hashed


def _random_bits(key, shape) -> jax.Array:
  """Uniform uint32 words from `key`: Threefry in counter mode, unrolled.

  Word `(r, c)` (rows `r` along the first axis, `c` the flat index of the
  rest) has counter `r * C + c`, the linear index `jax.random.bits` uses.
  Counters of rows `r` and `r + ceil(R / 2)` are hashed together and both
  output words are kept, so a draw hashes half as many counters as
  `jax.random.bits`, and each column depends on its own counters only: a
  draw sharded along its samples is computed where it lives, with no
  collective. The words are materialised (an optimization barrier) so the
  small per-sample kernels that read them do not each re-hash them; on CPUs
  XLA also splits a fusion of about 1,000 hashes across threads, and the
  hand-off cost more than the hashing. Other key types go to
  `jax.random.bits`.
  """
  shape = tuple(shape)
  size = math.prod(shape)
  if not _is_threefry(key) or size >= 2**32 or not shape:
    return jax.random.bits(key, shape, jnp.uint32)
  data = jax.random.key_data(key) if jax.dtypes.issubdtype(
      key.dtype, jax.dtypes.prng_key) else key
  rows, cols = shape[0], size // max(shape[0], 1)
  half = (rows + 1) // 2
  counters = lax.broadcasted_iota(jnp.uint32, (2 * half, cols), 0) * jnp.uint32(
      cols) + lax.broadcasted_iota(jnp.uint32, (2 * half, cols), 1)
  first, second = _threefry2x32(data[0], data[1], counters[:half],
                                counters[half:])
  bits = jnp.concatenate([first, second], axis=0)[:rows].reshape(shape)
  return lax.optimization_barrier(bits)


# ---------------------------------------------------------------------------
# λ ~ Beta(α, α)


def _uniform01(bits: jax.Array) -> jax.Array:
  """Uniform [0, 1) float32 from uint32 bits, as `jax.random.uniform` does."""
  mantissa = (bits >> 9) | jnp.uint32(0x3F800000)
  return lax.bitcast_convert_type(mantissa, jnp.float32) - 1.0


def _beta_ulrich(u: jax.Array, v: jax.Array, a: jax.Array) -> jax.Array:
  """Exact Beta(a, a) for a > 1/2 without rejection (Ulrich 1984).

  X = 1/2 + 1/2 * sqrt(1 - U^(2 / (2a - 1))) * cos(2 pi V); see Devroye,
  Non-Uniform Random Variate Generation (1986), section IX.4.
  """
  one_minus_power = -jnp.expm1(jnp.log(u) * (2.0 / (2.0 * a - 1.0)))
  return 0.5 + 0.5 * jnp.sqrt(one_minus_power) * jnp.cos(2.0 * jnp.pi * v)


def _johnk_proposals(u: jax.Array, a: jax.Array):
  log_x, log_y = jnp.log(u) / a
  log_sum = jnp.logaddexp(log_x, log_y)
  # Small α puts much mass within 1e-8 of 0 and 1. Compute the smaller of
  # λ and 1 - λ as an exp of a log-ratio (a sigmoid saturates there) and
  # the larger as one minus it, so both tails keep float32 resolution.
  lam = jnp.where(
      log_x <= log_y,
      jnp.exp(log_x - log_sum),
      -jnp.expm1(log_y - log_sum),
  )
  return log_sum <= 0, lam


def _beta_johnk(u: jax.Array, a: jax.Array, retry_uniforms):
  """Exact Beta(a, a) for a <= 1/2 by Jöhnk's rejection method (1964).

  X = U^(1/a), Y = V^(1/a), accepted when X + Y <= 1, gives X / (X + Y). It
  runs in log space so that tiny `a` does not underflow. `u` holds all
  proposals, `[2, proposals, ...]`; the first accepted is taken. Variates
  that reject them all are redrawn by a loop, from `retry_uniforms(i)` (fresh
  `[2, ...]` uniforms for round i), so the draw is exact, not truncated; the
  loop almost never runs, and derives its keys inside its body so that not
  running it costs nothing.
  """
  accept, lam = _johnk_proposals(u, a)
  first = jnp.argmax(accept, axis=0)
  lam = jnp.take_along_axis(lam, first[None], axis=0)[0]
  done = jnp.any(accept, axis=0)

  def retry(state):
    i, done, lam = state
    acc, candidate = _johnk_proposals(retry_uniforms(i), a)
    return i + 1, done | acc, jnp.where(done, lam, candidate)

  _, _, lam = lax.while_loop(
      lambda s: ~jnp.all(s[1]), retry, (jnp.int32(0), done, lam)
  )
  return lam


def _lam_words(alpha: Any) -> int:
  """How many uint32 words per variate `_lam_from_bits` reads for α."""
  if validation.is_static_number(alpha):
    if float(alpha) == 1.0:
      return 1
    if float(alpha) > 0.5:
      return 2
  return 2 * _JOHNK_PROPOSALS


def _retry_uniforms(key, tag, shape, sample_keys=None):
  """Round i's fresh uniforms for Jöhnk's fallback, `[2, *shape]`.

  With `sample_keys` (one key per variate, for device-invariant draws) each
  variate's retries depend on its own key only.
  """

  def uniforms(i):
    # Fresh uniforms from fold_in(fold_in(key, tag), i).
    if sample_keys is None:
      k = _fold_in(_fold_in(key, tag), i)
      return _uniform01(_random_bits(k, (2,) + shape))
    draw = lambda k: _uniform01(_random_bits(_fold_in(_fold_in(k, tag), i),
                                             (2,)))
    return jax.vmap(draw, out_axes=1)(sample_keys)

  return uniforms


def _lam_from_bits(bits, alpha, retry_uniforms):
  """λ ~ Beta(α, α) from `[_lam_words(alpha), ...]` random words.

  α = 1 is Uniform(0, 1); α > 1/2 uses Ulrich's rejection-free polar method;
  α <= 1/2 Jöhnk's method, vectorised. A traced α picks among them at run
  time, so changing it does not recompile.
  """
  shape = bits.shape[1:]
  a = jnp.asarray(alpha, jnp.float32)
  samplers = (
      lambda b: _beta_johnk(
          _uniform01(b[: 2 * _JOHNK_PROPOSALS]).reshape(
              (2, _JOHNK_PROPOSALS) + shape), a, retry_uniforms),
      lambda b: _beta_ulrich(_uniform01(b[0]), _uniform01(b[1]), a),
      lambda b: _uniform01(b[0]),
  )
  if validation.is_static_number(alpha):
    which = 2 if float(alpha) == 1.0 else int(float(alpha) > 0.5)
    return samplers[which](bits)
  which = jnp.where(a == 1.0, 2, (a > 0.5).astype(jnp.int32))
  lam = lax.switch(which, samplers, bits)
  return jnp.where(a > 0, lam, jnp.nan)


def sample_lam(
    key: jax.Array, alpha: ArrayLike, shape: Sequence[int] = ()
) -> jax.Array:
  """Draws λ ~ Beta(α, α) exactly, cheaply enough to do per sample.

  `jax.random.beta` is exact too but draws two Gammas by a per-variate
  rejection loop, ~0.5 ms for 256 variates on a CPU. Symmetric Beta has
  cheaper exact methods: α = 1 is Uniform(0, 1); α > 1/2 uses Ulrich's
  rejection-free polar method; α <= 1/2 uses Jöhnk's method, vectorised.
  All the random words come from one PRNG call.

  Args:
    key: a PRNG key.
    alpha: α > 0, a Python number or a traced scalar. A traced α <= 0 gives NaN
      (there is no Beta(α, α) to draw from), which surfaces in the loss.
    shape: the shape of the draw.

  Returns:
    float32 λ in [0, 1] of the given shape.

  >>> lam = sample_lam(jax.random.key(0), 1.0, (3,))
  >>> lam.shape, bool(((lam >= 0) & (lam <= 1)).all())
  ((3,), True)
  """
  validation.check_key(key)
  validation.check_positive(alpha, "alpha")
  shape = tuple(shape)
  bits = _random_bits(key, (_lam_words(alpha),) + shape)
  return _lam_from_bits(bits, alpha, _retry_uniforms(key, 0, shape))


# ---------------------------------------------------------------------------
# Boxes


def _uniform_int(bits: jax.Array, n: ArrayLike) -> jax.Array:
  """Integers uniform in [0, n) from uint32 bits (bias below n / 2**32)."""
  return (bits % jnp.asarray(n).astype(jnp.uint32)).astype(jnp.int32)


def _box_from_lam(lam, bits_y, bits_x, height, width, placement):
  """Boxes (top, left, bottom, right) for λ; elementwise over any shape.

  'official' is the reference `rand_bbox` with H and W the right way round:
  cut = floor(side * sqrt(1 - λ)), a centre uniform over every pixel (last row
  and column included), corners centre -/+ cut // 2 clipped to the image.
  'inside' keeps the whole cut x cut box in the image, with its top-left
  corner uniform over the positions where it fits.
  """
  ratio = jnp.sqrt(1.0 - lam)
  cut_h = jnp.floor(height * ratio).astype(jnp.int32)
  cut_w = jnp.floor(width * ratio).astype(jnp.int32)
  if placement == "official":
    cy = _uniform_int(bits_y, height)
    cx = _uniform_int(bits_x, width)
    top = jnp.clip(cy - cut_h // 2, 0, height)
    bottom = jnp.clip(cy + cut_h // 2, 0, height)
    left = jnp.clip(cx - cut_w // 2, 0, width)
    right = jnp.clip(cx + cut_w // 2, 0, width)
  else:
    top = _uniform_int(bits_y, height - cut_h + 1)
    left = _uniform_int(bits_x, width - cut_w + 1)
    bottom, right = top + cut_h, left + cut_w
  return jnp.stack([top, left, bottom, right], axis=-1)


def _box_from_minmax(bits, height, width, minmax):
  """timm's `cutmix_minmax`: sides uniform in [lo, hi] of the image, inside."""
  lo, hi = minmax
  min_h, max_h = int(height * lo), int(height * hi)
  min_w, max_w = int(width * lo), int(width * hi)
  cut_h = min_h + _uniform_int(bits[0], max_h - min_h + 1)
  cut_w = min_w + _uniform_int(bits[1], max_w - min_w + 1)
  top = _uniform_int(bits[2], height - cut_h + 1)
  left = _uniform_int(bits[3], width - cut_w + 1)
  return jnp.stack([top, left, top + cut_h, left + cut_w], axis=-1)


def box_area(box: ArrayLike) -> jax.Array:
  """Pixel count of `(top, left, bottom, right)` boxes, int32 `[...]`."""
  box = jnp.asarray(box)
  return jnp.maximum(box[..., 2] - box[..., 0], 0) * jnp.maximum(
      box[..., 3] - box[..., 1], 0
  )


def lam_from_box(box: ArrayLike, height: int, width: int) -> jax.Array:
  """The own-label weight: the fraction of pixels outside the pasted boxes.

  Computed as `kept_pixels * float32(1 / (height * width))`: XLA rewrites a
  division by a constant into this product under `jit` but not in eager
  mode, so writing the product keeps eager, `jit` and `vmap` bit-identical.
  """
  kept = height * width - box_area(box)
  return kept.astype(jnp.float32) * jnp.float32(1.0 / (height * width))


def sample_box(
    key: jax.Array,
    lam: ArrayLike,
    height: int,
    width: int,
    *,
    placement: str = "official",
) -> jax.Array:
  """Draws one CutMix box for a given λ, as in the paper's `rand_bbox`.

  The box side is `floor(side * sqrt(1 - lam))`; see `sample_cutmix` for the
  placements. The box may be clipped, so recompute the label weight from it
  with `lam_from_box`.

  Args:
    key: a PRNG key.
    lam: scalar λ in [0, 1].
    height: image height.
    width: image width.
    placement: 'official' (centre uniform, box clipped) or 'inside' (box kept
      whole inside the image).

  Returns:
    int32 `[4]`: `(top, left, bottom, right)`, half-open.

  >>> box = sample_box(jax.random.key(0), 0.75, 32, 48, placement="inside")
  >>> [int(v) for v in box[2:] - box[:2]]  # sides: 32 and 48 times sqrt(0.25)
  [16, 24]
  """
  validation.check_key(key)
  validation.check_choice(placement, "placement", validation.PLACEMENTS)
  height = validation.check_size(height, "height")
  width = validation.check_size(width, "width")
  bits = jax.random.bits(key, (2,), jnp.uint32)
  return _box_from_lam(
      jnp.asarray(lam, jnp.float32), bits[0], bits[1], height, width, placement
  )


def box_mask(box: ArrayLike, height: int, width: int) -> jax.Array:
  """A bool `[height, width]` mask that is True inside the box.

  Built from coordinate comparisons (no dynamic slicing), so it works for
  traced boxes and under `vmap`.

  >>> box_mask(jnp.array([1, 0, 3, 2]), 4, 3).astype(int)
  Array([[0, 0, 0],
         [1, 1, 0],
         [1, 1, 0],
         [0, 0, 0]], dtype=int32)
  """
  box = jnp.asarray(box)
  if box.shape[-1:] != (4,):
    raise ValueError(
        f"box must be [..., 4] (top, left, bottom, right), got "
        f"{validation.describe(box)}."
    )
  rows = lax.broadcasted_iota(jnp.int32, (height, width), 0)
  cols = lax.broadcasted_iota(jnp.int32, (height, width), 1)
  b = box[..., None, None, :]
  return (
      (rows >= b[..., 0]) & (rows < b[..., 2]) & (cols >= b[..., 1])
      & (cols < b[..., 3])
  )


# ---------------------------------------------------------------------------
# Pairing


def _pairing_structure(key, batch_size, groups, pairing, mode):
  """Partner index per sample, and which draw each sample uses in pair mode.

  Pairing stays inside each of `groups` contiguous blocks of the batch, so a
  batch sharded over `groups` devices is mixed without moving images.
  """
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
    perm_bits = _random_bits(_fold_in(key, 3), (groups, block))
    perm = jnp.argsort(perm_bits, axis=1)
    perm = perm.astype(jnp.int32)
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
        (groups, block),
    ).reshape(batch_size)
  return partner, pair_draw, groups * draws_per_block


def _check_common(key, batch_size, mode, pairing, groups, prob,
                  invariant=False, cross_device=False, axis_name=None):
  validation.check_key(key)
  batch_size = validation.check_size(batch_size, "batch_size")
  validation.check_choice(mode, "mode", validation.MODES)
  validation.check_choice(pairing, "pairing", validation.PAIRINGS)
  groups = validation.check_size(groups, "groups")
  if batch_size % groups:
    raise ValueError(
        f"batch_size {batch_size} is not divisible by groups={groups}; pairing"
        " stays inside equal blocks of the batch."
    )
  if mode == "pair" and pairing == "roll":
    raise ValueError(
        "mode='pair' needs a symmetric pairing ('flip' or 'permute'); "
        "'roll' pairs i with i - 1, which is not mutual."
    )
  validation.check_probability(prob, "prob")
  if invariant:
    if mode == "batch":
      raise ValueError(
          "invariant=True needs mode='elem' or 'pair': one draw per batch "
          "depends on how the batch is split over devices."
      )
    if batch_size % 2:
      raise ValueError(
          f"invariant=True pairs samples (2k, 2k + 1), so the (per-shard) "
          f"batch size must be even, got {batch_size}."
      )
  if cross_device:
    if axis_name is None:
      raise ValueError(
          "cross_device=True needs axis_name (inside shard_map or pmap); under "
          "plain jit over a sharded batch, groups=1 already pairs across "
          "devices."
      )
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


def _fold_axis(key, axis_name):
  if axis_name is None:
    return key
  return _fold_in(key, lax.axis_index(axis_name))


class Plan(NamedTuple):
  """Who mixes with whom, and which draw each sample uses: the structure
  every sampler shares, so all honour `mode`, `pairing`, `groups`,
  `axis_name` and `invariant` alike.

  Attributes:
    key: the key for this shard's draws (the axis index folded in, unless
      invariant).
    partner: int32 `[batch]`.
    draw: int32 `[batch]`, the index of the draw each sample uses.
    num_draws: static: 1, one per pair, or the batch size.
    draw_keys: `[num_draws]` keys, draw d's from `fold_in(key, global d)`,
      for device-invariant draws; None otherwise.
    mode: static, as given.
    pairing: static, the pairing used ('flip' when invariant).
    groups: static, the pairing blocks used (pairs when invariant).
  """

  key: jax.Array
  partner: jax.Array
  draw: jax.Array
  num_draws: int
  draw_keys: Optional[jax.Array]
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


def _plan(key, batch_size, *, mode, pairing, groups, axis_name, invariant):
  """The pairing structure of a draw (validated arguments in)."""
  draw_offset = None
  if invariant:
    # Pairs are (2k, 2k + 1) of the global batch, and draw d of this shard is
    # global draw `offset + d`: nothing depends on how the batch is split.
    groups, pairing = batch_size // 2, "flip"
    draw_offset = 0 if axis_name is None else lax.axis_index(axis_name)
    draw_offset = draw_offset * (batch_size if mode == "elem" else groups)
  else:
    key = _fold_axis(key, axis_name)
  partner, pair_draw, pair_draws = _pairing_structure(
      key, batch_size, groups, pairing, mode
  )
  samples = jnp.arange(batch_size, dtype=jnp.int32)
  num_draws, draw = {
      "batch": (1, jnp.zeros_like(samples)),
      "elem": (batch_size, samples),
      "pair": (pair_draws, pair_draw),
  }[mode]
  draw_keys = None
  if invariant:
    draw_keys = _fold_in(key, draw_offset + jnp.arange(num_draws))
  return Plan(key=key, partner=partner, draw=draw, num_draws=num_draws,
              draw_keys=draw_keys, mode=mode, pairing=pairing, groups=groups)


def _sample(
    key,
    batch_size,
    height,
    width,
    *,
    method,
    mode,
    pairing,
    groups,
    prob,
    axis_name,
    cutmix_alpha=None,
    mixup_alpha=None,
    switch_prob=None,
    op_probs=None,
    placement="official",
    cutmix_minmax=None,
    cutout_size=None,
    resize_scale=None,
    invariant=False,
    cross_device=False,
):
  """The shared sampler behind the `sample_*` functions.

  Every random word of a draw comes from one `_random_bits` call, cut into
  rows: on a CPU each PRNG call is a loop and some small kernels of its own,
  which dominated the cost of a draw.
  """
  if cross_device:
    return _sample_cross_device(
        key, batch_size, height, width, method=method, mode=mode,
        pairing=pairing, prob=prob, axis_name=axis_name,
        cutmix_alpha=cutmix_alpha, mixup_alpha=mixup_alpha,
        switch_prob=switch_prob, op_probs=op_probs, placement=placement,
        cutmix_minmax=cutmix_minmax, cutout_size=cutout_size,
        resize_scale=resize_scale,
    )
  plan = _plan(key, batch_size, mode=mode, pairing=pairing, groups=groups,
               axis_name=axis_name, invariant=invariant)
  key, partner, n = plan.key, plan.partner, plan.num_draws

  ops = tuple(Op[name.upper()] for name in op_probs) if op_probs else (
      _METHOD_OPS[method])
  use_cutmix = Op.CUTMIX in ops
  use_mixup = Op.MIXUP in ops
  always = validation.is_static_number(prob) and float(prob) == 1.0
  cutmix_alpha_drawn = _drawable(cutmix_alpha)
  mixup_alpha_drawn = _drawable(mixup_alpha)
  # The row order keeps each older sampler's random stream unchanged.
  rows = {
      "apply": 0 if always else 1,
      "switch": 1 if len(ops) > 1 else 0,
      "box": (4 if cutmix_minmax is not None else 2) if use_cutmix else 0,
      "cut_lam": _lam_words(cutmix_alpha_drawn)
                 if use_cutmix and cutmix_minmax is None else 0,
      "mix_lam": _lam_words(mixup_alpha_drawn) if use_mixup else 0,
      "cutout_box": 2 if Op.CUTOUT in ops else 0,
      "resize_box": 3 if Op.RESIZEMIX in ops else 0,
  }
  sample_keys = plan.draw_keys
  if invariant:
    words = jax.vmap(
        lambda k: _random_bits(k, (sum(rows.values()),)),
        out_axes=1)(sample_keys)
  else:
    words = _random_bits(key, (sum(rows.values()), n))
  bits, start = {}, 0
  for name, count in rows.items():
    bits[name], start = words[start : start + count], start + count

  # Each op's (lam, box) for every draw; the switch picks one per draw.
  candidates = {}
  if use_cutmix:
    if cutmix_minmax is not None:
      cut_box = _box_from_minmax(bits["box"], height, width, cutmix_minmax)
    else:
      lam_drawn = _lam_from_bits(
          bits["cut_lam"], cutmix_alpha_drawn,
          _retry_uniforms(key, 1, (n,), sample_keys))
      cut_box = _box_from_lam(
          lam_drawn, bits["box"][0], bits["box"][1], height, width, placement
      )
    cut_lam = lam_from_box(cut_box, height, width)
    if not validation.is_static_number(cutmix_alpha) and cutmix_minmax is None:
      cut_lam = jnp.where(jnp.isnan(lam_drawn), jnp.nan, cut_lam)
    candidates[Op.CUTMIX] = cut_lam, cut_box
  if use_mixup:
    mix_lam = _lam_from_bits(bits["mix_lam"], mixup_alpha_drawn,
                             _retry_uniforms(key, 2, (n,), sample_keys))
    candidates[Op.MIXUP] = mix_lam, jnp.zeros((n, 4), jnp.int32)
  if Op.CUTOUT in ops:
    candidates[Op.CUTOUT] = jnp.ones((n,), jnp.float32), _cutout_box(
        bits["cutout_box"], height, width, cutout_size)
  if Op.RESIZEMIX in ops:
    resize_box = _resize_box(bits["resize_box"], height, width, resize_scale)
    candidates[Op.RESIZEMIX] = lam_from_box(resize_box, height, width), (
        resize_box)

  if method == "mix":
    choose_cut = _uniform01(bits["switch"][0]) < switch_prob
    # alpha == 0 switches that branch off (as in timm), static or traced.
    choose_cut = jnp.where(jnp.asarray(mixup_alpha) <= 0, True, choose_cut)
    choose_cut = jnp.where(jnp.asarray(cutmix_alpha) <= 0, False, choose_cut)
    lam = jnp.where(choose_cut, cut_lam, mix_lam)
    box = jnp.where(choose_cut[:, None], cut_box, 0)
    op = jnp.where(choose_cut, Op.CUTMIX, Op.MIXUP).astype(jnp.int32)
  elif len(ops) == 1:
    lam, box = candidates[ops[0]]
    op = jnp.full((n,), int(ops[0]), jnp.int32)
  else:
    choice = _choose(bits["switch"][0], [op_probs[o.name.lower()] for o in ops])
    lam, box = candidates[ops[0]]
    for i, o in enumerate(ops[1:], 1):
      lam = jnp.where(choice == i, candidates[o][0], lam)
      box = jnp.where((choice == i)[:, None], candidates[o][1], box)
    op = jnp.asarray(ops, jnp.int32)[choice]
  if op_probs and not all(
      validation.is_static_number(p) for p in op_probs.values()):
    total = sum(jnp.asarray(p, jnp.float32) for p in op_probs.values())
    lam = jnp.where(total > 0, lam, jnp.nan)

  if not always:
    applied = _uniform01(bits["apply"][0]) < prob
    lam = jnp.where(applied, lam, 1.0)
    box = jnp.where(applied[:, None], box, 0)
    op = jnp.where(applied, op, Op.NONE).astype(jnp.int32)

  lam, box, op = (plan.per_sample(v) for v in (lam, box, op))
  if ops != (Op.CUTOUT,):
    # A sample paired with itself is left exactly as it is, and says so
    # (Cutout needs no partner).
    mixed = plan.has_partner
    if Op.CUTOUT in ops:
      mixed = mixed | (op == Op.CUTOUT)
    lam = jnp.where(mixed, lam, 1.0)
    box = jnp.where(mixed[:, None], box, 0)
    op = jnp.where(mixed, op, Op.NONE).astype(jnp.int32)
  if invariant and method == "cutout":
    partner = jnp.arange(batch_size, dtype=jnp.int32)
  return MixParams(
      lam=lam,
      box=box,
      partner=partner,
      op=op,
      height=height,
      width=width,
      pairing=plan.pairing,
      groups=plan.groups,
      method=method,
      ops=tuple(int(o) for o in ops) if method == "switch" else (),
  )


def _choose(bits, probs):
  """Index i with probability probs[i] / sum(probs), from uint32 bits.

  Thresholds are normalised cumulative sums, so a zero-probability op is
  never chosen, the last one included (its threshold is exactly 1).
  """
  cum = jnp.cumsum(jnp.stack([jnp.asarray(p, jnp.float32) for p in probs]))
  thresholds = cum[:-1] / cum[-1]
  u = _uniform01(bits)
  return jnp.sum(u[:, None] >= thresholds[None, :], axis=1).astype(jnp.int32)


def _cutout_box(bits, height, width, size):
  """Cutout's box: centred uniformly over the image, clipped to it."""
  size_h, size_w = size
  top = _uniform_int(bits[0], height) - size_h // 2
  left = _uniform_int(bits[1], width) - size_w // 2
  return jnp.stack(
      [
          jnp.clip(top, 0, height),
          jnp.clip(left, 0, width),
          jnp.clip(top + size_h, 0, height),
          jnp.clip(left + size_w, 0, width),
      ],
      axis=-1,
  )


def _resize_box(bits, height, width, scale):
  """ResizeMix's box: sides `floor(tau * side)` for tau ~ U(lo, hi), placed
  uniformly where it fits whole, so the resized partner is never clipped."""
  lo, hi = scale
  tau = lo + (hi - lo) * _uniform01(bits[0])
  box_h = jnp.floor(height * tau).astype(jnp.int32)
  box_w = jnp.floor(width * tau).astype(jnp.int32)
  top = _uniform_int(bits[1], height - box_h + 1)
  left = _uniform_int(bits[2], width - box_w + 1)
  return jnp.stack([top, left, top + box_h, left + box_w], axis=-1)


def _sample_cross_device(key, batch_size, height, width, *, axis_name,
                         **kwargs):
  """A draw for the global batch, as on one device; this shard's rows of it.

  Every shard draws the whole global batch's parameters (a few numbers per
  sample) from the same key and keeps its own rows, so the result equals a
  single-device draw with `groups=1`; `partner_rows` then fetches partners
  from the other shards with one `lax.ppermute`.
  """
  shards = lax.axis_size(axis_name)
  params = _sample(key, batch_size * shards, height, width, groups=1,
                   axis_name=None, **kwargs)
  rows = lax.axis_index(axis_name) * batch_size + jnp.arange(batch_size)
  return dataclasses.replace(
      params,
      lam=params.lam[rows],
      box=params.box[rows],
      partner=params.partner[rows],
      op=params.op[rows],
      exchange_axis=axis_name,
  )


_COMMON_ARGS_DOC = """
    mode: 'batch' (one draw for the whole batch, as in the paper), 'pair'
      (a sample and its partner share one draw, so they swap the same box) or
      'elem' (an independent draw per sample). Per-sample modes cost the same
      as 'batch': the pixel work is one fused select either way.
    pairing: 'flip' pairs sample i with batch - 1 - i (a reversal, the cheapest
      to apply; an odd batch's middle sample is paired with itself and so is
      left unchanged), 'roll' pairs i with i - 1 (torchvision's rule) and
      'permute' uses a random permutation as the official code does
      (self-pairs can occur; a self-paired sample is unchanged).
    groups: split the batch into this many equal contiguous blocks and pair
      only inside each. With the batch sharded over `groups` devices no image
      crosses a device, under plain `jax.jit` too.
    prob: chance of mixing at all (the official `cutmix_prob`), applied once:
      per batch in 'batch' mode, per pair in 'pair' mode, per sample in
      'elem' mode. May be traced.
    axis_name: inside `shard_map` or `pmap`, the mapped axis (or axes) whose
      index is folded into the key, so that a replicated key gives each shard
      its own draw. Pairing stays inside the shard.
    invariant: make every draw a function of the key and the global sample
      index only, so the same global batch gets bit-identical draws on 1, 2,
      4 or 8 devices, under `jit`, `shard_map` or `pmap` (with `axis_name`,
      shards are taken as consecutive blocks of the global batch). Sample
      (or pair) i draws from `fold_in(key, i)`, and pairs are the global
      samples (2k, 2k + 1), so the per-shard batch must be even and mode
      'elem' or 'pair'; `pairing` and `groups` are then not used.
    cross_device: with `axis_name`, pair over the global batch instead of
      inside each shard: the draw equals a single-device draw for the global
      batch (shards taken as consecutive blocks), and partners are fetched
      with one `lax.ppermute`: 'flip' moves every shard's whole batch (shard
      i swaps with shard n - 1 - i), 'roll' moves one sample per shard. So a
      per-device batch of 1 or 2 still gets real mixing."""


def _with_common_args(fn):
  fn.__doc__ = fn.__doc__.replace("{common_args}", _COMMON_ARGS_DOC[1:])
  return fn


def _check_alpha_or_off(alpha, name):
  validation.check_positive(alpha, name, allow_zero=True)


@_with_common_args
def sample_cutmix(
    key: jax.Array,
    batch_size: int,
    height: int,
    width: int,
    *,
    alpha: ArrayLike = 1.0,
    prob: ArrayLike = 1.0,
    mode: str = "batch",
    pairing: str = "flip",
    groups: int = 1,
    placement: str = "official",
    minmax: Optional[tuple[float, float]] = None,
    axis_name: AxisName = None,
    invariant: bool = False,
    cross_device: bool = False,
) -> MixParams:
  """Draws CutMix parameters (Yun et al., ICCV 2019, arXiv:1905.04899).

  λ ~ Beta(α, α); the box has sides `floor(height * sqrt(1 - λ))` and
  `floor(width * sqrt(1 - λ))`, and `lam` is recomputed from the box actually
  pasted, so label weights always equal pixel fractions.

  Args:
    key: a PRNG key.
    batch_size: static batch size.
    height: static image height.
    width: static image width.
    alpha: Beta(α, α) parameter, > 0; may be traced.
    placement: 'official' centres the box uniformly over all pixels and clips
      it (the paper's `rand_bbox`); 'inside' keeps the box whole inside the
      image (the common tutorial variant, drawn without rejection).
    minmax: timm's `cutmix_minmax`: if given, box sides are uniform in
      `[lo * side, hi * side]` (inside the image) and α is not used.
{common_args}

  Returns:
    A `MixParams` with `method='cutmix'`.

  >>> p = sample_cutmix(jax.random.key(0), 4, 32, 32, mode="elem")
  >>> p.lam.shape, p.box.shape, p.partner.tolist()
  ((4,), (4, 4), [3, 2, 1, 0])
  """
  batch_size, groups = _check_common(
      key, batch_size, mode, pairing, groups, prob, invariant,
      cross_device, axis_name)
  height = validation.check_size(height, "height")
  width = validation.check_size(width, "width")
  validation.check_choice(placement, "placement", validation.PLACEMENTS)
  if minmax is None:
    validation.check_positive(alpha, "alpha")
  else:
    minmax = _check_minmax(minmax)
  return _sample(
      key, batch_size, height, width, method="cutmix", mode=mode,
      pairing=pairing, groups=groups, prob=prob, axis_name=axis_name,
      invariant=invariant, cross_device=cross_device,
      cutmix_alpha=alpha, placement=placement, cutmix_minmax=minmax,
  )


def _check_minmax(minmax):
  try:
    lo, hi = (float(v) for v in minmax)
  except (TypeError, ValueError):
    raise ValueError(
        f"minmax must be a pair (lo, hi) of floats, got {minmax!r}."
    ) from None
  if not 0.0 <= lo <= hi <= 1.0:
    raise ValueError(f"minmax must satisfy 0 <= lo <= hi <= 1, got {minmax!r}.")
  return lo, hi


@_with_common_args
def sample_mixup(
    key: jax.Array,
    batch_size: int,
    *,
    alpha: ArrayLike = 1.0,
    prob: ArrayLike = 1.0,
    mode: str = "batch",
    pairing: str = "flip",
    groups: int = 1,
    axis_name: AxisName = None,
    invariant: bool = False,
    cross_device: bool = False,
) -> MixParams:
  """Draws MixUp parameters (Zhang et al., ICLR 2018, arXiv:1710.09412).

  Each mixed sample becomes `lam * own + (1 - lam) * partner` with
  λ ~ Beta(α, α), and so does its label.

  Args:
    key: a PRNG key.
    batch_size: static batch size.
    alpha: Beta(α, α) parameter, > 0; may be traced.
{common_args}

  Returns:
    A `MixParams` with `method='mixup'` and empty boxes; it applies to any
    spatial size.

  >>> p = sample_mixup(jax.random.key(0), 3, alpha=0.2)
  >>> p.partner.tolist(), p.op.tolist()  # the middle sample pairs with itself
  ([2, 1, 0], [1, 0, 1])
  """
  batch_size, groups = _check_common(
      key, batch_size, mode, pairing, groups, prob, invariant,
      cross_device, axis_name)
  validation.check_positive(alpha, "alpha")
  return _sample(
      key, batch_size, None, None, method="mixup", mode=mode,
      pairing=pairing, groups=groups, prob=prob, axis_name=axis_name,
      invariant=invariant, cross_device=cross_device,
      mixup_alpha=alpha,
  )


@_with_common_args
def sample_mix(
    key: jax.Array,
    batch_size: int,
    height: int,
    width: int,
    *,
    mixup_alpha: ArrayLike = 0.8,
    cutmix_alpha: ArrayLike = 1.0,
    switch_prob: ArrayLike = 0.5,
    prob: ArrayLike = 1.0,
    mode: str = "batch",
    pairing: str = "flip",
    groups: int = 1,
    placement: str = "official",
    cutmix_minmax: Optional[tuple[float, float]] = None,
    axis_name: AxisName = None,
    invariant: bool = False,
    cross_device: bool = False,
) -> MixParams:
  """Draws the CutMix-or-MixUp switch, as timm's `Mixup` does.

  With probability `prob` a draw mixes; a mixing draw is CutMix with
  probability `switch_prob` and MixUp otherwise. The choice is made per batch,
  per pair or per sample, following `mode`.

  Args:
    key: a PRNG key.
    batch_size: static batch size.
    height: static image height.
    width: static image width.
    mixup_alpha: MixUp's Beta parameter; 0 turns MixUp off. May be traced.
    cutmix_alpha: CutMix's Beta parameter; 0 turns CutMix off. May be traced.
    switch_prob: chance that a mixing draw is CutMix when both are on.
    placement: CutMix box placement, as in `sample_cutmix`.
    cutmix_minmax: as `minmax` in `sample_cutmix`; turns CutMix on regardless
      of `cutmix_alpha`.
{common_args}

  Returns:
    A `MixParams` with `method='mix'`.

  >>> p = sample_mix(jax.random.key(1), 8, 32, 32, mode="elem")
  >>> sorted(set(p.op.tolist())) in ([1], [2], [1, 2])
  True
  """
  batch_size, groups = _check_common(
      key, batch_size, mode, pairing, groups, prob, invariant,
      cross_device, axis_name)
  height = validation.check_size(height, "height")
  width = validation.check_size(width, "width")
  validation.check_choice(placement, "placement", validation.PLACEMENTS)
  _check_alpha_or_off(mixup_alpha, "mixup_alpha")
  _check_alpha_or_off(cutmix_alpha, "cutmix_alpha")
  validation.check_probability(switch_prob, "switch_prob")
  if cutmix_minmax is not None:
    cutmix_minmax = _check_minmax(cutmix_minmax)
    if validation.is_static_number(cutmix_alpha) and float(cutmix_alpha) == 0:
      cutmix_alpha = 1.0  # minmax turns CutMix on; its α is unused.
  if (
      validation.is_static_number(mixup_alpha)
      and validation.is_static_number(cutmix_alpha)
      and float(mixup_alpha) == 0
      and float(cutmix_alpha) == 0
  ):
    raise ValueError(
        "mixup_alpha and cutmix_alpha are both 0, which turns both off; set at "
        "least one > 0."
    )
  return _sample(
      key, batch_size, height, width, method="mix", mode=mode,
      pairing=pairing, groups=groups, prob=prob, axis_name=axis_name,
      invariant=invariant, cross_device=cross_device,
      cutmix_alpha=cutmix_alpha, mixup_alpha=mixup_alpha,
      switch_prob=switch_prob, placement=placement,
      cutmix_minmax=cutmix_minmax,
  )


def sample_cutout(
    key: jax.Array,
    batch_size: int,
    height: int,
    width: int,
    *,
    size: Union[int, tuple[int, int], None] = None,
    prob: ArrayLike = 1.0,
    mode: str = "elem",
    axis_name: AxisName = None,
    invariant: bool = False,
) -> MixParams:
  """Draws Cutout boxes (DeVries & Taylor 2017, arXiv:1708.04552).

  A `size` box is centred uniformly over the image and clipped to it, as in
  the Cutout paper; labels are unchanged (`lam` is 1).

  Args:
    key: a PRNG key.
    batch_size: static batch size.
    height: static image height.
    width: static image width.
    size: box side in pixels, an int or `(height, width)`; default half of
      each image side (16 on CIFAR, the Cutout paper's CIFAR-10 setting).
    prob: chance of cutting, per batch ('batch') or per sample ('elem',
      the default, as in the Cutout paper).
    mode: 'batch' or 'elem' ('pair' is accepted and draws per pair).
    axis_name: as in `sample_cutmix`.
    invariant: as in `sample_cutmix`: each sample's box depends on the key
      and its global index only.

  Returns:
    A `MixParams` with `method='cutout'`.

  >>> p = sample_cutout(jax.random.key(0), 2, 32, 32, size=8)
  >>> p.op.tolist(), p.lam.tolist()
  ([3, 3], [1.0, 1.0])
  """
  if invariant and mode == "batch":
    raise ValueError("invariant=True needs mode='elem' or 'pair'.")
  batch_size, _ = _check_common(key, batch_size, mode, "flip", 1, prob)
  if invariant and batch_size % 2:
    raise ValueError(
        f"invariant=True needs an even (per-shard) batch, got {batch_size}.")
  height = validation.check_size(height, "height")
  width = validation.check_size(width, "width")
  return _sample(
      key, batch_size, height, width, method="cutout", mode=mode,
      pairing="flip", groups=1, prob=prob, axis_name=axis_name,
      cutout_size=_check_cutout_size(size, height, width, "size"),
      invariant=invariant,
  )


def _check_cutout_size(size, height, width, name):
  """`(height, width)` of Cutout's box; by default half of each side."""
  if size is None:
    return max(height // 2, 1), max(width // 2, 1)
  if isinstance(size, (int, np.integer)):
    size = (size, size)
  if not (
      isinstance(size, (tuple, list))
      and len(size) == 2
      and all(isinstance(s, (int, np.integer)) and s >= 0 for s in size)
  ):
    raise ValueError(
        f"{name} must be an int or a (height, width) pair of ints >= 0, got "
        f"{size!r}."
    )
  return int(size[0]), int(size[1])


def _check_scale(scale, name):
  try:
    lo, hi = (float(v) for v in scale)
  except (TypeError, ValueError):
    raise ValueError(
        f"{name} must be a pair (lo, hi) of floats, got {scale!r}.") from None
  if not 0.0 <= lo <= hi <= 1.0:
    raise ValueError(f"{name} must satisfy 0 <= lo <= hi <= 1, got {scale!r}.")
  return lo, hi


@_with_common_args
def sample_resizemix(
    key: jax.Array,
    batch_size: int,
    height: int,
    width: int,
    *,
    scale: tuple[float, float] = (0.1, 0.8),
    prob: ArrayLike = 1.0,
    mode: str = "batch",
    pairing: str = "flip",
    groups: int = 1,
    axis_name: AxisName = None,
    invariant: bool = False,
    cross_device: bool = False,
) -> MixParams:
  """Draws ResizeMix boxes (Qin et al. 2020, arXiv:2012.11101).

  The whole partner image, resized to the box, is pasted into it: nothing of
  the partner is cut away, so its label is always present. The box keeps the
  image's aspect ratio, with sides `floor(tau * height)` and
  `floor(tau * width)` for tau ~ Uniform(lo, hi), and is placed uniformly
  where it fits whole. `lam` is the exact fraction of pixels outside it.
  `apply_params` does the resizing (antialiased linear by default), on a
  canvas of fixed size, so the op stays jit-able.

  Args:
    key: a PRNG key.
    batch_size: static batch size.
    height: static image height.
    width: static image width.
    scale: `(lo, hi)`, the range of tau, the box side as a fraction of the
      image side; the paper's default (0.1, 0.8).
{common_args}

  Returns:
    A `MixParams` with `method='resizemix'`.

  >>> p = sample_resizemix(jax.random.key(0), 2, 32, 32, scale=(0.5, 0.5))
  >>> (p.box[:, 2:] - p.box[:, :2]).tolist(), p.lam.tolist()
  ([[16, 16], [16, 16]], [0.75, 0.75])
  """
  batch_size, groups = _check_common(
      key, batch_size, mode, pairing, groups, prob, invariant, cross_device,
      axis_name)
  height = validation.check_size(height, "height")
  width = validation.check_size(width, "width")
  return _sample(
      key, batch_size, height, width, method="resizemix", mode=mode,
      pairing=pairing, groups=groups, prob=prob, axis_name=axis_name,
      invariant=invariant, cross_device=cross_device,
      resize_scale=_check_scale(scale, "scale"),
  )


SWITCH_OPS = ("cutmix", "mixup", "cutout", "resizemix")


@_with_common_args
def sample_switch(
    key: jax.Array,
    batch_size: int,
    height: int,
    width: int,
    *,
    probs: Mapping[str, ArrayLike],
    cutmix_alpha: ArrayLike = 1.0,
    mixup_alpha: ArrayLike = 0.8,
    cutout_size: Union[int, tuple[int, int], None] = None,
    resize_scale: tuple[float, float] = (0.1, 0.8),
    prob: ArrayLike = 1.0,
    mode: str = "batch",
    pairing: str = "flip",
    groups: int = 1,
    placement: str = "official",
    cutmix_minmax: Optional[tuple[float, float]] = None,
    axis_name: AxisName = None,
    invariant: bool = False,
    cross_device: bool = False,
) -> MixParams:
  """Draws a switch among CutMix, MixUp, Cutout and ResizeMix.

  With probability `prob` a draw mixes (applied once, as everywhere); a
  mixing draw is then op `name` with probability
  `probs[name] / sum(probs.values())`. Per batch, pair or sample, following
  `mode`. Each op's parameters are drawn as by its own sampler. Only the ops
  named in `probs` are compiled into `apply_params`.

  Args:
    key: a PRNG key.
    batch_size: static batch size.
    height: static image height.
    width: static image width.
    probs: relative weights of the ops, a dict with some of the keys
      'cutmix', 'mixup', 'cutout', 'resizemix'; values >= 0, may be traced
      (a traced all-zero set gives NaN `lam`, which surfaces in the loss).
    cutmix_alpha: CutMix's Beta parameter, > 0; may be traced.
    mixup_alpha: MixUp's Beta parameter, > 0; may be traced.
    cutout_size: Cutout's box side, as `size` in `sample_cutout`.
    resize_scale: ResizeMix's side range, as `scale` in `sample_resizemix`.
    placement: CutMix box placement, as in `sample_cutmix`.
    cutmix_minmax: as `minmax` in `sample_cutmix`.
{common_args}

  Returns:
    A `MixParams` with `method='switch'` and `ops` the chosen ops.

  >>> p = sample_switch(jax.random.key(0), 8, 32, 32, mode="elem",
  ...                   probs={"cutmix": 0.5, "cutout": 0.25, "resizemix": 0.25})
  >>> set(p.op.tolist()) <= {Op.CUTMIX, Op.CUTOUT, Op.RESIZEMIX}
  True
  """
  batch_size, groups = _check_common(
      key, batch_size, mode, pairing, groups, prob, invariant, cross_device,
      axis_name)
  height = validation.check_size(height, "height")
  width = validation.check_size(width, "width")
  validation.check_choice(placement, "placement", validation.PLACEMENTS)
  if not isinstance(probs, Mapping) or not probs:
    raise ValueError(
        f"probs must be a non-empty dict from op names {SWITCH_OPS} to "
        f"weights, got {probs!r}.")
  unknown = sorted(set(map(str, probs)) - set(SWITCH_OPS))
  if unknown:
    raise ValueError(
        f"probs has unknown ops {unknown}; the ops are {SWITCH_OPS}.")
  for name, weight in probs.items():
    validation.check_positive(weight, f"probs[{name!r}]", allow_zero=True)
  if all(validation.is_static_number(w) for w in probs.values()) and not sum(
      float(w) for w in probs.values()):
    raise ValueError(f"probs are all 0, got {dict(probs)!r}; make one > 0.")
  if "cutmix" in probs and cutmix_minmax is None:
    validation.check_positive(cutmix_alpha, "cutmix_alpha")
  if "mixup" in probs:
    validation.check_positive(mixup_alpha, "mixup_alpha")
  if cutmix_minmax is not None:
    cutmix_minmax = _check_minmax(cutmix_minmax)
  return _sample(
      key, batch_size, height, width, method="switch", mode=mode,
      pairing=pairing, groups=groups, prob=prob, axis_name=axis_name,
      invariant=invariant, cross_device=cross_device,
      op_probs={name: probs[name] for name in SWITCH_OPS if name in probs},
      cutmix_alpha=cutmix_alpha, mixup_alpha=mixup_alpha,
      placement=placement, cutmix_minmax=cutmix_minmax,
      cutout_size=_check_cutout_size(cutout_size, height, width,
                                     "cutout_size"),
      resize_scale=_check_scale(resize_scale, "resize_scale"),
  )


def _drawable(alpha):
  """A static α of 0 switches its branch off: draw with α = 1, never used."""
  if validation.is_static_number(alpha) and float(alpha) == 0:
    return 1.0
  return alpha
