"""Applying a draw (`MixParams`) to image batches and labels.

The pixel work is one elementwise expression over the batch: the box test is
four comparisons of coordinate iotas against per-sample bounds, and the result
is a `jnp.where`. XLA fuses it into a single loop that reads each sample and
its partner once and writes the output once; no mask is materialised.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from cutmix_jax._src import labels as labels_lib
from cutmix_jax._src import sampling
from cutmix_jax._src import sharding
from cutmix_jax._src import validation
from cutmix_jax._src.sampling import MixParams, Op

ArrayLike = jax.typing.ArrayLike

RESIZE_METHODS = ("linear", "nearest")  # ResizeMix's resampling


def partner_rows(params, x: jax.Array) -> jax.Array:
  """Each sample's partner, `x[params.partner]`, as cheaply as the pairing
  allows: a reversal or a roll inside each group; a gather only for 'permute'
  (or where an explicit sharding rules the cheap form out).

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


def _partner_rows_across(params: MixParams, x: jax.Array) -> jax.Array:
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


def check_params(params: MixParams, batch: int, name: str) -> None:
  if not isinstance(params, MixParams):
    raise TypeError(
        f"params must be a MixParams from a sample_* function, got "
        f"{type(params).__name__}."
    )
  if params.lam.shape != (batch,):
    raise ValueError(
        f"{name} has batch size {batch} but params were drawn for "
        f"{params.lam.shape[0] if params.lam.ndim else '?'} samples "
        f"(params.lam {validation.describe(params.lam)})."
    )


def _spatial_view(x: jax.Array, h_axis: int):
  """Views `x` as [batch, other, height, width * trailing] when that is free.

  Folding the trailing axes (channels) into the width lets the box test run
  on fewer, longer rows, which XLA vectorises better than a broadcast over a
  short channel axis; the column bounds are scaled by the folded size. Arrays
  explicitly sharded along a non-batch axis are left as they are.

  Returns:
    The view, its height axis and the column scale.
  """
  if not sharding.only_batch_sharded(x):
    return x, h_axis, 1
  shape = x.shape
  lead = math.prod(shape[1:h_axis])
  trailing = math.prod(shape[h_axis + 2 :])
  view_shape = (shape[0], lead, shape[h_axis], shape[h_axis + 1] * trailing)
  return sharding.reshape(x, view_shape), 2, trailing


def _in_box(box: jax.Array, shape, h_axis: int, col_scale: int) -> jax.Array:
  """Bool mask, True inside each sample's box, from iotas vs the bounds.

  The row test is made on a `[batch, .., height, 1]` iota and the column test
  on a `[batch, .., 1, width]` one; only their AND is broadcast to the full
  shape, inside the fused select. Comparing full-size iotas instead cost
  four compares per pixel, which showed on uint8 (1.5x a copy vs 1.3x).
  """
  ndim = len(shape)
  row_shape = [1] * ndim
  row_shape[0], row_shape[h_axis] = shape[0], shape[h_axis]
  col_shape = [1] * ndim
  col_shape[0], col_shape[h_axis + 1] = shape[0], shape[h_axis + 1]
  rows = lax.broadcasted_iota(jnp.int32, row_shape, h_axis)
  cols = lax.broadcasted_iota(jnp.int32, col_shape, h_axis + 1)
  bounds = box.reshape((box.shape[0],) + (1,) * (ndim - 1) + (4,))
  top, left, bottom, right = (bounds[..., i] for i in range(4))
  in_rows = (rows >= top) & (rows < bottom)
  in_cols = (cols >= left * col_scale) & (cols < right * col_scale)
  return in_rows & in_cols


def _per_sample(values: jax.Array, ndim: int) -> jax.Array:
  return values.reshape((-1,) + (1,) * (ndim - 1))


# 1.5 * 2**23: adding it to a float32 of magnitude below 2**22 leaves the
# value rounded to the nearest integer, ties to even (IEEE round-to-nearest),
# in the low mantissa bits.
_ROUNDER = np.float32(1.5 * 2**23)


def _round_to_small_int(value: jax.Array, dtype) -> jax.Array:
  """round-half-even of float32 `value` into an integer dtype of <= 16 bits.

  Equal to `jnp.round(value).astype(dtype)` for values in the dtype's range,
  but two vectorised integer ops instead of a rounding call per element,
  which made uint8 MixUp several times slower than a copy on CPUs. (A plain
  `(value + c) - c` would be folded away by XLA's simplifier.)
  """
  bits = lax.bitcast_convert_type(value + _ROUNDER, jnp.uint32)
  width = jnp.iinfo(dtype).bits
  unsigned = jnp.dtype(f"uint{width}")
  low = (bits & jnp.uint32(2**width - 1)).astype(unsigned)
  return lax.bitcast_convert_type(low, dtype) if dtype != unsigned else low


