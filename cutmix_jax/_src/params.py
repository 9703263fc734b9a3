"""The draw types, what each sample of a draw does, and their one check.

A draw is what a sampler returns and every applier takes: who mixes with
whom (`partner`), what each sample does (`op`), the weight of its own label
(`lam`), and its region. The region is a box (`MixParams`), a mask
(`MaskParams`) or a box over a range of frames (`CuboidParams`);
`apply_params`, `mix_labels`, `apply_tree` and `mix_boxes` accept all three
and dispatch on the type while tracing.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Literal, Optional, Union, get_args

import jax
import jax.numpy as jnp
import numpy as np

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


@dataclasses.dataclass(frozen=True)
class MixParams:
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


jax.tree_util.register_dataclass(
    MixParams,
    data_fields=["lam", "box", "partner", "op"],
    meta_fields=["height", "width", "pairing", "groups", "ops",
                 "exchange_axis"],
)


@dataclasses.dataclass(frozen=True)
class MaskParams:
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


jax.tree_util.register_dataclass(
    MaskParams,
    data_fields=["lam", "mask", "partner", "op"],
    meta_fields=["pairing", "groups"],
)


@dataclasses.dataclass(frozen=True)
class CuboidParams:
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


def _allowed_ops(draw: Draw) -> tuple[int, ...]:
  if not isinstance(draw, MixParams):
    return (int(Op.CUTMIX),)
  ops = tuple(int(o) for o in draw.ops)
  unknown = sorted(set(ops) - set(ALL_OPS))
  if unknown:
    raise ValueError(
        f"params.ops must hold ops from {[Op(o).name for o in ALL_OPS]}, got "
        f"{unknown}.")
  return ops


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
  ops = _allowed_ops(draw)
  if not isinstance(draw.op, jax.core.Tracer):
    seen = set(np.unique(np.asarray(draw.op)).tolist()) - {int(Op.NONE)}
    if not seen <= set(ops):
      names = sorted(Op(o).name if o in set(Op) else str(o)
                     for o in seen - set(ops))
      allowed = (f"params.ops {[Op(o).name for o in ops]} does not allow: the "
                 "appliers compile only the ops in `ops`. Pass ops= with every "
                 "op the draw holds." if isinstance(draw, MixParams) else
                 f"a {type(draw).__name__} can only hold CUTMIX or NONE.")
      raise ValueError(f"params.op holds {names}, which {allowed}")
  op = jnp.asarray(draw.op, jnp.int32)
  op = jnp.where(_isin(op, ops), op, int(Op.NONE))
  mixes = _isin(op, [o for o in ops if o in LABEL_OPS])
  lam = jnp.where(mixes, draw.lam, jnp.ones((), draw.lam.dtype))
  if isinstance(draw, MaskParams):
    mask = jnp.where(mixes[:, None, None], draw.mask,
                     jnp.zeros((), draw.mask.dtype))
    return dataclasses.replace(draw, op=op, lam=lam, mask=mask)
  has_box = _isin(op, [o for o in ops if o in BOX_OPS])
  box = jnp.where(has_box[:, None], draw.box, 0)
  if isinstance(draw, CuboidParams):
    time = jnp.where(has_box[:, None], draw.time, 0)
    return dataclasses.replace(draw, op=op, lam=lam, box=box, time=time)
  return dataclasses.replace(draw, op=op, lam=lam, box=box)
