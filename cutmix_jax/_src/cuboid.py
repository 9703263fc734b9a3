"""Space-time CutMix for video: a cuboid pasted over a range of frames.

`apply_params` with layout 'NTHWC' already pastes the same box on every
frame, with λ the box's area fraction (which is then also its voxel
fraction). The sampler here instead draws a cuboid, a box over a range of
frames, with λ the exact fraction of voxels kept.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax import lax

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
class CuboidParams:
  """One space-time CutMix draw, as returned by `sample_cutmix_cuboid`.

  Attributes:
    params: a `MixParams` whose `lam` is the exact fraction of voxels each
      sample keeps, `box` the spatial `(top, left, bottom, right)` of the
      cuboid, and `partner`, `op` as usual. Pass it to `mix_labels` or use it
      for the two-term loss. Do not pass it to `apply_params`, which would
      paste the box on every frame; apply the draw with `apply_cuboid`.
    time: int32 `[batch, 2]`, the frames `(start, stop)` of the cuboid,
      half-open; `(0, 0)` for samples left unchanged.
    length: static number of frames the draw was made for.
  """

  params: MixParams
  time: jax.Array
  length: int


jax.tree_util.register_dataclass(
    CuboidParams, data_fields=["params", "time"], meta_fields=["length"]
)


def _span(bits, cut, size, placement):
  """`(start, stop)` of a cut of length `cut` on an axis of `size`.

  As in `sample_cutmix`: 'official' centres the cut uniformly over every
  position and clips it; 'inside' keeps it whole, its start uniform.
  """
  if placement == "official":
    centre = prng.uniform_int(bits, size)
    return (
        jnp.clip(centre - cut // 2, 0, size),
        jnp.clip(centre + cut // 2, 0, size),
    )
  start = prng.uniform_int(bits, size - cut + 1)
  return start, start + cut


@compiled.compiled
@structure.with_structure_args
def sample_cutmix_cuboid(
    key: jax.Array,
    batch_size: int,
    length: int,
    height: int,
    width: int,
    *,
    alpha: ArrayLike = 1.0,
    prob: ArrayLike = 1.0,
    mode: str = "batch",
    pairing: str = "flip",
    groups: int = 1,
    placement: str = "official",
    axis_name: sampling.AxisName = None,
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
{structure_args}

  Returns:
    A `CuboidParams`.

  >>> c = sample_cutmix_cuboid(jax.random.key(0), 2, 8, 16, 16, alpha=1.0)
  >>> c.time.shape, c.params.box.shape, c.params.lam.dtype
  ((2, 2), (2, 4), dtype('float32'))
  """
  length = validation.check_size(length, "length")
  height = validation.check_size(height, "height")
  width = validation.check_size(width, "width")
  validation.check_choice(placement, "placement", validation.PLACEMENTS)
  validation.check_positive(alpha, "alpha")
  lam_rows = beta.rows_needed(alpha)
  s = structure.draw_structure(
      key, batch_size, mode=mode, pairing=pairing, groups=groups, prob=prob,
      axis_name=axis_name, invariant=invariant,
      rows=[sampling.BOX_ROW + r for r in range(3)]
      + [sampling.LAM_ROW + r for r in lam_rows])
  plan = s.plan
  bits = s.words[:3]
  lam = beta.lam_from_words(s.words[3:], alpha,
                            plan.retry_key(pairing_lib.RETRY_FIRST),
                            col_offset=plan.col_offset)
  ratio = jnp.cbrt(1.0 - lam)
  spans = [
      _span(b, jnp.floor(size * ratio).astype(jnp.int32), size, placement)
      for b, size in zip(bits, (length, height, width))
  ]
  (t0, t1), (top, bottom), (left, right) = spans
  active = s.active[:, None]
  time = jnp.where(active, plan.per_sample(jnp.stack([t0, t1], -1)), 0)
  box = jnp.where(
      active, plan.per_sample(jnp.stack([top, left, bottom, right], -1)), 0)
  volume = length * height * width
  cut = jnp.maximum(time[:, 1] - time[:, 0], 0) * sampling.box_area(box)
  kept_fraction = (volume - cut).astype(jnp.float32) * jnp.float32(1 / volume)
  if not validation.is_static_number(alpha):
    # A traced α <= 0 has no λ to draw; let the NaN show, as elsewhere.
    kept_fraction = jnp.where(jnp.isnan(plan.per_sample(lam)), jnp.nan, kept_fraction)
  params = MixParams(
      lam=jnp.where(s.active, kept_fraction, 1.0),
      box=box,
      partner=plan.partner,
      op=jnp.where(s.active, Op.CUTMIX, Op.NONE).astype(jnp.int32),
      height=height,
      width=width,
      pairing=plan.pairing,
      groups=plan.groups,
      ops=(int(Op.CUTMIX),),
  )
  return CuboidParams(params=params, time=time.astype(jnp.int32), length=length)