def _blend(x, partner, lam):
  """`lam * x + (1 - lam) * partner`, computed in float32 (or wider).

  Written with a single multiply, `partner + lam * (x - partner)`: XLA's CPU
  backend contracts a multiply-add into an FMA, and with two products which
  one it contracts depends on the fusion, so a sharded and an unsharded
  compilation would differ in the last bit.

  `lam` must lie in [0, 1], as every sampler's does: the result then lies
  between the two inputs, so integer outputs need no clipping.
  """
  dtype = x.dtype
  compute = jnp.promote_types(dtype, jnp.float32)
  w = _per_sample(lam.astype(compute), x.ndim)
  if jnp.issubdtype(dtype, jnp.integer) and jnp.iinfo(dtype).bits <= 16:
    # The difference is taken in int32 (exact) and converted once: two
    # uint8 -> float32 conversions per pixel made uint8 MixUp twice as slow.
    # The float result is the same: small integers convert exactly.
    diff = (x.astype(jnp.int32) - partner.astype(jnp.int32)).astype(jnp.float32)
    out = partner.astype(jnp.int32).astype(jnp.float32) + w * diff
    return _round_to_small_int(out, dtype)
  partner = partner.astype(compute)
  out = partner + w * (x.astype(compute) - partner)
  if jnp.issubdtype(dtype, jnp.integer):
    info = jnp.iinfo(dtype)
    out = jnp.clip(jnp.round(out), info.min, info.max)
  return out.astype(dtype)


def apply_params(
    params: MixParams,
    x: ArrayLike,
    *,
    layout: str = "NHWC",
    fill_value: ArrayLike = 0,
    resize: str = "linear",
) -> jax.Array:
  """Applies one draw to a batch-major array.

  The same `params` can be applied to images, masks or any array whose
  spatial axes match the draw, so they all see the same boxes and partners.

  - CutMix samples take the partner's pixels inside their box.
  - Cutout samples take `fill_value` inside their box.
  - MixUp samples become `lam * own + (1 - lam) * partner`, computed in
    float32; integer arrays are rounded to nearest, ties to even (as
    `np.round`), and cast back (exact for the endpoints, so unmixed samples
    keep their values).
  - ResizeMix samples take their whole partner, resized to the box, inside
    the box (see `resize`).
  - Other samples are returned unchanged.

  Selects keep the dtype and the exact values of the input.

  Args:
    params: a draw from any of the box or blend samplers (`sample_cutmix`,
      `sample_mixup`, `sample_mix`, `sample_cutout`, `sample_resizemix`,
      `sample_switch`).
    x: the array, `[batch, height, width, channels]` by default.
    layout: the axes of `x`: 'NHWC', 'NCHW', 'NHW', or with extra axes such as
      video 'NTHWC' or 'NCTHW'. Axes other than N, H and W share the box of
      their sample, so every frame of a clip gets the same box.
    fill_value: Cutout's fill, a scalar or an array broadcastable to the
      trailing axes after 'W' (for example per-channel `[channels]`).
    resize: ResizeMix's resampling: 'linear' (antialiased, computed in
      float32, rounded back for integer dtypes) or 'nearest' (copies values,
      for label maps; `apply_tree` uses it for select leaves). Other ops
      ignore it.

  Returns:
    An array with the shape and dtype of `x`.

  >>> from cutmix_jax import sample_cutmix
  >>> x = jnp.arange(2 * 4 * 4).reshape(2, 4, 4, 1)
  >>> p = sample_cutmix(jax.random.key(0), 2, 4, 4)
  >>> out = apply_params(p, x)
  >>> out.shape == x.shape and out.dtype == x.dtype
  True
  """
  x = jnp.asarray(x)
  batch, height, width, h_axis = validation.check_images(x, layout, "x")
  check_params(params, batch, "x")
  if params.height is not None and (height, width) != (
      params.height,
      params.width,
  ):
    raise ValueError(
        f"x has spatial size {(height, width)} (layout {layout!r}, "
        f"{validation.describe(x)}) but params were drawn for "
        f"{(params.height, params.width)}."
    )
  ops = params.possible_ops
  if Op.RESIZEMIX in ops:
    validation.check_choice(resize, "resize", RESIZE_METHODS)
    if resize == "linear" and x.dtype == jnp.bool_:
      raise TypeError("x of dtype bool needs resize='nearest' for ResizeMix.")
  if Op.MIXUP in ops and x.dtype == jnp.bool_:
    raise TypeError("x of dtype bool cannot be blended by MixUp.")

  # Resizing needs the true layout; the other ops run on a folded view.
  if Op.RESIZEMIX in ops:
    view, view_h_axis, col_scale = x, h_axis, 1
  else:
    view, view_h_axis, col_scale = _spatial_view(x, h_axis)
  op, box, lam = sampling.honoured(params)
  in_box = _in_box(box, view.shape, view_h_axis, col_scale)
  op = _per_sample(op, view.ndim)
  needs_partner = any(o in ops for o in (Op.CUTMIX, Op.MIXUP, Op.RESIZEMIX))
  partner = partner_rows(params, view) if needs_partner else None
  # What each sample takes inside its box, chosen per sample by its op.
  pasted = None
  for box_op in (Op.CUTMIX, Op.RESIZEMIX, Op.CUTOUT):
    if box_op not in ops:
      continue
    if box_op == Op.CUTMIX:
      value = partner
    elif box_op == Op.RESIZEMIX:
      value = _resize_into_box(partner, box, view_h_axis, resize)
    else:
      value = _fill_row(jnp.asarray(fill_value), x, h_axis,
                        folded=view is not x)
    pasted = value if pasted is None else jnp.where(op == box_op, value, pasted)
  out = view if pasted is None else jnp.where(in_box, pasted, view)
  if Op.MIXUP in ops:
    out = jnp.where(op == Op.MIXUP, _blend(view, partner, lam), out)
  return sharding.reshape(out, x.shape) if out.shape != x.shape else out


