"""The draw types, what each sample of a draw does, and their one check.

A draw is what a sampler returns and every applier takes: who mixes with
whom (`partner`), what each sample does (`op`), the weight of its own label
(`lam`), and its region. The region is a box (`MixParams`), a mask
(`MaskParams`) or a box over a range of frames (`CuboidParams`).

The three types share one protocol, `_Draw`, and the appliers
(`apply_params`, `mix_labels`, `apply_tree`, `mix_boxes`) use only it:
`honoured()` (the draw as applied), `region(...)` (where each sample's pixels
are replaced, at any array shape), `field(...)` (that region per pixel or per
patch, MixUp's blend included), `label_pairs()` (each sample's partner and own
label weight) and `without_blending(...)` (the draw for maps that must not be
blended). A new applier or output (k-way labels, token masks) is written once
against these.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Literal, Optional, Union, get_args

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from cutmix_jax._src import boxes as boxes_lib
from cutmix_jax._src import validation

Mode = Literal["batch", "pair", "elem"]
Pairing = Literal["flip", "roll", "permute"]
Placement = Literal["official", "inside"]
Resize = Literal["linear", "nearest"]
MODES: tuple[str, ...] = get_args(Mode)
PAIRINGS: tuple[str, ...] = get_args(Pairing)
PLACEMENTS: tuple[str, ...] = get_args(Placement)
RESIZES: tuple[str, ...] = get_args(Resize)


class Op(enum.IntEnum):
  """What `apply_params` does to a sample."""

  NONE = 0  # left unchanged
  MIXUP = 1  # blended with its partner: lam * own + (1 - lam) * partner
  CUTMIX = 2  # region pasted from its partner
  CUTOUT = 3  # box filled with a constant
  RESIZEMIX = 4  # the whole partner, resized, pasted into the box


ALL_OPS = (int(Op.MIXUP), int(Op.CUTMIX), int(Op.CUTOUT), int(Op.RESIZEMIX))
BOX_OPS = (int(Op.CUTMIX), int(Op.CUTOUT), int(Op.RESIZEMIX))
LABEL_OPS = (int(Op.MIXUP), int(Op.CUTMIX), int(Op.RESIZEMIX))


def broadcast_field(values: jax.Array, shape, h_axis: int) -> jax.Array:
  """Per-sample `[batch]` or per-pixel `[batch, height, width]` values,
  reshaped to broadcast against an array of `shape` whose height and width
  axes are `h_axis`, `h_axis + 1`."""
  ndim = len(shape)
  if values.ndim == 1:
    return values.reshape((-1,) + (1,) * (ndim - 1))
  return values.reshape(values.shape[:1] + (1,) * (h_axis - 1)
                        + values.shape[1:] + (1,) * (ndim - h_axis - 2))


class _Draw:
  """The protocol of every draw type.

  Data: `lam`, `partner`, `op` (float32, int32, int32 `[batch]`) and the
  type's region; statics `pairing` and `groups`.
  """

  # The layout `apply_params` assumes, and whether the draw needs a 'T' axis.
  default_layout = "NHWC"
  needs_time = False
  # Why `mix_boxes` cannot take this draw; None if it can.
  not_rectangles: Optional[str] = None

  @property
  def allowed_ops(self) -> tuple[int, ...]:
    """The ops (other than NONE) this draw may hold, validated."""
    return (int(Op.CUTMIX),)

  @property
  def possible_ops(self) -> tuple[Op, ...]:
    """The ops this draw may hold, known at trace time."""
    return (Op.CUTMIX,)

  @property
  def foldable(self) -> bool:
    """Whether the region may be tested on a view that folds the axes after
    W into the width (`region`'s `col_scale`)."""
    return False

  def _op_rule(self) -> str:
    return f"a {type(self).__name__} can only hold CUTMIX or NONE."

  def _honour(self, op, lam, mixes, has_box):
    """The draw with `op`, `lam` and its region kept only where an op uses
    one (`has_box`) or mixes labels (`mixes`)."""
    raise NotImplementedError

  def honoured(self):
    """The draw as every applier applies it; see `honoured`."""
    ops = self.allowed_ops
    if not isinstance(self.op, jax.core.Tracer):
      seen = set(np.unique(np.asarray(self.op)).tolist()) - {int(Op.NONE)}
      if not seen <= set(ops):
        names = sorted(Op(o).name if o in set(Op) else str(o)
                       for o in seen - set(ops))
        raise ValueError(f"params.op holds {names}, which {self._op_rule()}")
    op = jnp.asarray(self.op, jnp.int32)
    op = jnp.where(_isin(op, ops), op, int(Op.NONE))
    mixes = _isin(op, [o for o in ops if o in LABEL_OPS])
    has_box = _isin(op, [o for o in ops if o in BOX_OPS])
    lam = jnp.where(mixes, self.lam, jnp.ones((), self.lam.dtype))
    return self._honour(op, lam, mixes, has_box)

  def label_pairs(self) -> tuple[jax.Array, jax.Array]:
    """`(partner, lam)`, int32 and float32 `[batch]`: each sample's label is
    `lam` of its own and `1 - lam` of its partner's (`lam` 1 where the
    sample's op mixes no labels). `partner` indexes the global batch under
    `cross_device`; fetch partners' values with `partner_rows`."""
    return self.partner, self.honoured().lam

  def check_spatial(self, x: jax.Array, h_axis: int,
                    t_axis: Optional[int]) -> None:
    """Rejects an array `x` whose spatial size the draw was not made
    for."""

  def region(self, shape, h_axis: int, *, t_axis: Optional[int] = None,
             col_scale: int = 1) -> jax.Array:
    """Where each sample's values are replaced (by its partner's, a resized
    partner or a fill), broadcastable to an array of `shape` whose height
    and width axes are `h_axis`, `h_axis + 1` (and time axis `t_axis`): bool,
    or float32 for a soft mask (the partner's weight). Call it on an
    `honoured()` draw. `col_scale` is the number of values per pixel folded
    into the width (only where `foldable`)."""
    raise NotImplementedError

  def field(self, height: int, width: int, *,
            stride: Union[int, tuple[int, int]] = 1) -> jax.Array:
    """Where each sample takes another source, `[batch, ceil(height / sh),
    ceil(width / sw)]` for a stride `(sh, sw)`: the value at pixel
    `(i * sh, j * sw)` (a patch's top-left pixel, as TransMix samples its
    token mask). Bool where every op the draw may hold is a hard region
    (CutMix, Cutout, ResizeMix, a bool mask); otherwise float32, the
    other source's weight: `1 - lam` for a MixUp sample, the mask for a
    soft mask."""
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    honoured = self.honoured()
    full = honoured.region((self.lam.shape[0], height, width), 1)
    full = jnp.broadcast_to(full, (self.lam.shape[0], height, width))
    return full[:, ::sh, ::sw]

  def without_blending(self, height: int, width: int, *, keep_fill: bool):
    """The draw for maps whose values must never be blended: `(draw, blends)`,
    where `draw` only selects (per pixel, the source with the larger weight;
    a tie keeps its own) and `blends` (bool `[batch]` or `[batch, height,
    width]`, or None) is where the original draw blends. `keep_fill`: keep
    Cutout's boxes (filled) instead of leaving those samples unchanged."""
    del height, width, keep_fill
    return self, None


@dataclasses.dataclass(frozen=True)
class MixParams(_Draw):
  """A box or blend draw for a batch, as returned by `sample_cutmix` & co.

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
  pairing: Pairing = "flip"
  groups: int = 1
  ops: tuple[int, ...] = ALL_OPS
  exchange_axis: Any = None

  @property
  def possible_ops(self) -> tuple[Op, ...]:
    """The ops this draw may hold, known at trace time."""
    return tuple(Op(o) for o in self.ops)

  @property
  def allowed_ops(self) -> tuple[int, ...]:
    ops = tuple(int(o) for o in self.ops)
    unknown = sorted(set(ops) - set(ALL_OPS))
    if unknown:
      raise ValueError(
          f"params.ops must hold ops from {[Op(o).name for o in ALL_OPS]}, "
          f"got {unknown}.")
    return ops

  @property
  def foldable(self) -> bool:
    return Op.RESIZEMIX not in self.possible_ops  # resizing needs the layout

  def _op_rule(self) -> str:
    return (f"params.ops {[Op(o).name for o in self.allowed_ops]} does not "
            "allow: the appliers compile only the ops in `ops`. Pass ops= "
            "with every op the draw holds.")

  def _honour(self, op, lam, mixes, has_box):
    del mixes
    return dataclasses.replace(self, op=op, lam=lam,
                               box=jnp.where(has_box[:, None], self.box, 0))

  def check_spatial(self, x, h_axis, t_axis):
    shape = x.shape
    del t_axis
    height, width = shape[h_axis], shape[h_axis + 1]
    if self.height is not None and (height, width) != (self.height,
                                                       self.width):
      raise ValueError(
          f"x has spatial size {(height, width)} ({validation.describe(x)}) but "
          f"params were drawn for {(self.height, self.width)}.")

  def region(self, shape, h_axis, *, t_axis=None, col_scale=1):
    del t_axis
    return boxes_lib.broadcast_mask(self.box, shape, h_axis,
                                    col_scale=col_scale)

  def field(self, height, width, *, stride=1):
    hard = super().field(height, width, stride=stride)
    if Op.MIXUP not in self.possible_ops:
      return hard
    honoured = self.honoured()
    blend = (1 - honoured.lam)[:, None, None]
    return jnp.where((honoured.op == Op.MIXUP)[:, None, None], blend,
                     hard.astype(jnp.float32))

  def without_blending(self, height, width, *, keep_fill):
    ops = self.possible_ops
    honoured = self.honoured()
    op, box, lam = honoured.op, honoured.box, honoured.lam
    if Op.CUTOUT in ops and not keep_fill:
      box = jnp.where((op == Op.CUTOUT)[:, None], 0, box)
      op = jnp.where(op == Op.CUTOUT, Op.NONE, op)
    is_mixup = op == Op.MIXUP
    new_ops = tuple(o for o in ops if o != Op.MIXUP
                    and (o != Op.CUTOUT or keep_fill))
    if Op.MIXUP in ops:
      # The source with the larger weight; a tie (lam == 0.5) keeps its own.
      take_partner = is_mixup & (lam < 0.5) & (not keep_fill)
      full = jnp.array([0, 0, height, width], jnp.int32)
      box = jnp.where(take_partner[:, None], full, box)
      op = jnp.where(take_partner, Op.CUTMIX, jnp.where(is_mixup, Op.NONE, op))
      new_ops = tuple(sorted(set(new_ops) | {Op.CUTMIX}))
    selected = dataclasses.replace(
        self, box=box, op=op.astype(jnp.int32),
        ops=tuple(int(o) for o in new_ops))
    return selected, (is_mixup if Op.MIXUP in ops and keep_fill else None)


jax.tree_util.register_dataclass(
    MixParams,
    data_fields=["lam", "box", "partner", "op"],
    meta_fields=["height", "width", "pairing", "groups", "ops",
                 "exchange_axis"],
)


@dataclasses.dataclass(frozen=True)
class MaskParams(_Draw):
  """A mask draw for a batch, from `sample_multibox` or `sample_fmix`.

  Attributes:
    lam: float32 `[batch]`, the weight of each sample's own label: the
      fraction of its pixels kept, `1 - mean(mask)`, computed from the mask
      as `kept * float32(1 / (height * width))` (as `lam_from_box`), where
      `kept` is the exact count of kept pixels for a bool mask (so `lam`
      is bit for bit `1 - mean(mask)` when `height * width` is a power of
      two) and the closed-form sum of `1 - mask` for a soft one; 1 for
      samples left unchanged.
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
  pairing: Pairing = "flip"
  groups: int = 1

  not_rectangles = "mask is not a rectangle."

  def _honour(self, op, lam, mixes, has_box):
    del has_box
    mask = jnp.where(mixes[:, None, None], self.mask,
                     jnp.zeros((), self.mask.dtype))
    return dataclasses.replace(self, op=op, lam=lam, mask=mask)

  def check_spatial(self, x, h_axis, t_axis):
    shape = x.shape
    del t_axis
    height, width = shape[h_axis], shape[h_axis + 1]
    if self.mask.shape[1:] != (height, width):
      raise ValueError(
          f"x has spatial size {(height, width)} ({validation.describe(x)}) but "
          f"the masks are {tuple(self.mask.shape[1:])}.")

  def region(self, shape, h_axis, *, t_axis=None, col_scale=1):
    del t_axis, col_scale
    return broadcast_field(self.mask, shape, h_axis)

  def field(self, height, width, *, stride=1):
    out = super().field(height, width, stride=stride)
    return out if out.dtype == jnp.bool_ else out.astype(jnp.float32)

  def without_blending(self, height, width, *, keep_fill):
    """Per pixel, the source with the larger weight (a soft mask's partner
    weight above 0.5 takes the partner); a bool mask is a select already."""
    del height, width
    if self.mask.dtype == jnp.bool_:
      return self, None
    hard = dataclasses.replace(self, mask=self.mask > 0.5)
    if not keep_fill:
      return hard, None
    mask = self.honoured().mask
    return hard, (mask > 0) & (mask < 1)


jax.tree_util.register_dataclass(
    MaskParams,
    data_fields=["lam", "mask", "partner", "op"],
    meta_fields=["pairing", "groups"],
)


@dataclasses.dataclass(frozen=True)
class CuboidParams(_Draw):
  """A space-time CutMix draw for clips, from `sample_cutmix_cuboid`.

  The region is a cuboid: the box `box` over the frames `time`. It is not a
  `MixParams`, so it cannot be applied as a box on every frame by mistake;
  `apply_params` pastes exactly the cuboid.

  Attributes:
    lam: float32 `[batch]`, the exact fraction of voxels each sample keeps;
      1 for samples left unchanged.
    box: int32 `[batch, 4]`, the cuboid's spatial `(top, left, bottom,
      right)`, half-open.
    time: int32 `[batch, 2]`, the cuboid's frames `(start, stop)`, half-open;
      `(0, 0)` for samples left unchanged.
    partner: int32 `[batch]`, the sample each one is mixed with.
    op: int32 `[batch]`: `Op.CUTMIX` for mixed samples, `Op.NONE` otherwise.
    length: static number of frames the draw was made for.
    height: static frame height.
    width: static frame width.
    pairing: static, as in `MixParams`.
    groups: static, as in `MixParams`.
  """

  lam: jax.Array
  box: jax.Array
  time: jax.Array
  partner: jax.Array
  op: jax.Array
  length: int
  height: int
  width: int
  pairing: Pairing = "flip"
  groups: int = 1

  default_layout = "NTHWC"
  needs_time = True
  not_rectangles = (
      "cuboid covers only some frames of a clip, so a clip's boxes would "
      "differ per frame.")

  def _honour(self, op, lam, mixes, has_box):
    del mixes
    return dataclasses.replace(
        self, op=op, lam=lam, box=jnp.where(has_box[:, None], self.box, 0),
        time=jnp.where(has_box[:, None], self.time, 0))

  def check_spatial(self, x, h_axis, t_axis):
    shape = x.shape
    seen = (shape[t_axis], shape[h_axis], shape[h_axis + 1])
    if seen != (self.length, self.height, self.width):
      raise ValueError(
          f"x has (time, height, width) {seen} ({validation.describe(x)}) but "
          f"the cuboid was drawn for "
          f"{(self.length, self.height, self.width)}.")

  def region(self, shape, h_axis, *, t_axis=None, col_scale=1):
    """The box on the frames `time[0] <= t < time[1]`, as small factors
    broadcast only inside the fused select: the box as `[batch, .., height,
    1, ..] & [batch, .., 1, width, ..]` and the frames as `[batch, .., time,
    ..]`. Without `t_axis` (a single frame), every frame of the range."""
    del col_scale
    in_box = boxes_lib.broadcast_mask(self.box, shape, h_axis)
    if t_axis is None:
      frames_cut = self.time[:, 1] > self.time[:, 0]
      return in_box & broadcast_field(frames_cut, shape, h_axis)
    ndim = len(shape)
    time_shape = [shape[0]] + [1] * (ndim - 1)
    time_shape[t_axis] = shape[t_axis]
    frames = lax.broadcasted_iota(jnp.int32, time_shape, t_axis)
    time = self.time.reshape((-1,) + (1,) * (ndim - 1) + (2,))
    return in_box & (frames >= time[..., 0]) & (frames < time[..., 1])


jax.tree_util.register_dataclass(
    CuboidParams,
    data_fields=["lam", "box", "time", "partner", "op"],
    meta_fields=["length", "height", "width", "pairing", "groups"],
)

Draw = Union[MixParams, MaskParams, CuboidParams]
DRAW_TYPES = (MixParams, MaskParams, CuboidParams)


def check(draw: Any, batch: int, name: str) -> None:
  """Rejects anything but a draw, and a draw for another batch size."""
  if not isinstance(draw, DRAW_TYPES):
    raise TypeError(
        "params must be a draw from a sample_* function (MixParams, "
        f"MaskParams or CuboidParams), got {type(draw).__name__}."
    )
  if draw.lam.shape != (batch,):
    raise ValueError(
        f"{name} has batch size {batch} but params were drawn for "
        f"{draw.lam.shape[0] if draw.lam.ndim else '?'} samples "
        f"(params.lam {validation.describe(draw.lam)})."
    )


def _isin(op: jax.Array, ops) -> jax.Array:
  if not ops:
    return jnp.zeros_like(op, bool)
  return jnp.isin(op, jnp.asarray(ops, jnp.int32))


def honoured(draw: Draw) -> Draw:
  """The draw as every applier applies it, of the same type.

  An op the draw cannot hold (outside `MixParams.ops`; anything but CUTMIX
  for masks and cuboids) is rejected when `op` is concrete and applied as
  NONE when traced (no code was compiled for it). A region counts only under
  an op that uses one, and `lam` only under an op that mixes labels; other
  samples get an empty region and `lam` 1.
  """
  return draw.honoured()
