"""Drawing mixing parameters: λ, boxes, partners and which operation.

Everything here works on per-sample vectors (a few hundred numbers), never on
pixels, so it is cheap next to the pixel work in `apply.py`.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from typing import Any, Optional, Union

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from cutmix_jax._src import beta
from cutmix_jax._src import compiled
from cutmix_jax._src import pairing as pairing_lib
from cutmix_jax._src import prng
from cutmix_jax._src import validation

ArrayLike = jax.typing.ArrayLike
AxisName = pairing_lib.AxisName


class Op(enum.IntEnum):
  """What `apply_params` does to a sample."""

  NONE = 0  # left unchanged
  MIXUP = 1  # blended with its partner: lam * own + (1 - lam) * partner
  CUTMIX = 2  # box pasted from its partner
  CUTOUT = 3  # box filled with a constant
  RESIZEMIX = 4  # the whole partner, resized, pasted into the box


# The ops each sampler can draw.
_METHOD_OPS = {
    "cutmix": (Op.CUTMIX,),
    "mixup": (Op.MIXUP,),
    "mix": (Op.CUTMIX, Op.MIXUP),
    "cutout": (Op.CUTOUT,),
    "resizemix": (Op.RESIZEMIX,),
}
ALL_OPS = (int(Op.MIXUP), int(Op.CUTMIX), int(Op.CUTOUT), int(Op.RESIZEMIX))
BOX_OPS = (int(Op.CUTMIX), int(Op.CUTOUT), int(Op.RESIZEMIX))
LABEL_OPS = (int(Op.MIXUP), int(Op.CUTMIX), int(Op.RESIZEMIX))


@dataclasses.dataclass(frozen=True)
class MixParams:
  """One draw of mixing parameters for a batch, as returned by `sample_*`.

  Arrays are per sample, so one draw can be applied to images, segmentation
  maps or any other batch-major array with `apply_params`, and to labels with
  `mix_labels`. Every applier follows `op`: a sample's box is used only if
  its op is CutMix, Cutout or ResizeMix, and its label is mixed with `lam`
  only if its op is MixUp, CutMix or ResizeMix.

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
    ops: static, the `Op`s (other than NONE) that `op` may hold: the appliers
      compile code for these only. The samplers set it to what they can
      draw; the default allows all four. A concrete `op` outside it is
      rejected; a traced one is applied as NONE by every applier.
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
  ops: tuple[int, ...] = ALL_OPS
  exchange_axis: Any = None

  @property
  def possible_ops(self) -> tuple[Op, ...]:
    """The ops this draw may hold, known at trace time."""
    return tuple(Op(o) for o in self.ops)


jax.tree_util.register_dataclass(
    MixParams,
    data_fields=["lam", "box", "partner", "op"],
    meta_fields=["height", "width", "pairing", "groups", "ops",
                 "exchange_axis"],
)


def honoured(params) -> tuple[jax.Array, jax.Array, jax.Array]:
  """`(op, box, lam)` of a draw as every applier applies it.

  An op outside `params.ops` is rejected when `op` is concrete and applied
  as NONE when traced (no code was compiled for it); a box counts only under
  a box op, and `lam` only under an op that mixes labels.
  """
  ops = tuple(int(o) for o in params.ops)
  unknown = sorted(set(ops) - set(ALL_OPS))
  if unknown:
    raise ValueError(
        f"params.ops must hold ops from {[Op(o).name for o in ALL_OPS]}, got "
        f"{unknown}.")
  if not isinstance(params.op, jax.core.Tracer):
    seen = set(np.unique(np.asarray(params.op)).tolist()) - {int(Op.NONE)}
    if not seen <= set(ops):
      names = sorted(Op(o).name if o in set(Op) else str(o) for o in seen
                     - set(ops))
      raise ValueError(
          f"params.op holds {names}, which params.ops "
          f"{[Op(o).name for o in ops]} does not allow: the appliers compile "
          "only the ops in `ops`. Pass ops= with every op the draw holds.")
  op = jnp.asarray(params.op, jnp.int32)
  known = jnp.isin(op, jnp.asarray(ops, jnp.int32)) if ops else jnp.zeros_like(
      op, bool)
  op = jnp.where(known, op, int(Op.NONE))
  box_ops = [o for o in ops if o in BOX_OPS]
  has_box = jnp.isin(op, jnp.asarray(box_ops, jnp.int32)) if box_ops else (
      jnp.zeros_like(op, bool))
  box = jnp.where(has_box[:, None], params.box, 0)
  label_ops = [o for o in ops if o in LABEL_OPS]
  mixes = jnp.isin(op, jnp.asarray(label_ops, jnp.int32)) if label_ops else (
      jnp.zeros_like(op, bool))
  lam = jnp.where(mixes, params.lam, jnp.ones((), params.lam.dtype))
  return op, box, lam


