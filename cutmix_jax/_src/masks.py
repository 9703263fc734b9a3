"""Mask samplers: multi-box masks (French et al.) and FMix (Harris et al.).

A `MaskParams` draw carries a per-sample mask over the pixels instead of a
box, and λ is always recomputed from the mask itself, so label weights equal
pixel fractions exactly, whatever the mask family. `apply_params` and
`mix_labels` apply it.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp

from cutmix_jax._src import beta
from cutmix_jax._src import boxes
from cutmix_jax._src import compiled
from cutmix_jax._src import options
from cutmix_jax._src import plan as plan_lib
from cutmix_jax._src import prng
from cutmix_jax._src import tokens
from cutmix_jax._src import validation
from cutmix_jax._src.params import MaskParams, Mode, Op, Pairing
from cutmix_jax._src.typing import ArrayLike, AxisName, PatchSize


def _finish(plan, active, masks, taken, patch=(1, 1)):
  """Per-sample masks and λ from per-draw masks on the token grid of `patch`
  and their partner-token sums.

  `taken` is exact per draw (an integer count, or FMix's closed form), so λ
  does not depend on the order of a float reduction, which differs between
  layouts.
  """
  masks = tokens.repeat_tokens(masks, patch)
  if patch != (1, 1):
    taken = taken * (patch[0] * patch[1])
  mask = masks[plan.draw]
  mask = jnp.where(active[:, None, None], mask, jnp.zeros((), mask.dtype))
  height, width = mask.shape[1:]
  lam = boxes.kept_fraction(height * width - taken.astype(jnp.float32),
                            height * width)
  return MaskParams(
      lam=jnp.where(active, plan.per_sample(lam), 1.0),
      mask=mask,
      partner=plan.partner,
      op=jnp.where(active, Op.CUTMIX, Op.NONE).astype(jnp.int32),
      pairing=plan.pairing,
      groups=plan.groups,
  )


@compiled.compiled
@options.with_common_args
def sample_multibox(
    key: jax.Array,
    batch_size: int,
    height: int,
    width: int,
    *,
    n_boxes: int = 1,
    area_range: tuple[float, float] = (0.25, 0.5),
    aspect_range: Optional[tuple[float, float]] = None,
    invert: bool = False,
    prob: ArrayLike = 1.0,
    mode: Mode = "batch",
    pairing: Pairing = "flip",
    groups: int = 1,
    patch_size: Optional[PatchSize] = None,
    axis_name: AxisName = None,
    invariant: bool = False,
) -> MaskParams:
  """Draws multi-box CutMix masks with random areas and aspect ratios.

  The box-mask generator of French et al., "Semi-supervised semantic
  segmentation needs strong, varied perturbations" (BMVC 2020,
  arXiv:1906.01916): each of the `n_boxes` boxes draws its own mask
  proportion `p` uniform in `area_range` (per box, as in their code, not one
  `p` per mask) and has area about `p / n_boxes`, with a random aspect
  ratio, placed uniformly inside the image. The partner is pasted into the
  union of the boxes (French et al.'s reference code toggles overlaps
  instead; a union keeps "inside a box" meaning "from the partner"), or
  outside it with `invert=True` (their experiments' setting). λ is the
  exact kept-pixel fraction of the final mask.

  Box sides are `round(sqrt(p / n_boxes * a) * height)` and
  `round(sqrt(p / n_boxes / a) * width)` for an aspect ratio (height over
  width) `a`. By default `a` follows French et al.: the height proportion
  is `p^u` for u uniform in [0, 1] (so `a` spans [p, 1/p]); with
  `aspect_range=(lo, hi)`, `a` is log-uniform in it. A box's top-left corner
  is `round(u * (side - box_side))`, as in their code. With `patch_size`,
  all of this is on the token grid (sides and corners rounded to whole
  tokens), and each token's value covers its patch.

  Args:
    key: a PRNG key.
    batch_size: static batch size.
    height: static image height.
    width: static image width.
    n_boxes: static number of boxes per mask.
    area_range: `(lo, hi)` in [0, 1], the range of each box's proportion
      `p`.
    aspect_range: `(lo, hi)` with `0 < lo <= hi`, or None for French et
      al.'s rule.
    invert: paste the partner outside the boxes instead of inside.
{common_args}

  Returns:
    A `MaskParams` with a bool mask.

  >>> p = sample_multibox(jax.random.key(0), 4, 16, 16, n_boxes=3, mode="elem")
  >>> p.mask.shape, p.mask.dtype
  ((4, 16, 16), dtype('bool'))
  >>> bool(jnp.allclose(p.lam, 1 - p.mask.mean((1, 2))))
  True
  """
  height = validation.check_size(height, "height")
  width = validation.check_size(width, "width")
  patch = tokens.sampler_patch(patch_size, height, width)
  n_boxes = validation.check_size(n_boxes, "n_boxes")
  area_range = validation.check_range(area_range, "area_range", 0.0, 1.0)
  if aspect_range is not None:
    aspect_range = validation.check_range(aspect_range, "aspect_range", 0.0,
                                          float("inf"))
    if aspect_range[0] <= 0:
      raise ValueError(f"aspect_range must be > 0, got {aspect_range!r}.")

  # Per box the area, the aspect and the position's two coordinates, as
  # [4, num_draws, n_boxes].
  plan, active, words = plan_lib.draw(
      key, batch_size, mode=mode, pairing=pairing, groups=groups, prob=prob,
      axis_name=axis_name, invariant=invariant,
      parts={"box": range(4 * n_boxes)})
  u = prng.uniform(words["box"]).reshape(4, n_boxes, -1).transpose(0, 2, 1)
  gh, gw = height // patch[0], width // patch[1]
  draw_boxes = boxes.multibox(u, gh, gw, area_range=area_range,
                              aspect_range=aspect_range)
  masks = boxes.box_mask(draw_boxes, gh, gw).any(1)
  if invert:
    masks = ~masks
  return _finish(plan, active, masks, masks.sum((1, 2), dtype=jnp.int32),
                 patch)


def _fourier_noise(plan, height, width, decay_power):
  """Low-frequency noise `[num_draws, height, width]`, as in FMix's reference.

  A complex Gaussian spectrum scaled by `1 / max(f, 1 / max(h, w))^decay`
  over the frequency magnitude `f`, taken back to pixels by a real inverse
  FFT, so larger `decay_power` gives smoother, blobbier masks. The normals
  are rows of the `NOISE` leaf, column = draw.
  """
  fy = jnp.fft.fftfreq(height)[:, None]
  fx = jnp.fft.rfftfreq(width)[None, :]
  freqs = jnp.sqrt(fx * fx + fy * fy)
  scale = 1.0 / jnp.maximum(freqs, 1.0 / max(height, width)) ** decay_power
  words = prng.bits(prng.fold_in(plan.key, plan_lib.NOISE),
                    range(2 * freqs.size), plan.num_draws,
                    col_offset=plan.col_offset)
  re, im = prng.normal(words).T.reshape((plan.num_draws, 2) + freqs.shape
                                        ).transpose(1, 0, 2, 3)
  spectrum = (scale * re) + 1j * (scale * im)
  return jnp.fft.irfft2(spectrum, s=(height, width)).astype(jnp.float32)


@compiled.compiled
@options.with_common_args
def sample_fmix(
    key: jax.Array,
    batch_size: int,
    height: int,
    width: int,
    *,
    alpha: ArrayLike = 1.0,
    decay_power: float = 3.0,
    max_soft: float = 0.0,
    prob: ArrayLike = 1.0,
    mode: Mode = "batch",
    pairing: Pairing = "flip",
    groups: int = 1,
    patch_size: Optional[PatchSize] = None,
    axis_name: AxisName = None,
    invariant: bool = False,
) -> MaskParams:
  """Draws FMix masks (Harris et al. 2020, arXiv:2002.12047).

  Per draw: λ ~ Beta(α, α) and a low-frequency Fourier noise image; the
  `k = round(λ * height * width)` pixels with the largest noise keep the
  sample's own values (the closest pixel count to λ; the reference draws
  the floor or the ceiling at random), and the rest come from the partner.
  The top-k is exact (a sort, then ranks), so ties cannot change the count.
  `lam` is then recomputed from the mask.

  With `max_soft > 0` the mask edge is a linear ramp over the `2 * s`
  pixels ranked around `k`, `s = int(N * min(max_soft, λ, 1 - λ))` for `N`
  pixels, as in the reference's `binarise_mask`; the mask is then float32
  and applying it blends.

  With `patch_size`, the noise, the top-k and the ramp are on the token
  grid (`k = round(λ * num_tokens)` tokens keep their own values), and each
  token's value covers its patch.

  Args:
    key: a PRNG key.
    batch_size: static batch size.
    height: static image height.
    width: static image width.
    alpha: Beta(α, α) parameter of λ, > 0; may be traced.
    decay_power: static decay of the spectrum with frequency `f`: the
      noise's amplitude falls as `1 / f^decay_power`, its power as
      `1 / f^(2 decay_power)` (the reference's default is 3); larger is
      smoother.
    max_soft: static softening of the mask edge, in [0, 0.5]; 0 (default)
      for a hard, bool mask.
{common_args}

  Returns:
    A `MaskParams`; its mask is bool, or float32 when `max_soft > 0`.

  >>> p = sample_fmix(jax.random.key(0), 4, 8, 8, alpha=1.0, mode="elem")
  >>> bool(jnp.allclose(p.lam, 1 - p.mask.mean((1, 2))))
  True
  """
  height = validation.check_size(height, "height")
  width = validation.check_size(width, "width")
  patch = tokens.sampler_patch(patch_size, height, width)
  validation.check_positive(alpha, "alpha")
  if not validation.is_static_number(decay_power) or float(decay_power) < 0:
    raise ValueError(
        f"decay_power must be a static number >= 0, got {decay_power!r}."
    )
  if not validation.is_static_number(max_soft) or not (
      0.0 <= float(max_soft) <= 0.5
  ):
    raise ValueError(
        f"max_soft must be a static number in [0, 0.5], got {max_soft!r}."
    )
  plan, active, words = plan_lib.draw(
      key, batch_size, mode=mode, pairing=pairing, groups=groups, prob=prob,
      axis_name=axis_name, invariant=invariant,
      parts={"cut_lam": beta.rows_needed(alpha)})
  lam = beta.lam_from_words(words["cut_lam"], alpha,
                            plan.retry_key(plan_lib.RETRY_FIRST),
                            col_offset=plan.col_offset)
  gh, gw = height // patch[0], width // patch[1]
  n = gh * gw
  noise = _fourier_noise(plan, gh, gw, decay_power)
  # rank[p] = the position of pixel p in descending noise order.
  order = jnp.argsort(-noise.reshape(plan.num_draws, n), axis=1)
  positions = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), order.shape)
  rank = jnp.zeros_like(positions).at[
      jnp.arange(plan.num_draws)[:, None], order
  ].set(positions)
  keep = jnp.round(lam * n).astype(jnp.int32)[:, None]
  if float(max_soft) == 0:
    masks = rank >= keep
    taken = n - keep[:, 0]
  else:
    soft = jnp.minimum(jnp.float32(max_soft), jnp.minimum(lam, 1 - lam))
    soft = jnp.floor(n * soft).astype(jnp.int32)[:, None]
    # The reference's linspace(1, 0, 2s) over ranks k - s .. k + s - 1, as
    # the partner's weight 1 - own.
    ramp = (rank - (keep - soft)).astype(jnp.float32) / jnp.maximum(
        2 * soft - 1, 1
    ).astype(jnp.float32)
    masks = jnp.where(
        rank < keep - soft, 0.0, jnp.where(rank >= keep + soft, 1.0, ramp)
    )
    taken = _soft_taken(keep[:, 0], soft[:, 0], n)
  out = _finish(plan, active, masks.reshape(plan.num_draws, gh, gw), taken,
                patch)
  if not validation.is_static_number(alpha):
    # A traced α <= 0 has no λ to draw; let the NaN show, as elsewhere.
    out = dataclasses.replace(
        out, lam=jnp.where(jnp.isnan(lam[plan.draw]), jnp.nan, out.lam)
    )
  return out


def _soft_taken(keep, soft, n):
  """The sum of a soft FMix mask, in closed form: the pixels ranked at or
  after `keep + soft` count 1, and the ramp over ranks `keep - soft + i`
  counts `i / (2 soft - 1)`. Summing the float mask instead rounds in an
  order that depends on the layout."""
  start, stop = jnp.maximum(keep - soft, 0), jnp.minimum(keep + soft, n)
  ramp = jnp.maximum(stop - start, 0)
  first = start - (keep - soft)
  full = n - jnp.clip(keep + soft, 0, n)
  ramp_sum = (ramp * (2 * first + ramp - 1) // 2).astype(jnp.float32) / (
      jnp.maximum(2 * soft - 1, 1).astype(jnp.float32))
  return full.astype(jnp.float32) + ramp_sum
