"""Applying any draw to a batch-major array of pixels.

`apply_params` works for every draw type through the draw protocol
(`params._Draw`): the draw's `region` says where each sample takes another
source, its `possible_ops` what it takes there. The pixel work is one elementwise expression over the batch: the box test is
four comparisons of coordinate iotas against per-sample bounds
(`boxes.broadcast_mask`), and the result is a `jnp.where`. XLA fuses it into a
single loop that reads each sample and its partner once and writes the output
once; no mask is materialised.
"""

from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from cutmix_jax._src import pairing
from cutmix_jax._src import params as params_lib
from cutmix_jax._src import sharding
from cutmix_jax._src import validation
from cutmix_jax._src.params import Op, Resize
from cutmix_jax._src.typing import ArrayLike



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


def _cast_back(out: jax.Array, dtype) -> jax.Array:
  """A float result back to `dtype`: integers are rounded to nearest (half to
  even) and clipped to the dtype's range."""
  if jnp.issubdtype(dtype, jnp.integer):
    info = jnp.iinfo(dtype)
    out = jnp.clip(jnp.round(out), info.min, info.max)
  return out.astype(dtype)


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
  return _cast_back(partner + w * (x.astype(compute) - partner), dtype)


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

  return _cast_back(jax.vmap(resize)(partner, scale, translation), dtype)


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


def _apply(params, x, h_axis, t_axis, fill_value, resize):
  """Each sample by its op: the partner (CutMix), a fill (Cutout) or the
  resized partner (ResizeMix) inside its region, selected or, for a soft
  region, blended; MixUp samples blended whole."""
  params.check_spatial(x, h_axis, t_axis)
  ops = params.possible_ops
  if Op.RESIZEMIX in ops:
    validation.check_choice(resize, "resize", params_lib.RESIZES)
    if resize == "linear" and x.dtype == jnp.bool_:
      raise TypeError("x of dtype bool needs resize='nearest' for ResizeMix.")
  if Op.MIXUP in ops and x.dtype == jnp.bool_:
    raise TypeError("x of dtype bool cannot be blended by MixUp.")
  if params.foldable:
    view, view_h_axis, col_scale = _spatial_view(x, h_axis)
  else:
    view, view_h_axis, col_scale = x, h_axis, 1
  honoured = params.honoured()
  region = honoured.region(view.shape, view_h_axis, t_axis=t_axis,
                           col_scale=col_scale)
  op = _per_sample(honoured.op, view.ndim)
  needs_partner = any(o in ops for o in (Op.CUTMIX, Op.MIXUP, Op.RESIZEMIX))
  partner = pairing.partner_rows(params, view) if needs_partner else None
  # What each sample takes inside its region, chosen per sample by its op.
  pasted = None
  for box_op in (Op.CUTMIX, Op.RESIZEMIX, Op.CUTOUT):
    if box_op not in ops:
      continue
    if box_op == Op.CUTMIX:
      value = partner
    elif box_op == Op.RESIZEMIX:
      value = _resize_into_box(partner, honoured.box, view_h_axis, resize)
    else:
      value = _fill_row(jnp.asarray(fill_value), x, h_axis,
                        folded=view is not x)
    pasted = value if pasted is None else jnp.where(op == box_op, value, pasted)
  if pasted is None:
    out = view
  elif region.dtype == jnp.bool_:
    out = jnp.where(region, pasted, view)
  else:  # a soft region blends `own + m * (pasted - own)` in float32
    if x.dtype == jnp.bool_:
      raise TypeError("x of dtype bool cannot be blended by a soft mask.")
    compute = jnp.promote_types(x.dtype, jnp.float32)
    own = view.astype(compute)
    out = _cast_back(
        own + region.astype(compute) * (pasted.astype(compute) - own),
        x.dtype)
  if Op.MIXUP in ops:
    out = jnp.where(op == Op.MIXUP, _blend(view, partner, honoured.lam), out)
  return sharding.reshape(out, x.shape) if out.shape != x.shape else out


def apply_params(
    params: params_lib.Draw,
    x: ArrayLike,
    *,
    layout: Optional[str] = None,
    fill_value: ArrayLike = 0,
    resize: Resize = "linear",
) -> jax.Array:
  """Applies one draw to a batch-major array.

  The same draw can be applied to images, masks or any array whose spatial
  axes match it, so they all see the same regions and partners. Every
  sample follows its `op`:

  - CutMix samples take the partner's pixels inside their region: the box
    of a `MixParams`, the mask of a `MaskParams` (a bool mask selects; a
    float mask blends `own + m * (partner - own)` per pixel, rounded as
    MixUp is below for integers), or the box on
    the frames `time[0] <= t < time[1]` of a `CuboidParams`.
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
    params: a draw from any sampler: a `MixParams` (`sample_cutmix`,
      `sample_mixup`, `sample_mix`, `sample_cutout`, `sample_resizemix`,
      `sample_switch`), a `MaskParams` (`sample_multibox`, `sample_fmix`) or
      a `CuboidParams` (`sample_cutmix_cuboid`).
    x: the array, `[batch, height, width, channels]` by default (`[batch,
      time, height, width, channels]` for a cuboid).
    layout: the axes of `x`: 'NHWC', 'NCHW', 'NHW', or with extra axes such as
      video 'NTHWC' or 'NCTHW'. Axes other than N, H and W (and T for a
      cuboid) share the region of their sample, so every frame of a clip
      gets the same box or mask. None means 'NHWC', or 'NTHWC' for a
      `CuboidParams`, which needs a 'T' axis.
    fill_value: Cutout's fill, a scalar or an array broadcastable to the
      trailing axes after 'W' (for example per-channel `[channels]`).
    resize: ResizeMix's resampling: 'linear' (antialiased, computed in
      float32, rounded back for integer dtypes) or 'nearest' (copies values,
      for label maps; `apply_tree` uses it for select leaves). Other ops
      ignore it.

  Returns:
    An array with the shape and dtype of `x`.

  >>> from cutmix_jax import sample_cutmix, sample_cutmix_cuboid
  >>> x = jnp.arange(2 * 4 * 4).reshape(2, 4, 4, 1)
  >>> p = sample_cutmix(jax.random.key(0), 2, 4, 4)
  >>> out = apply_params(p, x)
  >>> out.shape == x.shape and out.dtype == x.dtype
  True
  >>> c = sample_cutmix_cuboid(jax.random.key(0), 2, 4, 8, 8)
  >>> clips = jnp.stack([jnp.zeros((4, 8, 8, 1)), jnp.ones((4, 8, 8, 1))])
  >>> out = apply_params(c, clips)  # layout 'NTHWC'
  >>> bool(out[0].mean() == 1 - c.lam[0])  # the pasted voxel fraction
  True
  """
  x = jnp.asarray(x)
  if not isinstance(params, params_lib.DRAW_TYPES):
    params_lib.check(params, 0, "x")
  if layout is None:
    layout = params.default_layout
  if params.needs_time and (not isinstance(layout, str) or "T" not in layout):
    raise ValueError(
        f"layout {layout!r} has no time axis 'T', but a "
        f"{type(params).__name__} pastes over a range of frames and needs one "
        "(for example 'NTHWC').")
  batch, _, _, h_axis = validation.check_images(x, layout, "x")
  params_lib.check(params, batch, "x")
  t_axis = layout.index("T") if params.needs_time else None
  return _apply(params, x, h_axis, t_axis, fill_value, resize)
