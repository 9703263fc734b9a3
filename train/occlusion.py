"""Occluded copies of a test set: a centre box or random boxes of a set area.

The CutMix paper (Sec. 4.3) measures robustness by zero-filling a box of the
input. The boxes here have an exact, fixed size for a given fraction of the
image (the same for every image and every run), and the random ones are
drawn from a fixed seed, so every model sees the very same occluded images.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

KINDS = ("centre", "random")


def box_size(fraction: float, height: int, width: int) -> tuple[int, int]:
  """The box `(h, w)` whose area is closest to `fraction` of the image.

  The box is as square as the image: `h = round(H·√f)`, then
  `w = round(f·H·W / h)`, both clipped to the image. On 32×32, 25% is exactly
  16×16 = 256 pixels; 50% is 23×22 = 506 pixels (49.4%).
  """
  if not 0 <= fraction <= 1:
    raise ValueError(f"fraction must be in [0, 1], got {fraction}")
  h = min(height, max(0, round(height * math.sqrt(fraction))))
  w = 0 if h == 0 else min(width, max(0, round(fraction * height * width / h)))
  return h, w


def make_boxes(kind: str, fraction: float, n: int, height: int, width: int,
               seed: int = 0) -> np.ndarray:
  """`n` boxes `(top, left, bottom, right)`, half-open, int32 `[n, 4]`.

  Every box has the size `box_size(fraction, ...)` and lies wholly inside
  the image, so each covers exactly the same number of pixels. `"centre"`
  puts it in the middle (`top = (H - h) // 2`); `"random"` draws its corner
  uniformly over the positions where it fits, from `seed` and the fraction
  only (so it is the same for every model).
  """
  h, w = box_size(fraction, height, width)
  if kind == "centre":
    top = np.full(n, (height - h) // 2)
    left = np.full(n, (width - w) // 2)
  elif kind == "random":
    rng = np.random.default_rng([seed, round(fraction * 1_000_000)])
    top = rng.integers(0, height - h + 1, n)
    left = rng.integers(0, width - w + 1, n)
  else:
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
  return np.stack([top, left, top + h, left + w], axis=1).astype(np.int32)


def occlude(images, boxes, fill):
  """Images `[n, H, W, C]` as float32 with each box set to `fill`.

  Works on NumPy and (traced) JAX arrays alike.

  Args:
    images: raw images, any numeric dtype.
    boxes: int `[n, 4]` `(top, left, bottom, right)`, half-open; an empty box
      (`bottom <= top`) leaves its image unchanged.
    fill: a scalar or per-channel `[C]` value, in the images' (raw) units:
      0 for black, or the dataset mean, which is zero after normalisation.
  """
  xp = np if isinstance(images, np.ndarray) else jnp
  _, height, width, _ = images.shape
  rows = xp.arange(height)[None, :, None]
  cols = xp.arange(width)[None, None, :]
  b = [boxes[:, i][:, None, None] for i in range(4)]
  inside = (rows >= b[0]) & (rows < b[2]) & (cols >= b[1]) & (cols < b[3])
  fill = xp.asarray(fill, xp.float32)
  return xp.where(inside[..., None], fill, images.astype(xp.float32))
