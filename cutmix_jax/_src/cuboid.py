"""Space-time CutMix for video: a cuboid pasted over a range of frames.

A box draw applied with layout 'NTHWC' pastes the same box on every frame,
with λ the box's area fraction (which is then also its voxel fraction). The
sampler here instead draws a cuboid, a box over a range of frames, with λ
the exact fraction of voxels kept; `apply_params` and `mix_labels` apply it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cutmix_jax._src import beta
from cutmix_jax._src import boxes
from cutmix_jax._src import compiled
from cutmix_jax._src import options
from cutmix_jax._src import plan as plan_lib
from cutmix_jax._src import params as params_lib
from cutmix_jax._src import validation
from cutmix_jax._src.params import CuboidParams, Mode, Op, Pairing, Placement
from cutmix_jax._src.typing import ArrayLike, AxisName



@compiled.compiled
@options.with_common_args
def sample_cutmix_cuboid(
    key: jax.Array,
    batch_size: int,
    length: int,
    height: int,
    width: int,
    *,
    alpha: ArrayLike = 1.0,
    prob: ArrayLike = 1.0,
    mode: Mode = "batch",
    pairing: Pairing = "flip",
    groups: int = 1,
    placement: Placement = "official",
    axis_name: AxisName = None,
    invariant: bool = False,
) -> CuboidParams:
  """Draws space-time CutMix cuboids for video clips.

  λ ~ Beta(α, α); each side of the cuboid is `floor(side * (1 - λ)^(1/3))`
  for the time, height and width axes, so its volume is about `1 - λ` of
  the clip, placed as `sample_cutmix` places boxes (per axis). `lam` is then
  recomputed from the cuboid actually pasted: `kept_voxels / (length *
  height * width)`, so label weights are exact voxel fractions.

  Args:
    key: a PRNG key.
    batch_size: static batch size.
    length: static number of frames (the 'T' axis).
    height: static frame height.
    width: static frame width.
    alpha: Beta(α, α) parameter, > 0; may be traced.
    placement: 'official' (centre uniform, cuboid clipped) or 'inside'.
{common_args}

  Returns:
    A `CuboidParams`.

  >>> c = sample_cutmix_cuboid(jax.random.key(0), 2, 8, 16, 16, alpha=1.0)
  >>> c.time.shape, c.box.shape, c.lam.dtype
  ((2, 2), (2, 4), dtype('float32'))
  """
  length = validation.check_size(length, "length")
  height = validation.check_size(height, "height")
  width = validation.check_size(width, "width")
  validation.check_choice(placement, "placement", params_lib.PLACEMENTS)
  validation.check_positive(alpha, "alpha")
  lam_rows = beta.rows_needed(alpha)
  plan, active, words = plan_lib.draw(
      key, batch_size, mode=mode, pairing=pairing, groups=groups, prob=prob,
      axis_name=axis_name, invariant=invariant,
      parts={"box": range(3), "cut_lam": lam_rows})
  bits = words["box"]
  lam = beta.lam_from_words(words["cut_lam"], alpha,
                            plan.retry_key(plan_lib.RETRY_FIRST),
                            col_offset=plan.col_offset)
  ratio = jnp.cbrt(1.0 - lam)
  spans = [
      boxes.span(b, jnp.floor(size * ratio).astype(jnp.int32), size, placement)
      for b, size in zip(bits, (length, height, width))
  ]
  (t0, t1), (top, bottom), (left, right) = spans
  time = jnp.where(active[:, None],
                   plan.per_sample(jnp.stack([t0, t1], -1)), 0)
  box = jnp.where(active[:, None],
                  plan.per_sample(jnp.stack([top, left, bottom, right], -1)),
                  0)
  volume = length * height * width
  cut = jnp.maximum(time[:, 1] - time[:, 0], 0) * boxes.box_area(box)
  kept_fraction = boxes.kept_fraction(volume - cut, volume)
  if not validation.is_static_number(alpha):
    # A traced α <= 0 has no λ to draw; let the NaN show, as elsewhere.
    kept_fraction = jnp.where(jnp.isnan(plan.per_sample(lam)), jnp.nan, kept_fraction)
  return CuboidParams(
      lam=jnp.where(active, kept_fraction, 1.0),
      box=box,
      time=time.astype(jnp.int32),
      partner=plan.partner,
      op=jnp.where(active, Op.CUTMIX, Op.NONE).astype(jnp.int32),
      length=length,
      height=height,
      width=width,
      pairing=plan.pairing,
      groups=plan.groups,
  )
