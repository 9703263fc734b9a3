"""TransMix: label weights from a Vision Transformer's attention.

Chen et al., "TransMix: Attend to Mix for Vision Transformers", CVPR 2022
(arXiv:2111.09833); the official code is `transmix_label` in
github.com/Beckschen/TransMix, `transmix.py`. A CutMix box covers `1 - λ` of
the pixels, but the class token may attend to it more or less than that: the
rule moves the label weight halfway towards the attention's share.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Union

import jax
import jax.numpy as jnp

from cutmix_jax._src import kway
from cutmix_jax._src import labels as labels_lib
from cutmix_jax._src import params as params_lib
from cutmix_jax._src import tokens
from cutmix_jax._src import validation
from cutmix_jax._src.params import MaskParams, MixParams, Op
from cutmix_jax._src.typing import ArrayLike, PatchSize

# The ops whose label TransMix reweighs: the partner's pixels fill a region.
_REGION_OPS = (int(Op.CUTMIX), int(Op.RESIZEMIX))


def _patch_attention(attention, batch: int) -> jax.Array:
  """The attention as float32 `[batch, num_tokens]`, heads averaged, with no
  gradient."""
  if not hasattr(attention, "shape") or not hasattr(attention, "dtype"):
    raise TypeError(
        f"attention must be an array, got {type(attention).__name__}.")
  attention = jnp.asarray(attention)
  if not jnp.issubdtype(attention.dtype, jnp.floating):
    raise TypeError(
        "attention must be float, the class token's softmax attention to the "
        f"patches, got {validation.describe(attention)}.")
  if attention.ndim not in (2, 3) or attention.shape[0] != batch:
    raise ValueError(
        f"attention must be [batch, num_tokens] or [batch, heads, num_tokens] "
        f"with batch {batch} (the draw's), got "
        f"{validation.describe(attention)}.")
  attention = jax.lax.stop_gradient(attention.astype(jnp.float32))
  # The official model averages over heads: attn[:, :, 0, 1:].mean(1).
  return attention.mean(1) if attention.ndim == 3 else attention


def transmix_lam(
    params: Union[MixParams, MaskParams],
    attention: ArrayLike,
    *,
    patch_size: PatchSize,
) -> jax.Array:
  """The own-label weight λ of every sample under TransMix's rule.

  For a sample whose partner's pixels fill a region (CutMix, ResizeMix, a
  mask draw), with `m` its `token_mask` (the partner's share of each token)
  and `a` the class token's attention to the patches, averaged over heads:

  - `w2 = sum(m * a)`, `w1 = sum((1 - m) * a)`, `λ_attn = w2 / (w1 + w2)`,
    the attention's share on the partner's tokens;
  - the partner's weight becomes `(λ_area + λ_attn) / 2`, where `λ_area = 1
    - params.lam` is the exact fraction of pixels pasted; the returned own
    weight is one minus that.

  Other samples keep `params.lam` as every applier honours it: MixUp samples
  their blend weight (a blend has no region to attend to, as in the official
  code); Cutout samples 1 (their box holds a fill, not a partner, so no
  label moves); unmixed samples 1.

  This is the official `transmix_label` with these differences:

  - It is per sample: each sample has its own region, partner and op, so it
    works for `mode='elem'` and `'pair'`, and for ResizeMix and mask draws
    (FMix, multi-box). The official code takes one box for the batch.
  - The token grid is `(height // ph, width // pw)`, not the official
    `sqrt(num_tokens)` square, so non-square images work.
  - The 0.5 is fixed as in the official code, whose `ratio=0.5` argument is
    not read.
  - A soft mask's token weights `m` in [0, 1] enter `w1` and `w2` as they
    are (for a hard mask `m` is 0 or 1, as in the official code).

  The attention goes through `jax.lax.stop_gradient`, as the official model
  returns it detached: the labels steer the logits, never the attention.

  Args:
    params: the draw applied to the images: a `MixParams` (any op; the box
      ops need its `height` and `width`) or a `MaskParams`. A
      `CuboidParams` is rejected.
    attention: float `[batch, num_tokens]` or `[batch, heads, num_tokens]`
      (averaged over heads): the last block's softmax attention of the class
      token over the patch tokens, taken from a softmax that includes the
      class token, before dropout, with the class token's own entry dropped
      (so a row sums to `1 - a(cls -> cls)`). The tokens are in `token_mask`
      order; their number must be the draw's grid.
    patch_size: the ViT's patch size, an int or `(ph, pw)`.

  Returns:
    float32 `[batch]`: each sample's own-label weight. Replace the draw's
    `lam` with it (`dataclasses.replace(params, lam=...)`) to feed any label
    function of the draw; `transmix_labels` and `transmix_labels_kway` do
    this for dense and k-way targets.

  >>> from cutmix_jax import sample_cutmix
  >>> p = sample_cutmix(jax.random.key(0), 2, 8, 8, mode="elem")
  >>> attn = jnp.full((2, 16), 1 / 17)  # uniform over 16 patches and CLS
  >>> lam = transmix_lam(p, attn, patch_size=2)
  >>> lam.shape, lam.dtype
  ((2,), dtype('float32'))
  """
  tokens.check_draw(params, "params")
  honoured = params_lib.honoured(params)
  batch = honoured.lam.shape[0]
  attention = _patch_attention(attention, batch)
  region_ops = (_REGION_OPS if isinstance(params, MixParams) else
                (int(Op.CUTMIX),))
  if not set(region_ops) & {int(o) for o in _possible_ops(params)}:
    # MixUp, Cutout or nothing: no label moves, and a draw without an image
    # size (sample_mixup) has no grid to check the tokens against.
    if isinstance(params, MaskParams) or params.height is not None:
      _check_tokens(attention, params, patch_size)
    return honoured.lam
  mask = _check_tokens(attention, params, patch_size).astype(jnp.float32)
  # As the official code: two sums, not `w2 / sum(a)`.
  w1 = jnp.sum((1 - mask) * attention, axis=1)
  w2 = jnp.sum(mask * attention, axis=1)
  lam_attn = w2 / (w1 + w2)
  partner = ((1 - honoured.lam) + lam_attn) * 0.5
  reweighed = jnp.isin(honoured.op, jnp.asarray(region_ops, jnp.int32))
  return jnp.where(reweighed, 1 - partner, honoured.lam)


def _possible_ops(params) -> tuple[Op, ...]:
  return (params.possible_ops if isinstance(params, MixParams)
          else (Op.CUTMIX,))


def _check_tokens(attention, params, patch_size) -> jax.Array:
  """The draw's token mask, after checking the attention's token count."""
  mask = tokens.token_mask(params, patch_size=patch_size)
  num_tokens = mask.shape[1]
  if attention.shape[-1] != num_tokens:
    height, width = (params.mask.shape[1:] if isinstance(params, MaskParams)
                     else (params.height, params.width))
    ph, pw = tokens.check_patch_size(patch_size)
    hint = (" Drop the class token's own entry (attention[..., 1:])."
            if attention.shape[-1] == num_tokens + 1 else "")
    raise ValueError(
        f"attention has {attention.shape[-1]} tokens but the draw's "
        f"{height}x{width} images in patches of {ph}x{pw} have "
        f"{height // ph}x{width // pw} = {num_tokens}.{hint}")
  return mask


def transmix_labels(
    params: Union[MixParams, MaskParams],
    labels: ArrayLike,
    attention: ArrayLike,
    *,
    patch_size: PatchSize,
    num_classes: Optional[int] = None,
    label_smoothing: ArrayLike = 0.0,
) -> jax.Array:
  """TransMix's mixed targets: `mix_labels` with `transmix_lam`'s weights.

  The classes are those of `mix_labels` (each sample's own and its
  partner's); only the weights change, by `transmix_lam`'s rule, which
  describes the attention and every op.

  Args:
    params: the draw applied to the images (`MixParams` or `MaskParams`).
    labels: integer ids `[batch]` (needs `num_classes`) or float targets
      `[batch, num_classes]`.
    attention: the class token's attention to the patch tokens, `[batch,
      num_tokens]` or `[batch, heads, num_tokens]` (see `transmix_lam`).
    patch_size: the ViT's patch size, an int or `(ph, pw)`.
    num_classes: number of classes, for integer labels.
    label_smoothing: applied before mixing, as in `mix_labels` (and as the
      official code smooths both one-hot labels before mixing them).

  Returns:
    float `[batch, num_classes]` targets.

  >>> from cutmix_jax import sample_cutmix
  >>> p = sample_cutmix(jax.random.key(0), 2, 8, 8, mode="elem")
  >>> attn = jax.nn.softmax(jax.random.normal(jax.random.key(1), (2, 17)))
  >>> y = transmix_labels(p, jnp.array([0, 1]), attn[:, 1:], patch_size=2,
  ...                     num_classes=2)
  >>> bool(jnp.allclose(y.sum(-1), 1.0))
  True
  """
  lam = transmix_lam(params, attention, patch_size=patch_size)
  return labels_lib.mix_labels(
      dataclasses.replace(params, lam=lam), labels, num_classes=num_classes,
      label_smoothing=label_smoothing)


def transmix_labels_kway(
    params: Union[MixParams, MaskParams],
    labels: ArrayLike,
    attention: ArrayLike,
    *,
    patch_size: PatchSize,
    num_classes: int,
    label_smoothing: ArrayLike = 0.0,
) -> kway.KWayLabels:
  """TransMix's labels as (class, weight) pairs: `mix_labels_kway` with
  `transmix_lam`'s weights.

  The k-way twin of `transmix_labels`, for the losses that never build a
  `[batch, num_classes]` target (`softmax_cross_entropy_kway`); its
  `to_dense()` is `transmix_labels`' output. Arguments are as there, with
  integer labels only.

  Returns:
    `KWayLabels`: each sample's own class with weight `lam` (from
    `transmix_lam`) and its partner's with `1 - lam`.

  >>> from cutmix_jax import sample_cutmix
  >>> p = sample_cutmix(jax.random.key(0), 2, 8, 8, mode="elem")
  >>> attn = jax.nn.softmax(jax.random.normal(jax.random.key(1), (2, 17)))
  >>> y = transmix_labels_kway(p, jnp.array([0, 1]), attn[:, 1:],
  ...                          patch_size=2, num_classes=2)
  >>> y.classes.tolist(), bool(jnp.all(y.weights.sum(-1) == 1))
  ([[0, 1], [1, 0]], True)
  """
  lam = transmix_lam(params, attention, patch_size=patch_size)
  return kway.mix_labels_kway(
      dataclasses.replace(params, lam=lam), labels, num_classes=num_classes,
      label_smoothing=label_smoothing)
