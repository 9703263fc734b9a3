"""Losses of logits against k-way labels, with no `[batch, classes]` target.

Both losses need the target only through `sum_c t_c * z_c` (and softmax
cross-entropy through `sum_c t_c` too). For `t = (1 - s) * sum_j w_j *
e_{c_j} + s / C` that is `(1 - s) * sum_j w_j * z[c_j] + (s / C) * sum_c z_c`:
k gathers and one row sum. Gradients are JAX's own, through the gather (a
scatter-add of k values per row into the logits' gradient), so the only
`[batch, classes]` buffers are the logits and their gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cutmix_jax._src import kway as kway_lib
from cutmix_jax._src import labels as labels_lib
from cutmix_jax._src import validation

from cutmix_jax._src.typing import ArrayLike


def _check(logits, labels, name: str) -> jax.Array:
  if not isinstance(labels, kway_lib.KWayLabels):
    raise TypeError(
        f"{name} takes labels as KWayLabels (from mix_labels_kway or the ops' "
        f"targets='kway'), got {type(labels).__name__} "
        f"{validation.describe(labels)}; for dense [batch, num_classes] "
        "targets use the optax loss of the same name.")
  logits = jnp.asarray(logits)
  if logits.ndim < 1 or not jnp.issubdtype(logits.dtype, jnp.floating):
    raise TypeError(
        f"logits must be float [..., num_classes], got "
        f"{validation.describe(logits)}.")
  if logits.shape[-1] != labels.num_classes:
    raise ValueError(
        f"logits ({validation.describe(logits)}) have {logits.shape[-1]} "
        f"classes but labels.num_classes is {labels.num_classes}.")
  if logits.shape[:-1] != labels.classes.shape[:-1]:
    raise ValueError(
        f"logits ({validation.describe(logits)}) and labels.classes "
        f"({validation.describe(labels.classes)}) must have the same batch "
        f"shape, got {tuple(logits.shape[:-1])} and "
        f"{tuple(labels.classes.shape[:-1])}.")
  labels_lib._check_smoothing(labels.label_smoothing)  # pylint: disable=protected-access
  # Reduced in float32 at least: bf16 logits would lose the small terms.
  return logits.astype(jnp.promote_types(logits.dtype, jnp.float32))


def _target_terms(z: jax.Array, labels: kway_lib.KWayLabels):
  """`(sum_c t_c z_c, sum_c t_c)` per row, NaN where an id is invalid."""
  c, w, eps = labels.classes, labels.weights.astype(z.dtype), \
      labels.label_smoothing
  num_classes = labels.num_classes
  static = validation.is_static_number(eps)
  keep = 1 - (float(eps) if static else jnp.asarray(eps, z.dtype))
  valid = (c >= 0) & (c < num_classes)
  # `one_hot`'s rule: an invalid id poisons its row if it is the sample's own
  # (column 0) or has a nonzero weight. The NaN sits in the gather's weight,
  # so the gradient is NaN as well as the loss.
  column = jnp.arange(c.shape[-1]) == 0
  poisoned = ~valid & (column | (w != 0))
  scale = jnp.where(poisoned, jnp.nan, keep * w)
  picked = jnp.take_along_axis(z, jnp.clip(c, 0, num_classes - 1), axis=-1,
                               mode="promise_in_bounds")
  dot = jnp.sum(scale * picked, axis=-1)
  mass = keep * jnp.sum(w, axis=-1)
  if not (static and not eps):
    eps = float(eps) if static else jnp.asarray(eps, z.dtype)
    dot = dot + eps / num_classes * jnp.sum(z, axis=-1)
    mass = mass + eps
  return dot, mass


def softmax_cross_entropy_kway(
    logits: ArrayLike, labels: kway_lib.KWayLabels
) -> jax.Array:
  """Softmax cross-entropy against k-way labels, per example.

  Equals `optax.softmax_cross_entropy(logits, labels.to_dense())` to float32
  rounding, in value and gradient, without the dense target: with `t` the
  labels' target, it is `sum_c t_c * logsumexp(z) - sum_c t_c * z_c`, i.e.
  `logsumexp(z) - (1 - s) * sum_j w_j * z[c_j] - (s / C) * sum_c z_c` when
  the weights sum to 1. The official CutMix loss `lam * CE(z, y_a) + (1 -
  lam) * CE(z, y_b)` is the case `s = 0`.

  Args:
    logits: float `[..., num_classes]`; bfloat16 and float16 are computed in
      float32 (the gradient comes back in the logits' dtype).
    labels: `KWayLabels` with batch shape `logits.shape[:-1]`.

  Returns:
    float32 (or wider) `[...]`: one loss per example. NaN for a row with an
    invalid class id (see `KWayLabels`), in the gradient too.

  References:
    Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers
    with Localizable Features", ICCV 2019 (the two-term loss).

  >>> from cutmix_jax import KWayLabels
  >>> y = KWayLabels(jnp.array([[0, 2]]), jnp.array([[0.5, 0.5]]),
  ...                num_classes=3)
  >>> softmax_cross_entropy_kway(jnp.zeros((1, 3)), y)  # log 3
  Array([1.0986123], dtype=float32)
  """
  z = _check(logits, labels, "softmax_cross_entropy_kway")
  dot, mass = _target_terms(z, labels)
  return mass * jax.nn.logsumexp(z, axis=-1) - dot


def sigmoid_binary_cross_entropy_kway(
    logits: ArrayLike, labels: kway_lib.KWayLabels
) -> jax.Array:
  """Sigmoid binary cross-entropy against k-way labels, summed over classes.

  Equals `optax.sigmoid_binary_cross_entropy(logits,
  labels.to_dense()).sum(-1)` to float32 rounding, in value and gradient:
  `sum_c softplus(z_c) - sum_c t_c * z_c`, where the second sum takes the k
  gathered logits and the row sum only. This is big_vision's default loss
  for ImageNet-21k pre-training, with mixed targets.

  Args:
    logits: float `[..., num_classes]`; bfloat16 and float16 are computed in
      float32.
    labels: `KWayLabels` with batch shape `logits.shape[:-1]`.

  Returns:
    float32 (or wider) `[...]`: one loss per example, summed over classes.
    NaN for a row with an invalid class id, in the gradient too.

  References:
    Beyer et al., "Are we done with ImageNet?", 2020, arXiv:2006.07159
    (sigmoid cross-entropy for ImageNet).

  >>> from cutmix_jax import KWayLabels
  >>> y = KWayLabels(jnp.array([[1]]), num_classes=2)
  >>> sigmoid_binary_cross_entropy_kway(jnp.zeros((1, 2)), y)  # 2 log 2
  Array([1.3862944], dtype=float32)
  """
  z = _check(logits, labels, "sigmoid_binary_cross_entropy_kway")
  dot, _ = _target_terms(z, labels)
  return jnp.sum(jax.nn.softplus(z), axis=-1) - dot