# ---------------------------------------------------------------------------
# λ ~ Beta(α, α)


@compiled.compiled
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
  size = math.prod(shape)
  words = prng.bits(prng.fold_in(key, pairing_lib.WORDS), beta.rows_needed(alpha),
                    size)
  lam = beta.lam_from_words(words, alpha,
                            prng.fold_in(key, pairing_lib.RETRY_FIRST))
  return lam.reshape(shape)


# ---------------------------------------------------------------------------
# Boxes


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
    cy = prng.uniform_int(bits_y, height)
    cx = prng.uniform_int(bits_x, width)
    top = jnp.clip(cy - cut_h // 2, 0, height)
    bottom = jnp.clip(cy + cut_h // 2, 0, height)
    left = jnp.clip(cx - cut_w // 2, 0, width)
    right = jnp.clip(cx + cut_w // 2, 0, width)
  else:
    top = prng.uniform_int(bits_y, height - cut_h + 1)
    left = prng.uniform_int(bits_x, width - cut_w + 1)
    bottom, right = top + cut_h, left + cut_w
  return jnp.stack([top, left, bottom, right], axis=-1)


def _box_from_minmax(bits, height, width, minmax):
  """timm's `cutmix_minmax`: sides uniform in [lo, hi] of the image, inside."""
  lo, hi = minmax
  min_h, max_h = int(height * lo), int(height * hi)
  min_w, max_w = int(width * lo), int(width * hi)
  cut_h = min_h + prng.uniform_int(bits[0], max_h - min_h + 1)
  cut_w = min_w + prng.uniform_int(bits[1], max_w - min_w + 1)
  top = prng.uniform_int(bits[2], height - cut_h + 1)
  left = prng.uniform_int(bits[3], width - cut_w + 1)
  return jnp.stack([top, left, top + cut_h, left + cut_w], axis=-1)


def box_area(box: ArrayLike) -> jax.Array:
  """Pixel count of `(top, left, bottom, right)` boxes, int32 `[...]`.

  >>> box_area(jnp.array([[1, 0, 3, 2], [2, 2, 1, 5]])).tolist()  # 2nd empty
  [4, 0]
  """
  box = jnp.asarray(box)
  return jnp.maximum(box[..., 2] - box[..., 0], 0) * jnp.maximum(
      box[..., 3] - box[..., 1], 0
  )


def lam_from_box(box: ArrayLike, height: int, width: int) -> jax.Array:
  """The own-label weight: the fraction of pixels outside the pasted boxes.

  Computed as `kept_pixels * float32(1 / (height * width))`: XLA rewrites a
  division by a constant into this product under `jit` but not in eager
  mode, so writing the product keeps eager, `jit` and `vmap` bit-identical.

  >>> float(lam_from_box(jnp.array([0, 0, 2, 4]), 4, 4))  # 8 of 16 pasted
  0.5
  """
  kept = height * width - box_area(box)
  return kept.astype(jnp.float32) * jnp.float32(1.0 / (height * width))


@compiled.compiled
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
  bits = prng.bits(prng.fold_in(key, pairing_lib.WORDS), (0, 1), 1)[:, 0]
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


# The fixed first row of each part of a MixParams draw's words; mask and
# cuboid samplers read 'apply' and 'cut_lam' too, and their own rows from 'box'.
_ROWS = {"apply": 0, "switch": 1, "box": 2, "cut_lam": 6,
         "mix_lam": 6 + beta.ROWS, "cutout_box": 6 + 2 * beta.ROWS,
         "resize_box": 8 + 2 * beta.ROWS}
LAM_ROW = _ROWS["cut_lam"]  # a sampler's (first) λ
BOX_ROW = _ROWS["box"]  # the first of a sampler's own rows


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

  The draw's words are the rows of `_ROWS` that its ops read, from one
  `prng.bits` call (on a CPU each PRNG call costs small kernels of its own).
  The rows sit at fixed positions, so the words, and the draw, do not depend
  on which options are static.
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
  plan = pairing_lib.plan(key, batch_size, mode=mode, pairing=pairing,
                          groups=groups, axis_name=axis_name,
                          invariant=invariant)
  partner, n = plan.partner, plan.num_draws

  ops = tuple(Op[name.upper()] for name in op_probs) if op_probs else (
      _METHOD_OPS[method])
  use_cutmix = Op.CUTMIX in ops
  use_mixup = Op.MIXUP in ops
  always = validation.is_static_number(prob) and float(prob) == 1.0
  cutmix_alpha_drawn = _drawable(cutmix_alpha)
  mixup_alpha_drawn = _drawable(mixup_alpha)
  wanted = {
      "apply": () if always else (0,),
      "switch": (0,) if len(ops) > 1 else (),
      "box": (range(4) if cutmix_minmax is not None else range(2))
             if use_cutmix else (),
      "cut_lam": beta.rows_needed(cutmix_alpha_drawn)
                 if use_cutmix and cutmix_minmax is None else (),
      "mix_lam": beta.rows_needed(mixup_alpha_drawn) if use_mixup else (),
      "cutout_box": range(2) if Op.CUTOUT in ops else (),
      "resize_box": range(3) if Op.RESIZEMIX in ops else (),
  }
  rows = [_ROWS[name] + r for name, rs in wanted.items() for r in rs]
  words = plan.words(rows)
  bits, start = {}, 0
  for name, rs in wanted.items():
    bits[name], start = words[start : start + len(rs)], start + len(rs)

  # Each op's (lam, box) for every draw; the switch picks one per draw.
  candidates = {}
  if use_cutmix:
    if cutmix_minmax is not None:
      cut_box = _box_from_minmax(bits["box"], height, width, cutmix_minmax)
    else:
      lam_drawn = beta.lam_from_words(
          bits["cut_lam"], cutmix_alpha_drawn,
          plan.retry_key(pairing_lib.RETRY_FIRST), col_offset=plan.col_offset)
      cut_box = _box_from_lam(
          lam_drawn, bits["box"][0], bits["box"][1], height, width, placement
      )
    cut_lam = lam_from_box(cut_box, height, width)
    if not validation.is_static_number(cutmix_alpha) and cutmix_minmax is None:
      cut_lam = jnp.where(jnp.isnan(lam_drawn), jnp.nan, cut_lam)
    candidates[Op.CUTMIX] = cut_lam, cut_box
  if use_mixup:
    mix_lam = beta.lam_from_words(
        bits["mix_lam"], mixup_alpha_drawn,
        plan.retry_key(pairing_lib.RETRY_SECOND), col_offset=plan.col_offset)
    candidates[Op.MIXUP] = mix_lam, jnp.zeros((n, 4), jnp.int32)
  if Op.CUTOUT in ops:
    candidates[Op.CUTOUT] = jnp.ones((n,), jnp.float32), _cutout_box(
        bits["cutout_box"], height, width, cutout_size)
  if Op.RESIZEMIX in ops:
    resize_box = _resize_box(bits["resize_box"], height, width, resize_scale)
    candidates[Op.RESIZEMIX] = lam_from_box(resize_box, height, width), (
        resize_box)

  if method == "mix":
    choose_cut = prng.uniform(bits["switch"][0]) < switch_prob
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
    applied = prng.uniform(bits["apply"][0]) < prob
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
      ops=tuple(int(o) for o in ops),
  )


def _choose(bits, probs):
  """Index i with probability probs[i] / sum(probs), from uint32 bits.

  Thresholds are normalised cumulative sums, so a zero-probability op is
  never chosen, the last one included (its threshold is exactly 1).
  """
  cum = jnp.cumsum(jnp.stack([jnp.asarray(p, jnp.float32) for p in probs]))
  thresholds = cum[:-1] / cum[-1]
  u = prng.uniform(bits)
  return jnp.sum(u[:, None] >= thresholds[None, :], axis=1).astype(jnp.int32)


def _cutout_box(bits, height, width, size):
  """Cutout's box: centred uniformly over the image, clipped to it."""
  size_h, size_w = size
  top = prng.uniform_int(bits[0], height) - size_h // 2
  left = prng.uniform_int(bits[1], width) - size_w // 2
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
  tau = lo + prng.unfused((hi - lo) * prng.uniform(bits[0]))
  box_h = jnp.floor(height * tau).astype(jnp.int32)
  box_w = jnp.floor(width * tau).astype(jnp.int32)
  top = prng.uniform_int(bits[1], height - box_h + 1)
  left = prng.uniform_int(bits[2], width - box_w + 1)
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
      (or pair) i reads column i of the key's words, and pairs are the global
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


@compiled.compiled
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
    A `MixParams`.

  >>> p = sample_cutmix(jax.random.key(0), 4, 32, 32, mode="elem")
  >>> p.lam.shape, p.box.shape, p.partner.tolist()
  ((4,), (4, 4), [3, 2, 1, 0])
  """
  batch_size, groups = pairing_lib.check_common(
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


@compiled.compiled
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
    A `MixParams` with empty boxes; it applies to any
    spatial size.

  >>> p = sample_mixup(jax.random.key(0), 3, alpha=0.2)
  >>> p.partner.tolist(), p.op.tolist()  # the middle sample pairs with itself
  ([2, 1, 0], [1, 0, 1])
  """
  batch_size, groups = pairing_lib.check_common(
      key, batch_size, mode, pairing, groups, prob, invariant,
      cross_device, axis_name)
  validation.check_positive(alpha, "alpha")
  return _sample(
      key, batch_size, None, None, method="mixup", mode=mode,
      pairing=pairing, groups=groups, prob=prob, axis_name=axis_name,
      invariant=invariant, cross_device=cross_device,
      mixup_alpha=alpha,
  )


@compiled.compiled
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
    A `MixParams`.

  >>> p = sample_mix(jax.random.key(1), 8, 32, 32, mode="elem")
  >>> sorted(set(p.op.tolist())) in ([1], [2], [1, 2])
  True
  """
  batch_size, groups = pairing_lib.check_common(
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


@compiled.compiled
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
    A `MixParams`.

  >>> p = sample_cutout(jax.random.key(0), 2, 32, 32, size=8)
  >>> p.op.tolist(), p.lam.tolist()
  ([3, 3], [1.0, 1.0])
  """
  if invariant and mode == "batch":
    raise ValueError("invariant=True needs mode='elem' or 'pair'.")
  batch_size, _ = pairing_lib.check_common(key, batch_size, mode, "flip", 1, prob)
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


@compiled.compiled
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
    A `MixParams`.

  >>> p = sample_resizemix(jax.random.key(0), 2, 32, 32, scale=(0.5, 0.5))
  >>> (p.box[:, 2:] - p.box[:, :2]).tolist(), p.lam.tolist()
  ([[16, 16], [16, 16]], [0.75, 0.75])
  """
  batch_size, groups = pairing_lib.check_common(
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


@compiled.compiled
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
    A `MixParams` whose `ops` are the ops named in `probs`.

  >>> p = sample_switch(jax.random.key(0), 8, 32, 32, mode="elem",
  ...                   probs={"cutmix": 0.5, "cutout": 0.25, "resizemix": 0.25})
  >>> set(p.op.tolist()) <= {Op.CUTMIX, Op.CUTOUT, Op.RESIZEMIX}
  True
  """
  batch_size, groups = pairing_lib.check_common(
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