def _resize_into_box(partner, box, h_axis, method):
  """Each partner image resized to fill its sample's box, on a full canvas.

  Pixels outside the box are don't-care (the caller selects inside only).
  'linear' is `jax.image.scale_and_translate` with an antialiased triangle
  kernel, computed in float32 and rounded back for integer dtypes. 'nearest'
  takes source pixel `(offset * side) // box_side` (PyTorch's 'nearest'), in
  integers, so it only copies values (for label maps). Box sides and offsets
  are per sample and traced; the output shape is static.
  """
  height, width = partner.shape[h_axis], partner.shape[h_axis + 1]
  box = sharding.like_batch(box, partner)
  top, left = box[:, 0], box[:, 1]
  box_h = jnp.maximum(box[:, 2] - top, 1)
  box_w = jnp.maximum(box[:, 3] - left, 1)
  if method == "nearest":
    def source(start, size, side):
      pos = lax.broadcasted_iota(jnp.int32, (1, side), 1)
      idx = ((pos - start[:, None]) * side) // size[:, None]
      return jnp.clip(idx, 0, side - 1)

    def gather(img, rows, cols):
      return jnp.take(jnp.take(img, rows, axis=h_axis - 1), cols,
                      axis=h_axis)

    return jax.vmap(gather)(partner, source(top, box_h, height),
                            source(left, box_w, width))
  dtype = partner.dtype
  compute = jnp.promote_types(dtype, jnp.float32)
  scale = jnp.stack([box_h / height, box_w / width], axis=-1).astype(
      jnp.float32)
  translation = jnp.stack([top, left], axis=-1).astype(jnp.float32)

  def resize(img, scale, translation):
    return jax.image.scale_and_translate(
        img.astype(compute), img.shape, (h_axis - 1, h_axis), scale,
        translation, "linear", antialias=True)

  out = jax.vmap(resize)(partner, scale, translation)
  if jnp.issubdtype(dtype, jnp.integer):
    info = jnp.iinfo(dtype)
    out = jnp.clip(jnp.round(out), info.min, info.max)
  return out.astype(dtype)


def _fill_row(fill, x, h_axis, *, folded):
  """Cutout's fill broadcast to the trailing part of one row of the view."""
  trailing_shape = tuple(x.shape[h_axis + 2 :])
  try:
    ok = jnp.broadcast_shapes(fill.shape, trailing_shape) == trailing_shape
  except ValueError:
    ok = False
  if not ok:
    raise ValueError(
        f"fill_value {validation.describe(fill)} must be a scalar or "
        f"broadcastable to the axes after W {trailing_shape}."
    )
  width = x.shape[h_axis + 1]
  fill = jnp.broadcast_to(fill, (width,) + trailing_shape).astype(x.dtype)
  return fill.reshape(-1) if folded else fill


def mix_labels(
    params: MixParams,
    labels: ArrayLike,
    *,
    num_classes: int | None = None,
    label_smoothing: ArrayLike = 0.0,
) -> jax.Array:
  """Mixes labels with a draw: `lam * y + (1 - lam) * y[partner]`.

  Args:
    params: the draw that was applied to the images.
    labels: integer ids `[batch]` (needs `num_classes`) or float targets
      `[batch, num_classes]`: one-hot, soft or multi-hot, mixed linearly.
    num_classes: number of classes, for integer labels.
    label_smoothing: timm's smoothing `s`, applied before mixing: one-hot
      rows become `off = s / K`, `on = 1 - s + s / K`. May be traced.

  Returns:
    float `[batch, num_classes]` targets (float32, or wider for wider input).

  >>> from cutmix_jax import sample_mixup
  >>> p = sample_mixup(jax.random.key(0), 2)
  >>> y = mix_labels(p, jnp.array([0, 1]), num_classes=2)
  >>> bool(jnp.allclose(y.sum(-1), 1.0)), bool(jnp.allclose(y[0], y[1, ::-1]))
  (True, True)
  """
  labels = jnp.asarray(labels)
  batch = params.lam.shape[0] if params.lam.ndim else 0
  num_classes = validation.check_labels(labels, batch, num_classes)
  check_params(params, labels.shape[0], "labels")
  targets = labels_lib.as_targets(labels, num_classes, label_smoothing)
  _, _, lam = sampling.honoured(params)
  lam = lam.astype(targets.dtype)[:, None]
  partner = partner_rows(params, targets)
  # One multiply, as in `_blend`, so every compilation rounds alike; unmixed
  # rows are kept exactly.
  return jnp.where(lam == 1, targets, partner + lam * (targets - partner))
