"""k-way labels: each sample's (class, weight) pairs instead of a dense row.

A draw mixes each sample with exactly one partner, so its mixed target is
two classes and two weights whatever the number of classes. `KWayLabels`
holds them, `[batch, k]` each; the fused losses in `losses.py` take them
with the logits and never build a `[batch, num_classes]` target.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp

from cutmix_jax._src import labels as labels_lib
from cutmix_jax._src import pairing
from cutmix_jax._src import params as params_lib
from cutmix_jax._src import validation

from cutmix_jax._src.typing import ArrayLike


def _smooth(targets: jax.Array, label_smoothing) -> jax.Array:
  """`one_hot`'s smoothing step: none for a static 0, else `smooth_labels`."""
  if validation.is_static_number(label_smoothing) and not label_smoothing:
    return targets
  return labels_lib.smooth_labels(targets, label_smoothing)


@jax.tree_util.register_pytree_node_class
class KWayLabels:
  """Mixed labels as k (class, weight) pairs per sample.

  The target they stand for is `t = (1 - s) * sum_j weights[j] *
  one_hot(classes[j]) + s / num_classes` with `s = label_smoothing`;
  `to_dense` builds it. `mix_labels_kway` makes them from a draw with
  `k = 2`: column 0 is each sample's own class with weight `lam`, column 1
  its partner's with weight `1 - lam` (0 for a sample that mixes nothing).
  Repeated classes (a self-pair, a partner of the same class) stay two
  entries; the losses and `to_dense` add them exactly.

  Class ids outside `[0, num_classes)` follow `one_hot`'s rule: the row is
  NaN if the id is in column 0 or has a nonzero weight.

  A pytree: `classes`, `weights` (and a traced `label_smoothing`) are its
  leaves; `num_classes` (and a Python `label_smoothing`) are static.

  Attributes:
    classes: int32 `[..., k]` class ids (any other integer dtype is
      converted, an id that does not fit int32 becoming -1, also invalid).
    weights: float32 `[..., k]`, the weight of each class.
    num_classes: static number of classes `C`.
    label_smoothing: timm's smoothing `s` in [0, 1]: a Python float (static,
      checked when built) or a traced scalar.

  Args:
    classes: integer `[..., k]`.
    weights: float `[..., k]`; default all ones (then `k` is normally 1).
    num_classes: the number of classes.
    label_smoothing: as above.

  >>> y = KWayLabels(jnp.array([[2, 0]]), jnp.array([[0.75, 0.25]]),
  ...                num_classes=3)
  >>> y.to_dense()
  Array([[0.25, 0.  , 0.75]], dtype=float32)
  """

  __slots__ = ("classes", "weights", "num_classes", "label_smoothing")

  def __init__(
      self,
      classes: ArrayLike,
      weights: Optional[ArrayLike] = None,
      *,
      num_classes: int,
      label_smoothing: ArrayLike = 0.0,
  ):
    num_classes = validation.check_size(num_classes, "num_classes")
    classes = jnp.asarray(classes)
    if classes.ndim < 1 or not jnp.issubdtype(classes.dtype, jnp.integer):
      raise TypeError(
          "classes must be integer class ids [..., k], got "
          f"{validation.describe(classes)}.")
    if classes.dtype != jnp.int32:
      valid = (classes >= 0) & (classes < num_classes)
      classes = jnp.where(valid, classes, -1).astype(jnp.int32)
    if weights is None:
      weights = jnp.ones(classes.shape, jnp.float32)
    weights = jnp.asarray(weights)
    if (weights.shape != classes.shape
        or not jnp.issubdtype(weights.dtype, jnp.floating)):
      raise TypeError(
          f"weights must be float with the shape of classes "
          f"{tuple(classes.shape)}, got {validation.describe(weights)}.")
    labels_lib._check_smoothing(label_smoothing)  # pylint: disable=protected-access
    if validation.is_static_number(label_smoothing):
      # Static metadata must hash; a float keeps the value `one_hot` uses.
      label_smoothing = float(label_smoothing)
    self._set(classes, weights.astype(jnp.float32), num_classes,
              label_smoothing)

  def _set(self, classes, weights, num_classes, label_smoothing):
    object.__setattr__(self, "classes", classes)
    object.__setattr__(self, "weights", weights)
    object.__setattr__(self, "num_classes", num_classes)
    object.__setattr__(self, "label_smoothing", label_smoothing)

  def __setattr__(self, name, value):
    raise AttributeError("KWayLabels is immutable.")

  def tree_flatten(self):
    eps = self.label_smoothing
    if validation.is_static_number(eps):
      return (self.classes, self.weights), (self.num_classes, eps)
    return (self.classes, self.weights, eps), (self.num_classes, None)

  @classmethod
  def tree_unflatten(cls, aux, children):
    num_classes, eps = aux
    out = object.__new__(cls)
    # No checks: the leaves may be tracers, placeholders or batched values.
    if eps is None:
      classes, weights, eps = children
    else:
      classes, weights = children
    out._set(classes, weights, num_classes, eps)
    return out

  def __repr__(self) -> str:
    return (f"KWayLabels(classes={self.classes!r}, weights={self.weights!r}, "
            f"num_classes={self.num_classes}, "
            f"label_smoothing={self.label_smoothing!r})")

  @property
  def k(self) -> int:
    """The number of (class, weight) pairs per sample."""
    return self.classes.shape[-1]

  def to_dense(self, dtype: Any = jnp.float32) -> jax.Array:
    """The dense target `[..., num_classes]` these labels stand for.

    For `k = 2` (what `mix_labels_kway` makes) it runs `mix_labels`' own
    arithmetic from `lam = weights[..., 0]`: smoothed one-hot rows `t` (own)
    and `p` (partner), then `where(lam == 1, t, p + lam * (t - p))`. So it
    equals `mix_labels` on the same draw bit for bit when both run alike
    (both op by op, or both under `jit`: XLA may fold a constant smoothing
    differently from op-by-op execution, for `mix_labels` alone too), and
    it reads `weights[..., 1]` as `1 - lam`. Other `k` sum the weighted
    one-hot rows in column order, then smooth.

    Args:
      dtype: the float dtype to compute and return in.

    Returns:
      `[..., num_classes]` of `dtype`.

    >>> from cutmix_jax import mix_labels, sample_mixup
    >>> p = sample_mixup(jax.random.key(0), 4)
    >>> y = jnp.array([0, 1, 2, 3])
    >>> dense = mix_labels(p, y, num_classes=5, label_smoothing=0.1)
    >>> kway = mix_labels_kway(p, y, num_classes=5, label_smoothing=0.1)
    >>> bool((kway.to_dense() == dense).all())
    True
    """
    if not jnp.issubdtype(dtype, jnp.floating):
      raise TypeError(f"dtype must be a float dtype, got {dtype}.")
    c, w, eps = self.classes, self.weights.astype(dtype), self.label_smoothing
    rows = [labels_lib.one_hot(c[..., j], self.num_classes, dtype=dtype)
            for j in range(self.k)]
    if self.k == 2:
      t, p = (_smooth(r, eps) for r in rows)
      lam = w[..., :1]
      return jnp.where(lam == 1, t, p + lam * (t - p))
    # An invalid id outside column 0 counts only with a nonzero weight, as a
    # partner does in the k = 2 form.
    total = rows[0] * w[..., :1]
    for j in range(1, self.k):
      wj = w[..., j:j + 1]
      total = total + jnp.where(wj == 0, jnp.zeros((), dtype), rows[j] * wj)
    return _smooth(total, eps)