def apply_cuboid(
    cuboid: CuboidParams, x: ArrayLike, *, layout: str = "NTHWC"
) -> jax.Array:
  """Pastes each sample's partner cuboid into a batch of clips.

  Voxels inside the cuboid (frames `time[0] <= t < time[1]` and the box)
  come from the partner; all others are kept. It is a select: the dtype and
  values are kept, as for CutMix on images.

  Args:
    cuboid: a draw from `sample_cutmix_cuboid`.
    x: clips `[batch, time, height, width, channels]` by default.
    layout: the axes of `x`; it must contain 'T' besides 'N' and 'HW', for
      example 'NTHWC', 'NCTHW' or 'NTHW' (masks).

  Returns:
    An array with the shape and dtype of `x`.

  >>> c = sample_cutmix_cuboid(jax.random.key(0), 2, 4, 8, 8)
  >>> x = jnp.stack([jnp.zeros((4, 8, 8, 1)), jnp.ones((4, 8, 8, 1))])
  >>> out = apply_cuboid(c, x)
  >>> bool(jnp.allclose(out[0].mean(), 1 - c.params.lam[0]))  # voxel fraction
  True
  """
  if not isinstance(cuboid, CuboidParams):
    raise TypeError(
        "cuboid must be a CuboidParams from sample_cutmix_cuboid, got "
        f"{type(cuboid).__name__}."
    )
  x = jnp.asarray(x)
  _, height, width, h_axis = validation.check_images(x, layout, "x")
  if "T" not in layout:
    raise ValueError(
        f"layout {layout!r} has no time axis 'T'; a cuboid needs one (for "
        "example 'NTHWC')."
    )
  params = cuboid.params
  apply.check_params(params, x.shape[0], "x")
  t_axis = layout.index("T")
  if (x.shape[t_axis], height, width) != (
      cuboid.length, params.height, params.width
  ):
    raise ValueError(
        f"x has (time, height, width) {(x.shape[t_axis], height, width)} "
        f"(layout {layout!r}, {validation.describe(x)}) but the cuboid was "
        f"drawn for {(cuboid.length, params.height, params.width)}."
    )
  # Small factors, broadcast only inside the fused select: the box as
  # [batch, .., height, width, ..] and the frames as [batch, .., time, ..].
  box_shape = [x.shape[0]] + [1] * (x.ndim - 1)
  box_shape[h_axis : h_axis + 2] = [height, width]
  in_box = sampling.box_mask(params.box, height, width).reshape(box_shape)
  time_shape = [x.shape[0]] + [1] * (x.ndim - 1)
  time_shape[t_axis] = cuboid.length
  frames = lax.broadcasted_iota(jnp.int32, time_shape, t_axis)
  time = cuboid.time.reshape((-1,) + (1,) * (x.ndim - 1) + (2,))
  inside = in_box & (frames >= time[..., 0]) & (frames < time[..., 1])
  return jnp.where(inside, apply.partner_rows(params, x), x)
