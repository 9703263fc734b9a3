"""One draw applied to dense and structured targets: pytrees and boxes.

`apply_tree` applies any draw to every array of a pytree (images,
segmentation maps, weight or depth maps, soft label maps), choosing per leaf
whether the op may blend or must select. `mix_boxes` applies a box draw to
padded detection boxes, with static shapes throughout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NamedTuple, Optional, get_args

import jax
import jax.numpy as jnp
import numpy as np

from cutmix_jax._src import apply
from cutmix_jax._src import boxes as boxes_lib
from cutmix_jax._src import pairing
from cutmix_jax._src import params as params_lib
from cutmix_jax._src import validation
from cutmix_jax._src.params import Op
from cutmix_jax._src.typing import ArrayLike


Kind = Literal["auto", "blend", "select", "keep"]
KINDS: tuple[str, ...] = get_args(Kind)

# Default layouts by rank: masks, images, videos.
_LAYOUT_BY_RANK = {3: "NHW", 4: "NHWC", 5: "NTHWC"}


# ---------------------------------------------------------------------------
# Pytrees of dense targets


class _Unset:
  """Marks a dict key absent from a per-leaf option: decide from the leaf."""


def _per_leaf(option: Any, tree: Any, name: str, single: tuple[type, ...]):
  """One value of a per-leaf option for each leaf of `tree`, in leaf order.

  `option` is a single value for every leaf, a pytree prefix of `tree`, or,
  when `tree` is a dict, a partial dict (absent keys get None, meaning
  'decide from the leaf').
  """
  if option is None or isinstance(option, single):
    return [option] * len(jax.tree.leaves(tree))
  if isinstance(tree, Mapping) and isinstance(option, Mapping):
    unknown = set(option) - set(tree)
    if unknown:
      raise ValueError(
          f"{name} names keys {sorted(map(str, unknown))} that the tree does "
          f"not have (its keys: {sorted(map(str, tree))})."
      )
    # None is an empty subtree to jax.tree, so absent keys get a marker.
    option = type(tree)({k: option.get(k, _Unset()) for k in tree})
  single = single + (_Unset,)
  try:
    per_subtree = jax.tree.leaves(
        jax.tree.map(
            lambda value, sub: [value] * len(jax.tree.leaves(sub)),
            option,
            tree,
            is_leaf=lambda v: isinstance(v, single),
        ),
        is_leaf=lambda v: isinstance(v, list),
    )
  except ValueError as e:
    raise ValueError(
        f"{name} must be a single value, a pytree prefix of the tree, or a "
        f"dict of some of its keys; got {option!r}: {e}"
    ) from None
  return [
      None if isinstance(v, _Unset) else v
      for values in per_subtree
      for v in values
  ]


def _select(params, x, layout, ignore_value):
  """Applies a draw to `x` without ever blending two samples' values.

  MixUp samples become a full-image CutMix from the partner (when it has the
  larger weight) or stay unchanged; a soft mask takes, per pixel, the source
  with the larger weight; Cutout leaves the map alone unless `ignore_value`
  is set; ResizeMix resizes the map by nearest neighbour. With
  `ignore_value`, pixels where the draw blends and the two maps disagree get
  `ignore_value`.
  """
  _, height, width, h_axis = validation.check_images(x, layout, "tree leaf")
  keep_fill = ignore_value is not None
  selected, blends = params.without_blending(height, width,
                                             keep_fill=keep_fill)
  out = apply.apply_params(selected, x, layout=layout,
                           fill_value=ignore_value if keep_fill else 0,
                           resize="nearest")
  if blends is None:
    return out
  disagree = (x != pairing.partner_rows(params, x)) & params_lib.broadcast_field(
      blends, x.shape, h_axis)
  return jnp.where(disagree, jnp.asarray(ignore_value, x.dtype), out)


def apply_tree(
    params: params_lib.Draw,
    tree: Any,
    *,
    layouts: Any = None,
    kinds: Any = None,  # Kind, or a pytree or dict of them
    ignore_value: Optional[ArrayLike] = None,
    fill_value: ArrayLike = 0,
) -> Any:
  """Applies one draw to every array of a pytree: images and their targets.

  Each leaf is treated by its kind:

  - 'blend' (default for floating leaves: images, per-pixel weight or depth
    maps, soft label maps `[batch, height, width, classes]`): exactly
    `apply_params`. CutMix pastes the partner's box, MixUp blends with `lam`,
    Cutout fills the box with `fill_value`.
  - 'select' (default for integer and bool leaves: segmentation maps
    `[batch, height, width]` or `[batch, height, width, 1]`, instance ids,
    validity masks): values are only ever copied, never blended, so the
    output holds exactly the input's values. CutMix pastes the box as for
    images. Under MixUp each sample takes, per pixel, the map of the source
    with the larger weight: its own if `lam >= 0.5`, else its partner's; or,
    with `ignore_value` set, the common value where its own and its partner's
    maps agree and `ignore_value` where they differ. Cutout leaves select
    leaves unchanged (the object is still there, only hidden), or fills the
    box with `ignore_value` when it is set. ResizeMix resizes the partner's
    map into the box by nearest neighbour.
  - 'keep': returned as it is (per-sample metadata such as image ids).

  A mask or cuboid draw pastes its region into every leaf alike; select
  leaves under a soft (float) mask take, per pixel, the source with the
  larger weight (a tie keeps its own), or with `ignore_value` set, the common
  value where the mask blends and the maps agree and `ignore_value` where
  they differ.

  Under MixUp the label weight `lam` refers to the blended images; a
  selected map is a hard target for the source it came from.

  Args:
    params: any draw: a `MixParams`, `MaskParams` or `CuboidParams`.
    tree: a pytree (dict, tuple, list, ...) of batch-major arrays with the
      draw's batch size and spatial size.
    layouts: the layout of each leaf, as `apply_params`'s `layout`: one
      string for every leaf, a pytree prefix of `tree`, or for a dict tree a
      dict of some of its keys. By default a leaf of rank 3 is 'NHW', rank 4
      'NHWC' and rank 5 'NTHWC'; channel-first leaves need an explicit
      layout.
    kinds: 'auto', 'blend', 'select' or 'keep' per leaf, given like
      `layouts`. 'auto' (the default) selects integer and bool leaves and
      blends floating ones.
    ignore_value: a scalar for select leaves under MixUp (where the two maps
      disagree) and Cutout (inside the box), such as 255 for segmentation;
      one value for every leaf, a pytree prefix, or a dict of some keys. None
      (the default) means the larger-weight rule and no Cutout fill.
    fill_value: Cutout's fill for blend leaves, as in `apply_params`.

  Returns:
    A pytree like `tree`; every leaf keeps its shape and dtype.

  >>> from cutmix_jax import sample_mixup
  >>> p = sample_mixup(jax.random.key(0), 2)
  >>> batch = {"image": jnp.ones((2, 4, 4, 3)),
  ...          "seg": jnp.array([0, 1], jnp.uint8)[:, None, None] + jnp.zeros(
  ...              (2, 4, 4), jnp.uint8)}
  >>> out = apply_tree(p, batch)
  >>> out["seg"].dtype, sorted(set(out["seg"].ravel().tolist()))  # no blend
  (dtype('uint8'), [0, 1])
  """
  if not isinstance(params, params_lib.DRAW_TYPES):
    params_lib.check(params, 0, "tree")
  leaves, treedef = jax.tree.flatten(tree)
  layouts = _per_leaf(layouts, tree, "layouts", (str,))
  kinds = _per_leaf(kinds, tree, "kinds", (str,))
  ignores = _per_leaf(
      ignore_value, tree, "ignore_value", (int, float, np.generic, jax.Array)
  )
  out = []
  for leaf, layout, kind, ignore in zip(leaves, layouts, kinds, ignores):
    leaf = jnp.asarray(leaf)
    kind = "auto" if kind is None else kind
    validation.check_choice(kind, "kinds", KINDS)
    if kind == "keep":
      out.append(leaf)
      continue
    if layout is None:
      layout = _LAYOUT_BY_RANK.get(leaf.ndim)
      if layout is None:
        raise ValueError(
            f"a tree leaf has {validation.describe(leaf)}, whose rank has no "
            "default layout (3: 'NHW', 4: 'NHWC', 5: 'NTHWC'); pass layouts= "
            "or kinds='keep' for it."
        )
    if kind == "auto":
      floating = jnp.issubdtype(leaf.dtype, jnp.inexact)
      kind = "blend" if floating else "select"
    if kind == "select":
      if ignore is not None:
        validation.check_scalar(ignore, "ignore_value")
      out.append(_select(params, leaf, layout, ignore))
    else:
      out.append(
          apply.apply_params(params, leaf, layout=layout, fill_value=fill_value)
      )
  return jax.tree.unflatten(treedef, out)


# ---------------------------------------------------------------------------
# Detection boxes


class MixedBoxes(NamedTuple):
  """Boxes after a draw, padded to a static `max_boxes`, as from `mix_boxes`.

  Attributes:
    boxes: `[batch, max_boxes, 4]`, `(top, left, bottom, right)` in pixels,
      dtype of the input boxes; zeros in unused slots.
    classes: `[batch, max_boxes]`, the class id of each box; zeros in unused
      slots.
    valid: bool `[batch, max_boxes]`, True for the slots that hold a box. The
      valid slots come first.
    from_partner: bool `[batch, max_boxes]`, True for boxes that came from the
      partner image (for example to weight them by `1 - lam` under MixUp).
    dropped: int32 `[batch]`, how many boxes qualified but did not fit in
      `max_boxes`.
  """

  boxes: jax.Array
  classes: jax.Array
  valid: jax.Array
  from_partner: jax.Array
  dropped: jax.Array


def _intersect(box, cut):
  """The intersection of boxes `[..., 4]` (empty ones have a side <= 0)."""
  return jnp.concatenate([jnp.maximum(box[..., :2], cut[..., :2]),
                          jnp.minimum(box[..., 2:], cut[..., 2:])], axis=-1)


def _shrink_to_visible(box, cut):
  """The bounding box of `box` minus `cut`, for boxes not fully covered.

  Only a cut that spans the box's whole width can move its top or bottom, and
  only one that spans its whole height can move its left or right side.
  """
  top, left, bottom, right = (box[..., i] for i in range(4))
  c_top, c_left, c_bottom, c_right = (cut[..., i] for i in range(4))
  spans_w = (c_left <= left) & (c_right >= right)
  spans_h = (c_top <= top) & (c_bottom >= bottom)
  new_top = jnp.where(spans_w & (c_top <= top) & (c_bottom > top), c_bottom, top)
  new_bottom = jnp.where(
      spans_w & (c_bottom >= bottom) & (c_top < bottom), c_top, bottom
  )
  new_left = jnp.where(
      spans_h & (c_left <= left) & (c_right > left), c_right, left
  )
  new_right = jnp.where(
      spans_h & (c_right >= right) & (c_left < right), c_left, right
  )
  return jnp.stack([new_top, new_left, new_bottom, new_right], axis=-1)


def _resize_boxes(boxes, paste, height, width):
  """Partner boxes mapped into the ResizeMix box (`paste`, `[batch, 4]`).

  Integer boxes are rounded to the nearest pixel edge.
  """
  f32 = jnp.promote_types(boxes.dtype, jnp.float32)
  paste = paste.astype(f32)[:, None, :]
  scale_y = (paste[..., 2] - paste[..., 0]) / height
  scale_x = (paste[..., 3] - paste[..., 1]) / width
  scale = jnp.stack([scale_y, scale_x, scale_y, scale_x], axis=-1)
  out = jnp.tile(paste[..., :2], 2) + scale * boxes
  if jnp.issubdtype(boxes.dtype, jnp.integer):
    out = jnp.round(out)
  return out.astype(boxes.dtype)


def mix_boxes(
    params: params_lib.Draw,
    boxes: ArrayLike,
    classes: ArrayLike,
    valid: ArrayLike,
    *,
    min_visible: float = 0.1,
    max_boxes: Optional[int] = None,
    shrink: bool = False,
) -> MixedBoxes:
  """Applies a draw to padded detection boxes, with static shapes.

  Boxes are `(top, left, bottom, right)` = `(y1, x1, y2, x2)` in pixel-edge
  coordinates of the image the draw was made for: a box covers
  `top <= y < bottom`, `left <= x < right`, so pixel row `r` is `[r, r + 1)`
  and a box with integer corners covers exactly the pixels that
  `box_mask` would mark. This is the convention of `MixParams.box`. Areas
  are continuous, `(bottom - top) * (right - left)`.

  Per sample, by its op:

  - CutMix: the image keeps each of its own valid boxes whose area outside
    the pasted rectangle is > 0 and at least `min_visible` times its area,
    and gains each of the partner's valid boxes clipped to the rectangle,
    when the clipped area is > 0 and at least `min_visible` times the
    partner box's full area. So a zero-area box never survives CutMix.
  - ResizeMix: the own-box rule for the pasted rectangle, and every valid
    partner box, scaled and shifted into the rectangle with the image
    (rounded to whole pixels for integer boxes), when its area stays > 0.
  - Cutout: the own-box rule only (an erased object is gone).
  - MixUp: all valid boxes of both images (the whole of each is visible).
  - unchanged samples: all of their valid boxes.

  Class ids travel with their boxes. A kept own box keeps its original
  coordinates (as timm-style and mmdetection pipelines do: the object is
  still there, partly occluded), unless `shrink=True`, which replaces it by
  the bounding box of its visible part (which differs only when the
  rectangle covers a whole side strip of the box).

  Output order and overflow: kept own boxes first, in their slot order, then
  the partner's, in theirs; boxes beyond `max_boxes` are dropped from the
  end and counted in `dropped`. Everything is a sort of `2 * max_boxes`
  flags per sample, so it runs under `jit` and `vmap`.

  Args:
    params: the draw applied to the images.
    boxes: `[batch, boxes, 4]` float or integer boxes.
    classes: `[batch, boxes]` class ids (any dtype).
    valid: bool `[batch, boxes]`, True for real boxes, False for padding.
    min_visible: the visible fraction of a box's area, in [0, 1], needed to
      keep it.
    max_boxes: static output capacity; default the input's `boxes` axis.
      `2 * boxes` never drops a box.
    shrink: shrink partly covered own boxes to their visible part.

  Returns:
    A `MixedBoxes` of `boxes`, `classes`, `valid`, `from_partner`, `dropped`.

  >>> from cutmix_jax import MixParams, Op
  >>> p = MixParams(lam=jnp.array([0.75, 0.75]),
  ...               box=jnp.array([[0, 0, 4, 2], [0, 0, 4, 2]]),
  ...               partner=jnp.array([1, 0]), op=jnp.full(2, Op.CUTMIX),
  ...               height=4, width=4)
  >>> boxes = jnp.array([[[0, 0, 2, 1]], [[0, 1, 4, 4]]])  # sample 0: covered
  >>> out = mix_boxes(p, boxes, jnp.array([[3], [7]]), jnp.ones((2, 1), bool))
  >>> out.boxes[0, 0].tolist(), out.classes[:, 0].tolist()
  ([0, 1, 4, 2], [7, 7])
  """
  boxes, classes, valid, out_n = _check_boxes(
      params, boxes, classes, valid, min_visible, max_boxes)
  honoured = params_lib.honoured(params)
  op = honoured.op[:, None]
  cut = honoured.box.astype(boxes.dtype)[:, None, :]
  own, keep_own = _own_boxes(boxes, valid, op, cut, min_visible, shrink)
  gained, gain = _partner_boxes(params, honoured.box, boxes, valid, op, cut,
                                min_visible)
  return _compact(
      jnp.concatenate([own, gained], axis=1),
      jnp.concatenate([classes, pairing.partner_rows(params, classes)],
                      axis=1),
      keep_own, gain, out_n)


def _check_boxes(params, boxes, classes, valid, min_visible, max_boxes):
  """`mix_boxes`' checks; returns the arrays and the output capacity."""
  if not isinstance(params, params_lib.DRAW_TYPES):
    params_lib.check(params, 0, "boxes")
  if params.not_rectangles:
    raise TypeError(
        f"mix_boxes needs a box draw (MixParams), got a "
        f"{type(params).__name__}: which detection boxes stay visible is "
        f"decided against one rectangle per sample, and a "
        f"{params.not_rectangles}")
  boxes, classes, valid = (jnp.asarray(v) for v in (boxes, classes, valid))
  batch = params.lam.shape[0]
  if boxes.ndim != 3 or boxes.shape[0] != batch or boxes.shape[2] != 4:
    raise ValueError(
        f"boxes must be [batch={batch}, max_boxes, 4] (top, left, bottom, "
        f"right), got {validation.describe(boxes)}."
    )
  if not jnp.issubdtype(boxes.dtype, jnp.number):
    raise TypeError(f"boxes must be numeric, got {validation.describe(boxes)}.")
  n = boxes.shape[1]
  for name, value in (("classes", classes), ("valid", valid)):
    if value.shape != (batch, n):
      raise ValueError(
          f"{name} must be [batch, max_boxes] = {(batch, n)} like boxes "
          f"({validation.describe(boxes)}), got {validation.describe(value)}."
      )
  if valid.dtype != jnp.bool_:
    raise TypeError(f"valid must be bool, got {validation.describe(valid)}.")
  if not validation.is_static_number(min_visible) or not (
      0.0 <= float(min_visible) <= 1.0
  ):
    raise ValueError(f"min_visible must be a number in [0, 1], got {min_visible!r}.")
  out_n = n if max_boxes is None else validation.check_size(max_boxes, "max_boxes")
  return boxes, classes, valid, out_n