def check_integer_labels(labels: jax.Array) -> None:
  """Float targets are dense already: refuse them rather than guess."""
  if labels.ndim != 1 or not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(
        "k-way labels are made from integer class ids [batch], got "
        f"{validation.describe(labels)}; float targets [batch, num_classes] "
        "are dense already: mix them with mix_labels (targets='dense').")


def mix_labels_kway(
    params: params_lib.Draw,
    labels: ArrayLike,
    *,
    num_classes: int,
    label_smoothing: ArrayLike = 0.0,
) -> KWayLabels:
  """Mixes integer labels with any draw, as (class, weight) pairs.

  The k-way twin of `mix_labels`: the same mixed targets, held as each
  sample's own class with weight `lam` and its partner's with `1 - lam`
  (`k = 2` for every draw type; 0 for a Cutout sample, or one left
  unchanged), so nothing of size `[batch, num_classes]` is built.
  `KWayLabels.to_dense` gives `mix_labels`' output bit for bit; the losses
  `softmax_cross_entropy_kway` and `sigmoid_binary_cross_entropy_kway` take
  them directly.

  It is a sibling of `mix_labels` rather than an option of it because it
  returns another type and takes integer labels only: float targets `[batch,
  num_classes]` are already dense, and mixing them stays with `mix_labels`.

  Args:
    params: the draw that was applied to the images: a `MixParams`,
      `MaskParams` or `CuboidParams`. Under `cross_device=True`, partners'
      labels are fetched from other shards as the images are.
    labels: integer class ids `[batch]`.
    num_classes: the number of classes.
    label_smoothing: timm's smoothing `s`, in [0, 1]; may be traced.

  Returns:
    `KWayLabels` with `classes` int32 `[batch, 2]` and `weights` float32
    `[batch, 2]`.

  >>> from cutmix_jax import sample_cutmix
  >>> p = sample_cutmix(jax.random.key(0), 4, 8, 8, mode="elem")
  >>> y = mix_labels_kway(p, jnp.array([3, 1, 4, 1]), num_classes=5)
  >>> y.classes.tolist()
  [[3, 1], [1, 4], [4, 1], [1, 3]]
  >>> bool(jnp.all(y.weights.sum(-1) == 1))
  True
  """
  labels = jnp.asarray(labels)
  if not isinstance(params, params_lib.DRAW_TYPES):
    params_lib.check(params, 0, "labels")
  check_integer_labels(labels)
  num_classes = validation.check_size(num_classes, "num_classes")
  params_lib.check(params, labels.shape[0], "labels")
  labels_lib._check_smoothing(label_smoothing)  # pylint: disable=protected-access
  # The draw's (partner, lam) pairs; partners' labels come by `partner_rows`,
  # since `partner` indexes the global batch under `cross_device`.
  _, lam = params.label_pairs()
  lam = lam.astype(jnp.float32)
  classes = jnp.stack([labels, pairing.partner_rows(params, labels)], axis=1)
  weights = jnp.stack([lam, 1 - lam], axis=1)
  return KWayLabels(classes, weights, num_classes=num_classes,
                    label_smoothing=label_smoothing)
