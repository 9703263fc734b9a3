"""Every box rule, and the arithmetic of boxes.

A box is int32 `(top, left, bottom, right)`, half-open: it covers rows
`top <= h < bottom` and columns `left <= w < right`. The rules turn uniform
words (from `prng`) into boxes, elementwise over any batch shape:

- `span`: one side of the paper's box and of the cuboid's time range;
- `from_lam`: the paper's CutMix box for a given λ;
- `from_minmax`: timm's `cutmix_minmax` box;
- `cutout`: Cutout's fixed-size box;
- `resize`: ResizeMix's box, which keeps the image's aspect ratio;
- `multibox`: the boxes of French et al.'s multi-box masks.

`box_mask` is the one place a box becomes pixels; `apply_params` uses its
broadcast form, `broadcast_mask`, so that no full-size mask is materialised.
"""

from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from cutmix_jax._src import prng
from cutmix_jax._src import validation
from cutmix_jax._src.typing import ArrayLike



def span(bits: jax.Array, cut: jax.Array, size: int,
         placement: str) -> tuple[jax.Array, jax.Array]:
  """`(start, stop)` of a cut of length `cut` on an axis of `size`.

  'official' (the paper's `rand_bbox`) centres the cut uniformly over every
  position, the last included, and clips `centre -/+ cut // 2` to the axis;
  'inside' keeps the cut whole, its start uniform over where it fits.
  """
  if placement == "official":
    centre = prng.uniform_int(bits, size)
    return (jnp.clip(centre - cut // 2, 0, size),
            jnp.clip(centre + cut // 2, 0, size))
  start = prng.uniform_int(bits, size - cut + 1)
  return start, start + cut


def from_lam(lam: jax.Array, bits_y: jax.Array, bits_x: jax.Array,
             height: int, width: int, placement: str) -> jax.Array:
  """The paper's box for λ: sides `floor(side * sqrt(1 - λ))`, each placed
  by `span`."""
  ratio = jnp.sqrt(1.0 - lam)
  cut_h = jnp.floor(height * ratio).astype(jnp.int32)
  cut_w = jnp.floor(width * ratio).astype(jnp.int32)
  top, bottom = span(bits_y, cut_h, height, placement)
  left, right = span(bits_x, cut_w, width, placement)
  return jnp.stack([top, left, bottom, right], axis=-1)


def from_minmax(bits: jax.Array, height: int, width: int,
                minmax: tuple[float, float]) -> jax.Array:
  """timm's `cutmix_minmax`: sides uniform over `int(lo * side)` ..
  `int(hi * side)` inclusive, placed uniformly where the box fits whole."""
  lo, hi = minmax
  min_h, max_h = int(height * lo), int(height * hi)
  min_w, max_w = int(width * lo), int(width * hi)
  cut_h = min_h + prng.uniform_int(bits[0], max_h - min_h + 1)
  cut_w = min_w + prng.uniform_int(bits[1], max_w - min_w + 1)
  top = prng.uniform_int(bits[2], height - cut_h + 1)
  left = prng.uniform_int(bits[3], width - cut_w + 1)
  return jnp.stack([top, left, top + cut_h, left + cut_w], axis=-1)


def cutout(bits: jax.Array, height: int, width: int,
           size: tuple[int, int]) -> jax.Array:
  """Cutout's box: rows `c - size // 2` to `c - size // 2 + size` for a
  centre `c` uniform over the rows (likewise columns), clipped to the
  image."""
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


def resize(bits: jax.Array, height: int, width: int,
           scale: tuple[float, float]) -> jax.Array:
  """ResizeMix's box: sides `floor(tau * side)` for tau ~ U(lo, hi), placed
  uniformly where it fits whole, so the resized partner is never clipped."""
  lo, hi = scale
  tau = lo + prng.unfused((hi - lo) * prng.uniform(bits[0]))
  box_h = jnp.floor(height * tau).astype(jnp.int32)
  box_w = jnp.floor(width * tau).astype(jnp.int32)
  top = prng.uniform_int(bits[1], height - box_h + 1)
  left = prng.uniform_int(bits[2], width - box_w + 1)
  return jnp.stack([top, left, top + box_h, left + box_w], axis=-1)


def multibox(u: jax.Array, height: int, width: int, *,
             area_range: tuple[float, float],
             aspect_range: Optional[tuple[float, float]]) -> jax.Array:
  """French et al.'s boxes from uniforms `u` `[4, draws, n_boxes]` (the
  proportion, the aspect and the two position coordinates of each box).

  A draw's proportion `p` is uniform in `area_range` and split evenly over
  its boxes; the height proportion is `p^u` (so the aspect spans [p, 1/p]),
  or the aspect is log-uniform in `aspect_range`. Sides are rounded, and a
  box's top-left corner is `round(u * (side - box_side))`, as in their code.

  Returns:
    int32 `[draws, n_boxes, 4]`.
  """
  lo, hi = area_range
  n_boxes = u.shape[-1]
  prop = lo + prng.unfused((hi - lo) * u[0])
  if aspect_range is None:
    h_prop = jnp.where(prop > 0, prop ** u[1], 0.0)
    w_prop = jnp.where(prop > 0, prop / jnp.where(prop > 0, h_prop, 1.0), 0.0)
  else:
    a_lo, a_hi = aspect_range
    aspect = jnp.exp(jnp.log(a_lo) + prng.unfused(
        u[1] * (jnp.log(a_hi) - jnp.log(a_lo))))
    h_prop, w_prop = jnp.sqrt(prop * aspect), jnp.sqrt(prop / aspect)
  scale = (1.0 / n_boxes) ** 0.5
  box_h = jnp.clip(jnp.round(h_prop * scale * height), 0, height)
  box_w = jnp.clip(jnp.round(w_prop * scale * width), 0, width)
  top = jnp.round((height - box_h) * u[2])
  left = jnp.round((width - box_w) * u[3])
  boxes = jnp.stack([top, left, top + box_h, left + box_w], -1)
  return boxes.astype(jnp.int32)


def box_area(box: ArrayLike) -> jax.Array:
  """Area of `(top, left, bottom, right)` boxes `[..., 4]`, in the boxes'
  dtype: a pixel count for int32 boxes, 0 for empty ones.

  >>> box_area(jnp.array([[1, 0, 3, 2], [2, 2, 1, 5]])).tolist()  # 2nd empty
  [4, 0]
  """
  box = jnp.asarray(box)
  return jnp.maximum(box[..., 2] - box[..., 0], 0) * jnp.maximum(
      box[..., 3] - box[..., 1], 0
  )


def lam_from_box(box: ArrayLike, height: int, width: int) -> jax.Array:
  """The own-label weight: the fraction of pixels outside the pasted boxes.

  Computed as `kept_fraction(kept_pixels, height * width)`.

  >>> float(lam_from_box(jnp.array([0, 0, 2, 4]), 4, 4))  # 8 of 16 pasted
  0.5
  """
  return kept_fraction(height * width - box_area(box), height * width)


def kept_fraction(kept: jax.Array, total: int) -> jax.Array:
  """λ from a count: `kept * float32(1 / total)`, in float32.

  One product, not a division: XLA rewrites a division by a constant into
  this product under `jit` but not in eager mode, so writing the product
  keeps eager, `jit` and `vmap` bit-identical. Every λ recomputed from the
  region actually pasted (boxes, masks, cuboids) is this formula.
  """
  return jnp.asarray(kept).astype(jnp.float32) * jnp.float32(1.0 / total)


def broadcast_mask(box: jax.Array, shape: Sequence[int], h_axis: int, *,
                   col_scale: int = 1) -> jax.Array:
  """`box_mask` for an array of `shape`, in broadcastable factors.

  `box` is `[*lead, 4]` for the leading axes `shape[:box.ndim - 1]`; the
  height and width axes are `h_axis`, `h_axis + 1`, the width scaled by
  `col_scale` (for a view that folds trailing axes into the width). The row
  test is made on a `[*lead, .., height, 1]` iota and the column test on a
  `[*lead, .., 1, width]` one, and only their AND is broadcast: comparing
  full-size iotas cost four compares per pixel, which showed on uint8 (1.5x
  a copy vs 1.3x).
  """
  ndim, lead = len(shape), box.ndim - 1
  row_shape = list(shape[:lead]) + [1] * (ndim - lead)
  col_shape = list(row_shape)
  row_shape[h_axis] = shape[h_axis]
  col_shape[h_axis + 1] = shape[h_axis + 1]
  rows = lax.broadcasted_iota(jnp.int32, row_shape, h_axis)
  cols = lax.broadcasted_iota(jnp.int32, col_shape, h_axis + 1)
  bounds = box.reshape(box.shape[:-1] + (1,) * (ndim - lead) + (4,))
  top, left, bottom, right = (bounds[..., i] for i in range(4))
  in_rows = (rows >= top) & (rows < bottom)
  in_cols = (cols >= left * col_scale) & (cols < right * col_scale)
  return in_rows & in_cols


def box_mask(box: ArrayLike, height: int, width: int) -> jax.Array:
  """A bool `[..., height, width]` mask that is True inside the box.

  Built from coordinate comparisons (no dynamic slicing), so it works for
  traced boxes and under `vmap`.

  Args:
    box: int `[..., 4]`, `(top, left, bottom, right)`.
    height: the mask's height.
    width: the mask's width.

  Returns:
    bool `[..., height, width]`.

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
  shape = box.shape[:-1] + (height, width)
  return broadcast_mask(box, shape, box.ndim - 1)