def _own_boxes(boxes, valid, op, cut, min_visible, shrink):
  """Each sample's own boxes and whether each is kept: visible enough
  outside the pasted or filled rectangle `cut`, or no rectangle at all."""
  # Areas in float32 (exact for integer corners below 2**12 per side).
  f32 = jnp.promote_types(boxes.dtype, jnp.float32)
  covers = (op == Op.CUTMIX) | (op == Op.CUTOUT) | (op == Op.RESIZEMIX)
  area = boxes_lib.box_area(boxes).astype(f32)
  visible = area - boxes_lib.box_area(_intersect(boxes, cut)).astype(f32)
  threshold = jnp.asarray(min_visible, f32) * area
  keep = valid & (~covers | ((visible > 0) & (visible >= threshold)))
  if shrink:
    boxes = jnp.where(covers[..., None], _shrink_to_visible(boxes, cut), boxes)
  return boxes, keep


def _partner_boxes(params, box, boxes, valid, op, cut, min_visible):
  """The partner's boxes as they appear in each sample (clipped to the
  CutMix rectangle, mapped into the ResizeMix box, whole under MixUp), and
  whether each is gained."""
  f32 = jnp.promote_types(boxes.dtype, jnp.float32)
  p_boxes, p_valid = (pairing.partner_rows(params, v) for v in (boxes, valid))
  p_inside = _intersect(p_boxes, cut)
  p_inside_area = boxes_lib.box_area(p_inside).astype(f32)
  p_area = boxes_lib.box_area(p_boxes).astype(f32)
  p_threshold = jnp.asarray(min_visible, f32) * p_area
  gain_cut = (op == Op.CUTMIX) & (p_inside_area > 0) & (
      p_inside_area >= p_threshold
  )
  gained = jnp.where((op == Op.CUTMIX)[..., None], p_inside, p_boxes)
  if Op.RESIZEMIX in params.possible_ops:
    if params.height is None or params.width is None:
      raise ValueError(
          "mix_boxes needs params.height and params.width to map partner "
          "boxes into a ResizeMix box; params.ops allows RESIZEMIX but they "
          f"are {(params.height, params.width)}.")
    resized = _resize_boxes(p_boxes, box, params.height, params.width)
    is_resize = op == Op.RESIZEMIX
    gain_cut = gain_cut | (is_resize & (boxes_lib.box_area(resized) > 0))
    gained = jnp.where(is_resize[..., None], resized, gained)
  return gained, p_valid & (gain_cut | (op == Op.MIXUP))


