"""Label helpers: one-hot encoding and label smoothing."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cutmix_jax._src import validation

ArrayLike = jax.typing.ArrayLike


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
