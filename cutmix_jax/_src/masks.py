"""Mask-based mixing: multi-box masks (French et al.) and FMix (Harris et al.).

A `MaskParams` draw carries a per-sample mask over the pixels instead of a
box, and λ is always recomputed from the mask itself, so label weights equal
pixel fractions exactly, whatever the mask family.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp

from cutmix_jax._src import apply
from cutmix_jax._src import beta
from cutmix_jax._src import compiled
from cutmix_jax._src import pairing as pairing_lib
from cutmix_jax._src import prng
from cutmix_jax._src import sampling
from cutmix_jax._src import structure
from cutmix_jax._src import validation
from cutmix_jax._src.sampling import MixParams, Op

ArrayLike = jax.typing.ArrayLike


@dataclasses.dataclass(frozen=True)
class MaskParams:
  """One mask-based draw for a batch, from `sample_multibox` or `sample_fmix`.

  Attributes:
    lam: float32 `[batch]`, the weight of each sample's own label: exactly
      the fraction of its pixels kept, `1 - mean(mask)`, computed from the
      mask; 1 for samples left unchanged.
    mask: `[batch, height, width]`, where each sample takes its partner. Bool
      for hard masks (applying them is a select); float32 in [0, 1] for soft
      masks (the partner's weight per pixel; applying them blends). All
      False (zero) for samples left unchanged.
    partner: int32 `[batch]`, the sample each one is mixed with.
    op: int32 `[batch]`: `Op.CUTMIX` for mixed samples, `Op.NONE` otherwise.
    pairing: static, as in `MixParams`.
    groups: static, as in `MixParams`.
  """

  lam: jax.Array
  mask: jax.Array
  partner: jax.Array
  op: jax.Array
  pairing: str = "flip"
  groups: int = 1


jax.tree_util.register_dataclass(
    MaskParams,
    data_fields=["lam", "mask", "partner", "op"],
    meta_fields=["pairing", "groups"],
)


def _check_mask_params(params, batch, name):
  if not isinstance(params, MaskParams):
    raise TypeError(
        "params must be a MaskParams from sample_multibox or sample_fmix, got "
        f"{type(params).__name__}."
    )
  if params.lam.shape != (batch,):
    raise ValueError(
        f"{name} has batch size {batch} but params were drawn for "
        f"{params.lam.shape[0]} samples."
    )


def _finish(s, masks, taken):
  """Per-sample masks and λ from per-draw masks and their partner-pixel sums.

  `taken` is exact per draw (an integer count, or FMix's closed form), so λ
  does not depend on the order of a float reduction, which differs between
  layouts.
  """
  plan, active = s.plan, s.active
  mask = masks[plan.draw]
  mask = jnp.where(active[:, None, None], mask, jnp.zeros((), mask.dtype))
  height, width = mask.shape[1:]
  # As `lam_from_box`: one product, so eager, jit and vmap round alike.
  lam = (height * width - taken.astype(jnp.float32)) * jnp.float32(
      1.0 / (height * width))
  return MaskParams(
      lam=jnp.where(active, plan.per_sample(lam), 1.0),
      mask=mask,
      partner=plan.partner,
      op=jnp.where(active, Op.CUTMIX, Op.NONE).astype(jnp.int32),
      pairing=plan.pairing,
      groups=plan.groups,
  )


def _check_range(value, name, lo, hi):
  try:
    a, b = (float(v) for v in value)
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be a pair (lo, hi), got {value!r}.") from None
  if not lo <= a <= b <= hi:
    raise ValueError(
        f"{name} must satisfy {lo} <= lo <= hi <= {hi}, got {value!r}."
    )
  return a, b


@compiled.compiled
@structure.with_structure_args
def sample_multibox(
    key: jax.Array,
    batch_size: int,
    height: int,
    width: int,
    *,
    n_boxes: int = 1,
    area_range: tuple[float, float] = (0.25, 0.5),
    aspect_range: Optional[tuple[float, float]] = None,
    invert: bool = False,
    prob: ArrayLike = 1.0,
    mode: str = "batch",
    pairing: str = "flip",
    groups: int = 1,
    axis_name: sampling.AxisName = None,
    invariant: bool = False,
) -> MaskParams:
  """Draws multi-box CutMix masks with random areas and aspect ratios.

  The box-mask generator of French et al., "Semi-supervised semantic
  segmentation needs strong, varied perturbations" (BMVC 2020,
  arXiv:1906.01916): per draw, a mask proportion `p` uniform in
  `area_range`, split over `n_boxes` boxes of area about `p / n_boxes` each,
  with random aspect ratios, placed uniformly inside the image. The
  partner is pasted into the union of the boxes (French et al.'s reference
  code toggles overlaps instead; a union keeps "inside a box" meaning
  "from the partner"), or outside it with `invert=True` (their
  experiments' setting). λ is the exact kept-pixel fraction of the final
  mask.

  Box sides are `round(sqrt(p / n_boxes * a) * height)` and
  `round(sqrt(p / n_boxes / a) * width)` for an aspect ratio (height over
  width) `a`. By default `a` follows French et al.: the height proportion
  is `p^u` for u uniform in [0, 1] (so `a` spans [p, 1/p]); with
  `aspect_range=(lo, hi)`, `a` is log-uniform in it. A box's top-left corner
  is `round(u * (side - box_side))`, as in their code.

  Args:
    key: a PRNG key.
    batch_size: static batch size.
    height: static image height.
    width: static image width.
    n_boxes: static number of boxes per mask.
    area_range: `(lo, hi)` in [0, 1], the range of the proportion `p`.
    aspect_range: `(lo, hi)` with `0 < lo <= hi`, or None for French et
      al.'s rule.
    invert: paste the partner outside the boxes instead of inside.
{structure_args}

  Returns:
    A `MaskParams` with a bool mask.

  >>> p = sample_multibox(jax.random.key(0), 4, 16, 16, n_boxes=3, mode="elem")
  >>> p.mask.shape, p.mask.dtype
  ((4, 16, 16), dtype('bool'))
  >>> bool(jnp.allclose(p.lam, 1 - p.mask.mean((1, 2))))
  True
  """
  height = validation.check_size(height, "height")
  width = validation.check_size(width, "width")
  n_boxes = validation.check_size(n_boxes, "n_boxes")
  lo, hi = _check_range(area_range, "area_range", 0.0, 1.0)
  if aspect_range is not None:
    a_lo, a_hi = _check_range(aspect_range, "aspect_range", 0.0, float("inf"))
    if a_lo <= 0:
      raise ValueError(f"aspect_range must be > 0, got {aspect_range!r}.")

  # Rows from 2 (after 'apply' and 'switch'): per box the area, the aspect
  # and the position's two coordinates, as [4, n_boxes, num_draws].
  s = structure.draw_structure(
      key, batch_size, mode=mode, pairing=pairing, groups=groups, prob=prob,
      axis_name=axis_name, invariant=invariant,
      rows=range(2, 2 + 4 * n_boxes))
  u_all = prng.uniform(s.words).reshape(4, n_boxes, -1).transpose(0, 2, 1)
  prop = lo + prng.unfused((hi - lo) * u_all[0])
  u = u_all[1]
  pos = jnp.stack([u_all[2], u_all[3]], axis=1)
  if aspect_range is None:
    # French et al.: height proportion p^u, width p^(1 - u).
    h_prop = jnp.where(prop > 0, prop ** u, 0.0)
    w_prop = jnp.where(prop > 0, prop / jnp.where(prop > 0, h_prop, 1.0), 0.0)
  else:
    aspect = jnp.exp(jnp.log(a_lo) + prng.unfused(
        u * (jnp.log(a_hi) - jnp.log(a_lo))))
    h_prop, w_prop = jnp.sqrt(prop * aspect), jnp.sqrt(prop / aspect)
  scale = (1.0 / n_boxes) ** 0.5
  box_h = jnp.clip(jnp.round(h_prop * scale * height), 0, height)
  box_w = jnp.clip(jnp.round(w_prop * scale * width), 0, width)
  top = jnp.round((height - box_h) * pos[:, 0])
  left = jnp.round((width - box_w) * pos[:, 1])
  boxes = jnp.stack([top, left, top + box_h, left + box_w], -1)
  masks = sampling.box_mask(boxes.astype(jnp.int32), height, width).any(1)
  if invert:
    masks = ~masks
  return _finish(s, masks, masks.sum((1, 2), dtype=jnp.int32))


def _fourier_noise(plan, height, width, decay_power):
  """Low-frequency noise `[num_draws, height, width]`, as in FMix's reference.

  A complex Gaussian spectrum scaled by `1 / max(f, 1 / max(h, w))^decay`
  over the frequency magnitude `f`, taken back to pixels by a real inverse
  FFT, so larger `decay_power` gives smoother, blobbier masks. The normals
  are rows of the `NOISE` leaf, column = draw.
  """
  fy = jnp.fft.fftfreq(height)[:, None]
  fx = jnp.fft.rfftfreq(width)[None, :]
  freqs = jnp.sqrt(fx * fx + fy * fy)
  scale = 1.0 / jnp.maximum(freqs, 1.0 / max(height, width)) ** decay_power
  words = prng.bits(prng.fold_in(plan.key, pairing_lib.NOISE),
                    range(2 * freqs.size), plan.num_draws,
                    col_offset=plan.col_offset)
  re, im = prng.normal(words).T.reshape((plan.num_draws, 2) + freqs.shape
                                        ).transpose(1, 0, 2, 3)
  spectrum = (scale * re) + 1j * (scale * im)
  return jnp.fft.irfft2(spectrum, s=(height, width)).astype(jnp.float32)


@compiled.compiled
@structure.with_structure_args
def sample_fmix(
    key: jax.Array,
    batch_size: int,
    height: int,
    width: int,
    *,
    alpha: ArrayLike = 1.0,
    decay_power: float = 3.0,
    max_soft: float = 0.0,
    prob: ArrayLike = 1.0,
    mode: str = "batch",
    pairing: str = "flip",
    groups: int = 1,
    axis_name: sampling.AxisName = None,
    invariant: bool = False,
) -> MaskParams:
  """Draws FMix masks (Harris et al. 2020, arXiv:2002.12047).

  Per draw: λ ~ Beta(α, α) and a low-frequency Fourier noise image; the
  `k = round(λ * height * width)` pixels with the largest noise keep the
  sample's own values (the closest pixel count to λ; the reference draws
  the floor or the ceiling at random), and the rest come from the partner.
  The top-k is exact (a sort, then ranks), so ties cannot change the count.
  `lam` is then recomputed from the mask.

  With `max_soft > 0` the mask edge is a linear ramp over the `2 * s`
  pixels ranked around `k`, `s = int(N * min(max_soft, λ, 1 - λ))` for `N`
  pixels, as in the reference's `binarise_mask`; the mask is then float32
  and applying it blends.

  Args:
    key: a PRNG key.
    batch_size: static batch size.
    height: static image height.
    width: static image width.
    alpha: Beta(α, α) parameter of λ, > 0; may be traced.
    decay_power: static decay of the spectrum with frequency (the
      reference's default is 3); larger is smoother.
    max_soft: static softening of the mask edge, in [0, 0.5]; 0 (default)
      for a hard, bool mask.
{structure_args}

  Returns:
    A `MaskParams`; its mask is bool, or float32 when `max_soft > 0`.

  >>> p = sample_fmix(jax.random.key(0), 4, 8, 8, alpha=1.0, mode="elem")
  >>> bool(jnp.allclose(p.lam, 1 - p.mask.mean((1, 2))))
  True
  """
  height = validation.check_size(height, "height")
  width = validation.check_size(width, "width")
  validation.check_positive(alpha, "alpha")
  if not validation.is_static_number(decay_power) or float(decay_power) < 0:
    raise ValueError(
        f"decay_power must be a static number >= 0, got {decay_power!r}."
    )
  if not validation.is_static_number(max_soft) or not (
      0.0 <= float(max_soft) <= 0.5
  ):
    raise ValueError(
        f"max_soft must be a static number in [0, 0.5], got {max_soft!r}."
    )
  s = structure.draw_structure(
      key, batch_size, mode=mode, pairing=pairing, groups=groups, prob=prob,
      axis_name=axis_name, invariant=invariant,
      rows=[sampling.LAM_ROW + r for r in beta.rows_needed(alpha)])
  plan = s.plan
  lam = beta.lam_from_words(s.words, alpha,
                            plan.retry_key(pairing_lib.RETRY_FIRST),
                            col_offset=plan.col_offset)
  n = height * width
  noise = _fourier_noise(plan, height, width, decay_power)
  # rank[p] = the position of pixel p in descending noise order.
  order = jnp.argsort(-noise.reshape(plan.num_draws, n), axis=1)
  positions = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), order.shape)
  rank = jnp.zeros_like(positions).at[
      jnp.arange(plan.num_draws)[:, None], order
  ].set(positions)
  keep = jnp.round(lam * n).astype(jnp.int32)[:, None]
  if float(max_soft) == 0:
    masks = rank >= keep
    taken = n - keep[:, 0]
  else:
    soft = jnp.minimum(jnp.float32(max_soft), jnp.minimum(lam, 1 - lam))
    soft = jnp.floor(n * soft).astype(jnp.int32)[:, None]
    # The reference's linspace(1, 0, 2s) over ranks k - s .. k + s - 1, as
    # the partner's weight 1 - own.
    ramp = (rank - (keep - soft)).astype(jnp.float32) / jnp.maximum(
        2 * soft - 1, 1
    ).astype(jnp.float32)
    masks = jnp.where(
        rank < keep - soft, 0.0, jnp.where(rank >= keep + soft, 1.0, ramp)
    )
    taken = _soft_taken(keep[:, 0], soft[:, 0], n)
  out = _finish(s, masks.reshape(plan.num_draws, height, width), taken)
  if not validation.is_static_number(alpha):
    # A traced α <= 0 has no λ to draw; let the NaN show, as elsewhere.
    out = dataclasses.replace(
        out, lam=jnp.where(jnp.isnan(lam[plan.draw]), jnp.nan, out.lam)
    )
  return out


def _soft_taken(keep, soft, n):
  """The sum of a soft FMix mask, in closed form: the pixels ranked at or
  after `keep + soft` count 1, and the ramp over ranks `keep - soft + i`
  counts `i / (2 soft - 1)`. Summing the float mask instead rounds in an
  order that depends on the layout."""
  start, stop = jnp.maximum(keep - soft, 0), jnp.minimum(keep + soft, n)
  ramp = jnp.maximum(stop - start, 0)
  first = start - (keep - soft)
  full = n - jnp.clip(keep + soft, 0, n)
  ramp_sum = (ramp * (2 * first + ramp - 1) // 2).astype(jnp.float32) / (
      jnp.maximum(2 * soft - 1, 1).astype(jnp.float32))
  return full.astype(jnp.float32) + ramp_sum


def apply_mask_params(
    params: MaskParams, x: ArrayLike, *, layout: str = "NHWC"
) -> jax.Array:
  """Applies a mask draw to a batch-major array.

  A bool mask selects: each sample takes its partner's values where its
  mask is True, keeping the dtype and exact values (integer segmentation
  maps included). A float mask blends, `own + m * (partner - own)` in
  float32; integer arrays are rounded to nearest and clipped to their range.

  Args:
    params: a draw from `sample_multibox` or `sample_fmix`.
    x: the array, `[batch, height, width, channels]` by default.
    layout: the axes of `x`, as in `apply_params` ('NHWC', 'NCHW', 'NHW',
      'NTHWC', ...). Axes other than N, H and W share their sample's mask.

  Returns:
    An array with the shape and dtype of `x`.

  >>> p = sample_multibox(jax.random.key(0), 2, 8, 8)
  >>> x = jnp.stack([jnp.zeros((8, 8, 3), jnp.uint8), jnp.ones((8, 8, 3),
  ...                                                          jnp.uint8)])
  >>> out = apply_mask_params(p, x)
  >>> out.dtype, bool(jnp.all(out[0, ..., 0] == p.mask[0]))
  (dtype('uint8'), True)
  """
  x = jnp.asarray(x)
  batch, height, width, h_axis = validation.check_images(x, layout, "x")
  _check_mask_params(params, batch, "x")
  if params.mask.shape[1:] != (height, width):
    raise ValueError(
        f"x has spatial size {(height, width)} (layout {layout!r}, "
        f"{validation.describe(x)}) but the masks are "
        f"{tuple(params.mask.shape[1:])}."
    )
  shape = (batch,) + (1,) * (h_axis - 1) + (height, width)
  mask = params.mask.reshape(shape + (1,) * (x.ndim - len(shape)))
  partner = apply.partner_rows(params, x)
  if params.mask.dtype == jnp.bool_:
    return jnp.where(mask, partner, x)
  if x.dtype == jnp.bool_:
    raise TypeError("x of dtype bool cannot be blended by a soft mask.")
  compute = jnp.promote_types(x.dtype, jnp.float32)
  own = x.astype(compute)
  out = own + mask.astype(compute) * (partner.astype(compute) - own)
  if jnp.issubdtype(x.dtype, jnp.integer):
    info = jnp.iinfo(x.dtype)
    out = jnp.clip(jnp.round(out), info.min, info.max)
  return out.astype(x.dtype)


def mix_mask_labels(
    params: MaskParams,
    labels: ArrayLike,
    *,
    num_classes: Optional[int] = None,
    label_smoothing: ArrayLike = 0.0,
) -> jax.Array:
  """Mixes labels with a mask draw: `lam * y + (1 - lam) * y[partner]`.

  Exactly `mix_labels` with the draw's `lam`, which is the exact kept-pixel
  fraction of each mask.

  Args:
    params: the draw applied to the images.
    labels: integer ids `[batch]` (needs `num_classes`) or float targets
      `[batch, num_classes]`.
    num_classes: number of classes, for integer labels.
    label_smoothing: as in `mix_labels`.

  Returns:
    float `[batch, num_classes]` targets whose rows sum to 1.

  >>> p = sample_multibox(jax.random.key(0), 2, 8, 8)
  >>> y = mix_mask_labels(p, jnp.array([0, 1]), num_classes=2)
  >>> bool(jnp.all(y[:, 0] == jnp.array([p.lam[0], 1 - p.lam[1]])))
  True
  """
  labels = jnp.asarray(labels)
  _check_mask_params(params, labels.shape[0] if labels.ndim else 0, "labels")
  as_box_draw = MixParams(
      lam=params.lam,
      box=jnp.zeros(params.lam.shape + (4,), jnp.int32),
      partner=params.partner,
      op=params.op,
      pairing=params.pairing,
      groups=params.groups,
      ops=(int(Op.CUTMIX),),
  )
  return apply.mix_labels(
      as_box_draw, labels, num_classes=num_classes,
      label_smoothing=label_smoothing,
  )
