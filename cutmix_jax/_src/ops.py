"""The convenience ops: sample a draw, apply it to images, mix the labels."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Optional, Union, get_args

import jax
import jax.numpy as jnp

from cutmix_jax._src import apply as apply_lib
from cutmix_jax._src import boxes
from cutmix_jax._src import kway
from cutmix_jax._src import labels as labels_lib
from cutmix_jax._src import params as params_lib
from cutmix_jax._src import prng
from cutmix_jax._src import sampling
from cutmix_jax._src import validation
from cutmix_jax._src.params import Mode, Pairing, Placement, Resize
from cutmix_jax._src.typing import ArrayLike, AxisName, PatchSize

Targets = Literal["dense", "kway"]
TARGETS: tuple[str, ...] = get_args(Targets)


def _prepare(key, images, labels, layout, num_classes, targets="dense"):
  validation.check_key(key)
  validation.check_choice(targets, "targets", TARGETS)
  images = jnp.asarray(images)
  batch, height, width, _ = validation.check_images(images, layout)
  if labels is not None:
    labels = jnp.asarray(labels)
    validation.check_labels(labels, batch, num_classes)
    if targets == "kway":
      kway.check_integer_labels(labels)
  return images, labels, batch, height, width


def cutmix(
    key: jax.Array,
    images: ArrayLike,
    labels: ArrayLike,
    *,
    alpha: ArrayLike = 1.0,
    num_classes: Optional[int] = None,
    label_smoothing: ArrayLike = 0.0,
    prob: ArrayLike = 1.0,
    mode: Mode = "batch",
    pairing: Pairing = "flip",
    groups: int = 1,
    placement: Placement = "official",
    minmax: Optional[tuple[float, float]] = None,
    patch_size: Optional[PatchSize] = None,
    layout: str = "NHWC",
    axis_name: AxisName = None,
    invariant: bool = False,
    cross_device: bool = False,
    targets: Targets = "dense",
) -> tuple[jax.Array, Union[jax.Array, kway.KWayLabels]]:
  """CutMix (Yun et al., ICCV 2019, arXiv:1905.04899) on a batch.

  Each mixed sample takes a box of pixels from its partner; its target becomes
  `lam * y + (1 - lam) * y[partner]`, where `1 - lam` is exactly the fraction
  of pixels pasted. This is `sample_cutmix`, `apply_params` and `mix_labels`
  composed; see `sample_cutmix` for the draw's options.

  Args:
    key: a PRNG key, for example `jax.random.fold_in(root_key, step)`.
    images: `[batch, height, width, channels]` (or as `layout` says), any
      numeric dtype; values are selected, never blended, so dtype and values
      are kept exactly.
    labels: integer ids `[batch]` (needs `num_classes`) or float targets
      `[batch, num_classes]`.
    alpha: Beta(α, α) parameter of λ, > 0; may be traced (a traced α <= 0
      or NaN gives NaN λ, which shows in the loss).
    num_classes: the number of classes, for integer labels.
    label_smoothing: timm's label smoothing in [0, 1], applied before
      mixing. A traced value is not range-checked: outside [0, 1] the
      targets leave [0, 1] (see `mix_labels`).
    prob: chance of mixing (the official `cutmix_prob`), applied once. A
      traced value is not range-checked: at 1 or above every draw mixes, at
      0 or below (or NaN) none does.
    mode: 'batch', 'pair' or 'elem'.
    pairing: 'flip', 'roll' or 'permute'.
    groups: pair only inside this many contiguous blocks of the batch.
    placement: 'official' or 'inside'.
    minmax: timm's `cutmix_minmax` box-size range.
    patch_size: a ViT's `(ph, pw)`: boxes on the patch grid, `lam` the exact
      token fraction (see `sample_cutmix`); None for pixel boxes.
    layout: axes of `images`: 'NHWC', 'NCHW', or e.g. 'NTHWC' for video.
    axis_name: under `shard_map`/`pmap`, fold the axis index into the key.
    invariant: draws that depend on the key and the global sample index only,
      identical on any number of devices (see `sample_cutmix`).
    cross_device: with `axis_name`, pair across shards by one `lax.ppermute`
      (see `sample_cutmix`).
    targets: 'dense' for float targets `[batch, num_classes]` (`mix_labels`),
      or 'kway' for `KWayLabels` (`mix_labels_kway`; integer labels only),
      for the losses that never build a `[batch, num_classes]` target.

  Returns:
    `(images, targets)`: images with the input's shape and dtype, and float
    targets `[batch, num_classes]` (or `KWayLabels`, as `targets` says).

  >>> key = jax.random.key(0)
  >>> images = jnp.zeros((8, 32, 32, 3), jnp.uint8)
  >>> out, targets = cutmix(key, images, jnp.arange(8), num_classes=10)
  >>> out.dtype, targets.shape
  (dtype('uint8'), (8, 10))
  """
  images, labels, batch, height, width = _prepare(
      key, images, labels, layout, num_classes, targets
  )
  params = sampling.sample_cutmix(
      key, batch, height, width, alpha=alpha, prob=prob, mode=mode,
      pairing=pairing, groups=groups, placement=placement, minmax=minmax,
      patch_size=patch_size, axis_name=axis_name, invariant=invariant,
      cross_device=cross_device,
  )
  return _apply(params, images, labels, layout, num_classes, label_smoothing,
                targets)


def mixup(
    key: jax.Array,
    images: ArrayLike,
    labels: ArrayLike,
    *,
    alpha: ArrayLike = 1.0,
    num_classes: Optional[int] = None,
    label_smoothing: ArrayLike = 0.0,
    prob: ArrayLike = 1.0,
    mode: Mode = "batch",
    pairing: Pairing = "flip",
    groups: int = 1,
    layout: str = "NHWC",
    axis_name: AxisName = None,
    invariant: bool = False,
    cross_device: bool = False,
    targets: Targets = "dense",
) -> tuple[jax.Array, Union[jax.Array, kway.KWayLabels]]:
  """MixUp (Zhang et al., ICLR 2018, arXiv:1710.09412) on a batch.

  Each mixed sample becomes `lam * own + (1 - lam) * partner` with
  λ ~ Beta(α, α), and so does its target. Floating images keep their dtype
  (blended in float32); integer images are blended in float32, rounded to
  nearest (ties to even) and cast back. Options are as in `cutmix`.

  Returns:
    `(images, targets)`, with float targets `[batch, num_classes]` (or
    `KWayLabels` with `targets='kway'`).

  >>> images = jnp.stack([jnp.zeros((4, 4, 1)), jnp.ones((4, 4, 1))])
  >>> out, y = mixup(jax.random.key(0), images, jnp.array([0, 1]),
  ...                num_classes=2, alpha=0.4)
  >>> bool(jnp.allclose(out[0, 0, 0, 0], y[0, 1]))  # pixel = partner weight
  True
  """
  images, labels, batch, _, _ = _prepare(
      key, images, labels, layout, num_classes, targets
  )
  if images.dtype == jnp.bool_:
    raise TypeError("images of dtype bool cannot be blended by mixup.")
  params = sampling.sample_mixup(
      key, batch, alpha=alpha, prob=prob, mode=mode, pairing=pairing,
      groups=groups, axis_name=axis_name, invariant=invariant,
      cross_device=cross_device,
  )
  return _apply(params, images, labels, layout, num_classes, label_smoothing,
                targets)


def mix(
    key: jax.Array,
    images: ArrayLike,
    labels: ArrayLike,
    *,
    mixup_alpha: ArrayLike = 0.8,
    cutmix_alpha: ArrayLike = 1.0,
    switch_prob: ArrayLike = 0.5,
    prob: ArrayLike = 1.0,
    mode: Mode = "batch",
    label_smoothing: ArrayLike = 0.0,
    num_classes: Optional[int] = None,
    pairing: Pairing = "flip",
    groups: int = 1,
    placement: Placement = "official",
    cutmix_minmax: Optional[tuple[float, float]] = None,
    patch_size: Optional[PatchSize] = None,
    layout: str = "NHWC",
    axis_name: AxisName = None,
    invariant: bool = False,
    cross_device: bool = False,
    targets: Targets = "dense",
) -> tuple[jax.Array, Union[jax.Array, kway.KWayLabels]]:
  """CutMix or MixUp, switched per batch, pair or sample, as timm's `Mixup`.

  See `sample_mix` for the switch. The defaults (`mixup_alpha=0.8`,
  `cutmix_alpha=1.0`, `switch_prob=0.5`) are the DeiT recipe; timm's
  `label_smoothing=0.1` default is not copied, so pass it explicitly.

  Returns:
    `(images, targets)`, with float targets `[batch, num_classes]` (or
    `KWayLabels` with `targets='kway'`).

  >>> x = jnp.zeros((4, 8, 8, 3))
  >>> out, y = mix(jax.random.key(0), x, jnp.arange(4), num_classes=4,
  ...              mode="elem", label_smoothing=0.1)
  >>> bool(jnp.allclose(y.sum(-1), 1.0))
  True
  """
  images, labels, batch, height, width = _prepare(
      key, images, labels, layout, num_classes, targets
  )
  params = sampling.sample_mix(
      key, batch, height, width, mixup_alpha=mixup_alpha,
      cutmix_alpha=cutmix_alpha, switch_prob=switch_prob, prob=prob,
      mode=mode, pairing=pairing, groups=groups, placement=placement,
      cutmix_minmax=cutmix_minmax, patch_size=patch_size,
      axis_name=axis_name, invariant=invariant, cross_device=cross_device,
  )
  return _apply(params, images, labels, layout, num_classes, label_smoothing,
                targets)


def cutout(
    key: jax.Array,
    images: ArrayLike,
    *,
    size: Union[int, tuple[int, int], None] = None,
    fill_value: ArrayLike = 0,
    prob: ArrayLike = 1.0,
    mode: Mode = "elem",
    patch_size: Optional[PatchSize] = None,
    layout: str = "NHWC",
    axis_name: AxisName = None,
    invariant: bool = False,
) -> jax.Array:
  """Cutout (DeVries & Taylor 2017, arXiv:1708.04552): blank a box.

  The regional-dropout baseline the CutMix paper compares against. Labels are
  unchanged, so only images are returned. See `sample_cutout`.

  Args:
    key: a PRNG key.
    images: `[batch, height, width, channels]` (or as `layout` says).
    size: box side, an int or `(height, width)`; default half of each side.
    fill_value: the fill, a scalar or per-channel `[channels]` for 'NHWC'.
    prob: chance of cutting, per sample by default; a traced value is not
      range-checked (1 or above: every box cut; 0 or below, or NaN: none).
    mode: 'elem' (default) or 'batch'.
    patch_size: a ViT's `(ph, pw)`: boxes of whole patches, `size` a
      multiple of the patch (see `sample_cutout`); None for pixel boxes.
    layout: axes of `images`.
    axis_name: under `shard_map`/`pmap`, fold the axis index into the key.
    invariant: boxes that depend on the key and the global sample index only.

  Returns:
    Images with the input's shape and dtype.

  >>> out = cutout(jax.random.key(0), jnp.ones((2, 8, 8, 1)), size=4)
  >>> 0 < int((out == 0).sum()) <= 2 * 16
  True
  """
  images, _, batch, height, width = _prepare(key, images, None, layout, None)
  params = sampling.sample_cutout(
      key, batch, height, width, size=size, prob=prob, mode=mode,
      patch_size=patch_size, axis_name=axis_name, invariant=invariant,
  )
  return apply_lib.apply_params(
      params, images, layout=layout, fill_value=fill_value
  )


def resizemix(
    key: jax.Array,
    images: ArrayLike,
    labels: ArrayLike,
    *,
    scale: tuple[float, float] = (0.1, 0.8),
    resize: Resize = "linear",
    num_classes: Optional[int] = None,
    label_smoothing: ArrayLike = 0.0,
    prob: ArrayLike = 1.0,
    mode: Mode = "batch",
    pairing: Pairing = "flip",
    groups: int = 1,
    patch_size: Optional[PatchSize] = None,
    layout: str = "NHWC",
    axis_name: AxisName = None,
    invariant: bool = False,
    cross_device: bool = False,
    targets: Targets = "dense",
) -> tuple[jax.Array, Union[jax.Array, kway.KWayLabels]]:
  """ResizeMix (Qin et al. 2020, arXiv:2012.11101) on a batch.

  Each mixed sample gets its whole partner, resized, pasted into a box whose
  side is a fraction tau ~ Uniform(`scale`) of the image's; its target is
  `lam * y + (1 - lam) * y[partner]` with `1 - lam` the box's exact pixel
  fraction. See `sample_resizemix`; `resize` is as in `apply_params`. Other
  options are as in `cutmix`.

  Returns:
    `(images, targets)`, with float targets `[batch, num_classes]` (or
    `KWayLabels` with `targets='kway'`).

  >>> out, y = resizemix(jax.random.key(0), jnp.zeros((4, 32, 32, 3)),
  ...                    jnp.arange(4), num_classes=4)
  >>> out.shape, bool(jnp.allclose(y.sum(-1), 1.0))
  ((4, 32, 32, 3), True)
  """
  images, labels, batch, height, width = _prepare(
      key, images, labels, layout, num_classes, targets
  )
  params = sampling.sample_resizemix(
      key, batch, height, width, scale=scale, prob=prob, mode=mode,
      pairing=pairing, groups=groups, patch_size=patch_size,
      axis_name=axis_name,
      invariant=invariant, cross_device=cross_device,
  )
  return _apply(params, images, labels, layout, num_classes, label_smoothing,
                targets, resize=resize)


def switch(
    key: jax.Array,
    images: ArrayLike,
    labels: ArrayLike,
    *,
    probs: Mapping[str, ArrayLike],
    cutmix_alpha: ArrayLike = 1.0,
    mixup_alpha: ArrayLike = 0.8,
    cutout_size: Union[int, tuple[int, int], None] = None,
    resize_scale: tuple[float, float] = (0.1, 0.8),
    fill_value: ArrayLike = 0,
    resize: Resize = "linear",
    num_classes: Optional[int] = None,
    label_smoothing: ArrayLike = 0.0,
    prob: ArrayLike = 1.0,
    mode: Mode = "batch",
    pairing: Pairing = "flip",
    groups: int = 1,
    placement: Placement = "official",
    cutmix_minmax: Optional[tuple[float, float]] = None,
    patch_size: Optional[PatchSize] = None,
    layout: str = "NHWC",
    axis_name: AxisName = None,
    invariant: bool = False,
    cross_device: bool = False,
    targets: Targets = "dense",
) -> tuple[jax.Array, Union[jax.Array, kway.KWayLabels]]:
  """A per-batch, per-pair or per-sample switch among CutMix, MixUp, Cutout
  and ResizeMix, with user-given probabilities.

  `prob` decides once whether a draw mixes; `probs` then picks the op (see
  `sample_switch`). Cutout samples keep their labels (`lam` = 1). Options are
  as in `cutmix`, `cutout` and `resizemix`.

  Returns:
    `(images, targets)`, with float targets `[batch, num_classes]` (or
    `KWayLabels` with `targets='kway'`).

  >>> out, y = switch(jax.random.key(0), jnp.zeros((8, 32, 32, 3)),
  ...                 jnp.arange(8), num_classes=8, mode="elem", prob=0.9,
  ...                 probs={"cutmix": 0.4, "mixup": 0.4, "cutout": 0.2})
  >>> out.shape, bool(jnp.allclose(y.sum(-1), 1.0))
  ((8, 32, 32, 3), True)
  """
  images, labels, batch, height, width = _prepare(
      key, images, labels, layout, num_classes, targets
  )
  params = sampling.sample_switch(
      key, batch, height, width, probs=probs, cutmix_alpha=cutmix_alpha,
      mixup_alpha=mixup_alpha, cutout_size=cutout_size,
      resize_scale=resize_scale, prob=prob, mode=mode, pairing=pairing,
      groups=groups, placement=placement, cutmix_minmax=cutmix_minmax,
      patch_size=patch_size, axis_name=axis_name, invariant=invariant,
      cross_device=cross_device,
  )
  return _apply(params, images, labels, layout, num_classes, label_smoothing,
                targets, fill_value=fill_value, resize=resize)


def cutmix_pair(
    key: jax.Array,
    image_a: ArrayLike,
    image_b: ArrayLike,
    *,
    alpha: ArrayLike = 1.0,
    placement: Placement = "official",
    layout: str = "HWC",
) -> tuple[jax.Array, jax.Array]:
  """The textbook two-image `CutMix(img1, img2)`; `vmap` it for batches.

  Pastes a box of `image_b` into `image_a`.

  Args:
    key: a PRNG key.
    image_a: the image that keeps its pixels outside the box, `[height,
      width, channels]` (or as `layout` says).
    image_b: the image the box is taken from; same shape and dtype.
    alpha: Beta(α, α) parameter of λ.
    placement: 'official' or 'inside', as in `sample_cutmix`.
    layout: axes of one image: 'HWC', 'CHW', 'HW', or e.g. 'THWC'.

  Returns:
    `(image, lam)`: the mixed image and the weight of `image_a`'s label, the
    exact fraction of its pixels that were kept.

  >>> a, b = jnp.zeros((32, 48, 3)), jnp.ones((32, 48, 3))
  >>> image, lam = cutmix_pair(jax.random.key(0), a, b)
  >>> bool(jnp.isclose(lam, 1 - image[..., 0].mean()))
  True
  """
  validation.check_key(key)
  image_a = jnp.asarray(image_a)
  image_b = jnp.asarray(image_b)
  if not isinstance(layout, str):
    raise ValueError(f"layout must be a string such as 'HWC', got {layout!r}.")
  _, height, width, h_axis = validation.check_images(
      image_a[None], "N" + layout, "image_a"
  )
  if image_b.shape != image_a.shape or image_b.dtype != image_a.dtype:
    raise ValueError(
        f"image_b ({validation.describe(image_b)}) must match image_a "
        f"({validation.describe(image_a)})."
    )
  validation.check_positive(alpha, "alpha")
  validation.check_choice(placement, "placement", params_lib.PLACEMENTS)
  # Two nodes, so sample_lam's and sample_box's words are distinct.
  k_lam, k_box = prng.fold_in(key, 0), prng.fold_in(key, 1)
  lam = sampling.sample_lam(k_lam, alpha)
  box = sampling.sample_box(k_box, lam, height, width, placement=placement)
  mask = boxes.box_mask(box, height, width)
  mask = mask.reshape(
      (1,) * (h_axis - 1) + (height, width) + (1,) * (image_a.ndim - h_axis - 1)
  )
  lam_used = boxes.lam_from_box(box, height, width)
  if not validation.is_static_number(alpha):
    lam_used = jnp.where(jnp.isnan(lam), jnp.nan, lam_used)
  return jnp.where(mask, image_b, image_a), lam_used


def _apply(params, images, labels, layout, num_classes, label_smoothing,
           targets, **apply_options):
  mixed = apply_lib.apply_params(params, images, layout=layout,
                                 **apply_options)
  mix = kway.mix_labels_kway if targets == "kway" else labels_lib.mix_labels
  return mixed, mix(params, labels, num_classes=num_classes,
                    label_smoothing=label_smoothing)