def _compact(cand_boxes, cand_classes, keep_own, gain, out_n):
  """The kept candidates (own first, then gained, each in slot order) in
  `out_n` slots, by a stable sort of the keep flags."""
  n = keep_own.shape[1]
  dtype, classes_dtype = cand_boxes.dtype, cand_classes.dtype
  cand_keep = jnp.concatenate([keep_own, gain], axis=1)
  cand_partner = jnp.concatenate(
      [jnp.zeros_like(keep_own), jnp.ones_like(gain)], axis=1
  )
  order = jnp.argsort(~cand_keep, axis=1, stable=True)
  if out_n > 2 * n:
    pad = out_n - 2 * n
    order = jnp.pad(order, ((0, 0), (0, pad)), constant_values=2 * n)
    cand_boxes = jnp.pad(cand_boxes, ((0, 0), (0, 1), (0, 0)))
    cand_classes = jnp.pad(cand_classes, ((0, 0), (0, 1)))
    cand_keep = jnp.pad(cand_keep, ((0, 0), (0, 1)))
    cand_partner = jnp.pad(cand_partner, ((0, 0), (0, 1)))
  order = order[:, :out_n]
  take = lambda v: jnp.take_along_axis(v, order, axis=1)
  out_valid = take(cand_keep)
  out_boxes = jnp.where(
      out_valid[..., None],
      jnp.take_along_axis(cand_boxes, order[..., None], axis=1),
      0,
  ).astype(dtype)
  out_classes = jnp.where(out_valid, take(cand_classes), 0).astype(
      classes_dtype)
  out_partner = out_valid & take(cand_partner)
  dropped = (cand_keep.sum(axis=1) - out_valid.sum(axis=1)).astype(jnp.int32)
  return MixedBoxes(
      boxes=out_boxes,
      classes=out_classes,
      valid=out_valid,
      from_partner=out_partner,
      dropped=dropped,
  )
