"""Labels: one-hot encoding, label smoothing, and mixing them with a draw."""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from cutmix_jax._src import pairing
from cutmix_jax._src import params as params_lib
from cutmix_jax._src import validation
from cutmix_jax._src.typing import ArrayLike



def _check_smoothing(label_smoothing) -> None:
  validation.check_scalar(label_smoothing, "label_smoothing")
  if validation.is_static_number(label_smoothing) and not (
      0.0 <= float(label_smoothing) <= 1.0
  ):
    raise ValueError(
        f"label_smoothing must be in [0, 1], got {float(label_smoothing)}."
    )


def smooth_labels(labels: ArrayLike, label_smoothing: ArrayLike) -> jax.Array:
  """Label smoothing of float targets `[batch, num_classes]`, as timm does.

  A one-hot row becomes `off = s / K` and `on = 1 - s + s / K`; soft and
  multi-hot rows get the same affine map `y * (1 - s) + s / K`.

  >>> smooth_labels(jnp.array([[0.0, 1.0]]), 0.1)
  Array([[0.05, 0.95]], dtype=float32)
  """
  _check_smoothing(label_smoothing)
  labels = jnp.asarray(labels)
  if labels.ndim < 1 or not jnp.issubdtype(labels.dtype, jnp.floating):
    raise TypeError(
        "labels must be float targets [..., num_classes], got "
        f"{validation.describe(labels)}."
    )
  num_classes = labels.shape[-1]
  s = jnp.asarray(label_smoothing, labels.dtype)
  return labels * (1 - s) + s / num_classes


def one_hot(
    labels: ArrayLike,
    num_classes: int,
    *,
    label_smoothing: ArrayLike = 0.0,
    dtype: jnp.dtype = jnp.float32,
) -> jax.Array:
  """One-hot encodes integer labels `[batch]` to `[batch, num_classes]`.

  Ids outside `[0, num_classes)` give a row of NaN rather than a silent row of
  zeros (which would mix into targets that do not sum to one); the NaN shows up
  in the loss.

  >>> one_hot(jnp.array([2, 0]), 3, label_smoothing=0.3)
  Array([[0.1, 0.1, 0.8],
         [0.8, 0.1, 0.1]], dtype=float32)
  """
  num_classes = validation.check_size(num_classes, "num_classes")
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(
        f"labels must be integer class ids, got {validation.describe(labels)}."
    )
  _check_smoothing(label_smoothing)
  targets = jax.nn.one_hot(labels, num_classes, dtype=dtype)
  valid = (labels >= 0) & (labels < num_classes)
  targets = jnp.where(valid[..., None], targets, jnp.nan)
  if validation.is_static_number(label_smoothing) and not label_smoothing:
    return targets
  return smooth_labels(targets, label_smoothing)


def as_targets(
    labels: jax.Array, num_classes: int, label_smoothing: ArrayLike
) -> jax.Array:
  """Integer ids or float targets to float `[batch, num_classes]` targets."""
  if labels.ndim == 1:
    return one_hot(labels, num_classes, label_smoothing=label_smoothing)
  targets = labels.astype(jnp.promote_types(labels.dtype, jnp.float32))
  if validation.is_static_number(label_smoothing) and not label_smoothing:
    return targets
  return smooth_labels(targets, label_smoothing)


def mix_labels(
    params: params_lib.Draw,
    labels: ArrayLike,
    *,
    num_classes: Optional[int] = None,
    label_smoothing: ArrayLike = 0.0,
) -> jax.Array:
  """Mixes labels with any draw: `lam * y + (1 - lam) * y[partner]`.

  `lam` is the draw's own-label weight, under an op that mixes labels
  (CutMix, MixUp, ResizeMix; 1 otherwise): the exact kept fraction of pixels
  for a box or mask draw, of voxels for a cuboid draw.

  Args:
    params: the draw that was applied to the images: a `MixParams`,
      `MaskParams` or `CuboidParams`.
    labels: integer ids `[batch]` (needs `num_classes`) or float targets
      `[batch, num_classes]`: one-hot, soft or multi-hot, mixed linearly.
    num_classes: number of classes, for integer labels.
    label_smoothing: timm's smoothing `s` in [0, 1], applied before mixing:
      one-hot rows become `off = s / K`, `on = 1 - s + s / K`. May be
      traced; a traced `s` is not range-checked, and outside [0, 1] this map
      gives targets outside [0, 1] (a row still sums to 1), NaN gives NaN.

  Returns:
    float `[batch, num_classes]` targets (float32, or wider for wider input).

  >>> from cutmix_jax import sample_mixup
  >>> p = sample_mixup(jax.random.key(0), 2)
  >>> y = mix_labels(p, jnp.array([0, 1]), num_classes=2)
  >>> bool(jnp.allclose(y.sum(-1), 1.0)), bool(jnp.allclose(y[0], y[1, ::-1]))
  (True, True)
  """
  labels = jnp.asarray(labels)
  if not isinstance(params, params_lib.DRAW_TYPES):
    params_lib.check(params, 0, "labels")
  batch = params.lam.shape[0] if params.lam.ndim else 0
  num_classes = validation.check_labels(labels, batch, num_classes)
  params_lib.check(params, labels.shape[0], "labels")
  targets = as_targets(labels, num_classes, label_smoothing)
  lam = params_lib.honoured(params).lam.astype(targets.dtype)[:, None]
  partner = pairing.partner_rows(params, targets)
  # One multiply, as in `apply_params`' blend, so every compilation rounds
  # alike; unmixed rows are kept exactly.
  return jnp.where(lam == 1, targets, partner + lam * (targets - partner))
