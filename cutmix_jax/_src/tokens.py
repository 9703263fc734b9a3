"""A draw at the resolution of a Vision Transformer's tokens.

A ViT cuts an image of `height x width` pixels into a grid of `(height // ph)
x (width // pw)` patches of `ph x pw` pixels and flattens the grid row by row
(the order of a patch embedding's `reshape`). `token_mask` says, for each
sample and each of these tokens, how much of it the draw replaces (by the
partner, or Cutout's fill); the TransMix label rule (`transmix.py`) weighs
the attention with it. The samplers' `patch_size` draws on this grid.
"""

from __future__ import annotations

from typing import Any, Union

import jax
import jax.numpy as jnp
import numpy as np

from cutmix_jax._src import params as params_lib
from cutmix_jax._src.params import CuboidParams, MaskParams, MixParams, Op
from cutmix_jax._src.typing import PatchSize


def check_patch_size(patch_size: Any) -> tuple[int, int]:
  """A static `(ph, pw)` of ints >= 1, from an int or a pair."""
  sizes = (patch_size, patch_size) if isinstance(
      patch_size, (int, np.integer)) else patch_size
  try:
    ph, pw = sizes
  except (TypeError, ValueError):
    ph = pw = None
  ok = all(isinstance(s, (int, np.integer)) and not isinstance(s, bool)
           and s >= 1 for s in (ph, pw))
  if not ok:
    raise ValueError(
        "patch_size must be a static int or a pair (ph, pw) of ints >= 1, "
        f"got {patch_size!r}.")
  return int(ph), int(pw)


def grid(height: int, width: int, patch_size: tuple[int, int]
         ) -> tuple[int, int]:
  """The token grid `(height // ph, width // pw)`; an image that the patches
  do not tile is an error (a ViT's patch embedding would drop its edge)."""
  ph, pw = patch_size
  if height % ph or width % pw:
    raise ValueError(
        f"the image size {(height, width)} is not a multiple of patch_size "
        f"{(ph, pw)}: a ViT's patches must tile the image exactly.")
  return height // ph, width // pw


def sampler_patch(patch_size: Any, height: int, width: int
                  ) -> tuple[int, int]:
  """A sampler's checked `patch_size`: `(1, 1)` for None (pixel boxes, the
  same draw), else a patch that tiles the image."""
  if patch_size is None:
    return 1, 1
  patch = check_patch_size(patch_size)
  grid(height, width, patch)
  return patch


def to_pixels(box: jax.Array, patch: tuple[int, int]) -> jax.Array:
  """Boxes `[..., 4]` on the token grid to pixel boxes."""
  if patch == (1, 1):
    return box
  ph, pw = patch
  return box * jnp.asarray([ph, pw, ph, pw], box.dtype)


def repeat_tokens(masks: jax.Array, patch: tuple[int, int]) -> jax.Array:
  """Masks `[n, gh, gw]` on the token grid to pixels: each token's value on
  its whole patch."""
  if patch == (1, 1):
    return masks
  return jnp.repeat(jnp.repeat(masks, patch[0], axis=1), patch[1], axis=2)


def _image_size(params: Union[MixParams, MaskParams]) -> tuple[int, int]:
  if isinstance(params, MaskParams):
    return tuple(params.mask.shape[1:])
  if params.height is None or params.width is None:
    raise ValueError(
        "params has no image size (height=None, as a sample_mixup draw): its "
        "token grid is unknown. Draw with a sampler that takes height and "
        "width (sample_cutmix, sample_mix, ...).")
  return params.height, params.width


def check_draw(params: Any, name: str) -> None:
  """Rejects anything but a box or mask draw, naming `name`."""
  if isinstance(params, CuboidParams):
    raise TypeError(
        f"{name} takes an image draw (MixParams or MaskParams), got a "
        "CuboidParams: a video cuboid spans frames, and the order of a video "
        "ViT's space-time tokens (tubelets) is not defined here.")
  if not isinstance(params, (MixParams, MaskParams)):
    params_lib.check(params, 0, name)  # raises, naming the type seen


def token_mask(
    params: Union[MixParams, MaskParams],
    *,
    patch_size: PatchSize,
) -> jax.Array:
  """How much of each token is replaced by the draw: `[batch, num_tokens]`.

  Tokens are the `ph x pw` patches of the image in row-major order, token
  `i * (width // pw) + j` being the patch at rows `i * ph ..` and columns
  `j * pw ..`: the order of a standard patch embedding (a `ph x pw`
  convolution of stride `(ph, pw)`, or a `reshape`), then flattened.

  A token takes the value of its patch's **top-left pixel**, as the official
  TransMix code does: it resizes the pixel mask to the token grid with
  PyTorch's legacy `nn.Upsample` (mode 'nearest'), which reads pixel
  `(i * ph, j * pw)` for token `(i, j)`. (`jax.image.resize` with 'nearest'
  would read the patch's centre instead.) A box that cuts through a patch
  counts the patch wholly in or wholly out, by its top-left pixel; a draw
  made with the same `patch_size` has no such patch, and each token's value
  is then that of every pixel of its patch.

  Per sample, by its op (`params.op`, as every applier honours it), from the
  same region as the pixels (`apply_params`):

  - CutMix and ResizeMix: inside the box, the partner's (resized) pixels;
    a mask draw: its mask (a soft mask's weights).
  - MixUp: every token holds `1 - lam` of the partner.
  - Cutout: inside the box, the fill.
  - Unmixed samples: nothing.

  Args:
    params: a box draw (`MixParams`, with its `height` and `width`) or a mask
      draw (`MaskParams`).
    patch_size: the ViT's patch size, an int or `(ph, pw)`; the image's
      height and width must be multiples of it.

  Returns:
    `[batch, (height // ph) * (width // pw)]`, with a dtype fixed at trace
    time: bool when every op the draw may hold is a hard box or mask; float32
    (the weight of the other source) when it may hold MixUp
    (`Op.MIXUP in params.ops`) or is a soft mask.

  >>> p = MixParams(lam=jnp.array([0.375]), box=jnp.array([[0, 3, 8, 8]]),
  ...               partner=jnp.array([0]), op=jnp.array([int(Op.CUTMIX)]),
  ...               height=8, width=8, ops=(int(Op.CUTMIX),))
  >>> token_mask(p, patch_size=4)  # columns 3..7: only patches at column 4
  Array([[False,  True, False,  True]], dtype=bool)
  """
  check_draw(params, "params")
  height, width = _image_size(params)
  patch = check_patch_size(patch_size)
  gh, gw = grid(height, width, patch)
  field = params.field(height, width, stride=patch)
  return field.reshape(field.shape[0], gh * gw)
