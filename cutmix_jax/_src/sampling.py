"""The public samplers of box and blend draws (`MixParams`).

Every sampler validates its options, describes what it draws as a `_Recipe`
and calls `_sample`, which pairs the samples (`pairing`), reads the draw's
words at fixed rows (`plan.ROWS`) with `plan.read_words`, turns them into λ (`beta`) and boxes
(`boxes`) and switches between ops. All of it works on per-sample vectors (a
few hundred numbers), never on pixels, so it is cheap next to the pixel work
in `apply.py`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Optional, Sequence, Union

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from cutmix_jax._src import beta
from cutmix_jax._src import boxes
from cutmix_jax._src import compiled
from cutmix_jax._src import options
from cutmix_jax._src import plan as plan_lib
from cutmix_jax._src import params as params_lib
from cutmix_jax._src import prng
from cutmix_jax._src import tokens
from cutmix_jax._src import validation
from cutmix_jax._src.params import Mode, MixParams, Op, Pairing, Placement
from cutmix_jax._src.typing import ArrayLike, AxisName, PatchSize


# The ops each sampler can draw.
_METHOD_OPS = {
    "cutmix": (Op.CUTMIX,),
    "mixup": (Op.MIXUP,),
    "mix": (Op.CUTMIX, Op.MIXUP),
    "cutout": (Op.CUTOUT,),
    "resizemix": (Op.RESIZEMIX,),
}
SWITCH_OPS = ("cutmix", "mixup", "cutout", "resizemix")


def _drawable(alpha):
  """A static α of 0 switches its branch off: draw with α = 1, never used."""
  if validation.is_static_number(alpha) and float(alpha) == 0:
    return 1.0
  return alpha


def _check_alpha_or_off(alpha, name):
  validation.check_positive(alpha, name, allow_zero=True)


def _check_cutout_size(size, height, width, name, patch=(1, 1)):
  """`(height, width)` of Cutout's box, in tokens of `patch` (pixels for
  `(1, 1)`); by default half of each side (in whole tokens)."""
  ph, pw = patch
  if size is None:
    return max(height // ph // 2, 1), max(width // pw // 2, 1)
  if isinstance(size, (int, np.integer)):
    size = (size, size)
  if not (
      isinstance(size, (tuple, list))
      and len(size) == 2
      and all(isinstance(s, (int, np.integer)) and s >= 0 for s in size)
  ):
    raise ValueError(
        f"{name} must be an int or a (height, width) pair of ints >= 0, got "
        f"{size!r}."
    )
  if size[0] % ph or size[1] % pw:
    raise ValueError(
        f"{name} {tuple(size)} is in pixels and must be a multiple of "
        f"patch_size {patch}, so that the box covers whole patches.")
  return int(size[0]) // ph, int(size[1]) // pw


def _choose(bits, probs):
  """Index i with probability probs[i] / sum(probs), from uint32 bits.

  Thresholds are normalised cumulative sums, so a zero-probability op is
  never chosen, the last one included (its threshold is exactly 1).
  """
  cum = jnp.cumsum(jnp.stack([jnp.asarray(p, jnp.float32) for p in probs]))
  thresholds = cum[:-1] / cum[-1]
  u = prng.uniform(bits)
  return jnp.sum(u[:, None] >= thresholds[None, :], axis=1).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class _Recipe:
  """What a sampler draws: its ops and their settings, already validated.

  Numbers may be Python values or traced scalars. A static α of 0 (an op
  switched off) is kept as given; `_drawable` replaces it for drawing.
  """

  method: str  # the public sampler: 'cutmix', 'mixup', 'mix', 'cutout', ...
  prob: ArrayLike = 1.0
  cutmix_alpha: Optional[ArrayLike] = None
  mixup_alpha: Optional[ArrayLike] = None
  switch_prob: Optional[ArrayLike] = None  # 'mix': the chance of CutMix
  op_probs: Optional[Mapping[str, ArrayLike]] = None  # 'switch': op weights
  placement: Placement = "official"
  cutmix_minmax: Optional[tuple[float, float]] = None
  cutout_size: Optional[tuple[int, int]] = None  # in tokens of `patch`
  resize_scale: Optional[tuple[float, float]] = None
  patch: tuple[int, int] = (1, 1)  # boxes on this grid; (1, 1): pixels

  @property
  def ops(self) -> tuple[Op, ...]:
    if self.op_probs:
      return tuple(Op[name.upper()] for name in self.op_probs)
    return _METHOD_OPS[self.method]

  @property
  def always(self) -> bool:
    """Every draw applies: prob is a static 1, so no 'apply' word is read."""
    return plan_lib.always(self.prob)

  def word_rows(self) -> dict[str, Sequence[int]]:
    """The rows, relative to `plan.ROWS[name]`, that each part of the draw reads.

    A part no op needs reads nothing. Every row sits at a fixed position, so
    it holds the same word whether α or prob is static or traced (a traced α
    reads every row that any of its Beta methods might use).
    """
    ops = self.ops
    cutmix = Op.CUTMIX in ops
    return {
        "apply": () if self.always else (0,),
        "switch": (0,) if len(ops) > 1 else (),
        "box": (range(4) if self.cutmix_minmax is not None else range(2))
               if cutmix else (),
        "cut_lam": beta.rows_needed(_drawable(self.cutmix_alpha))
                   if cutmix and self.cutmix_minmax is None else (),
        "mix_lam": beta.rows_needed(_drawable(self.mixup_alpha))
                   if Op.MIXUP in ops else (),
        "cutout_box": range(2) if Op.CUTOUT in ops else (),
        "resize_box": range(3) if Op.RESIZEMIX in ops else (),
    }


def _cutmix_candidate(recipe, words, plan, height, width):
  """CutMix's (λ, box) per draw: from λ ~ Beta(α, α), or timm's minmax; the
  box drawn on the token grid and returned in pixels."""
  (gh, gw), patch = _grid(recipe, height, width), recipe.patch
  if recipe.cutmix_minmax is not None:
    box = tokens.to_pixels(
        boxes.from_minmax(words["box"], gh, gw, recipe.cutmix_minmax), patch)
    return boxes.lam_from_box(box, height, width), box
  lam_drawn = beta.lam_from_words(
      words["cut_lam"], _drawable(recipe.cutmix_alpha),
      plan.retry_key(plan_lib.RETRY_FIRST), col_offset=plan.col_offset)
  box = tokens.to_pixels(boxes.from_lam(
      lam_drawn, words["box"][0], words["box"][1], gh, gw, recipe.placement),
      patch)
  lam = boxes.lam_from_box(box, height, width)
  if not validation.is_static_number(recipe.cutmix_alpha):
    lam = jnp.where(jnp.isnan(lam_drawn), jnp.nan, lam)  # traced α <= 0
  return lam, box


def _grid(recipe, height, width):
  """The grid the boxes are drawn on: tokens of `recipe.patch`."""
  return height // recipe.patch[0], width // recipe.patch[1]


def _candidates(recipe, words, plan, height, width):
  """Every op's (λ, box) for every draw; the switch then picks one per draw."""
  n = plan.num_draws
  candidates = {}
  for op in recipe.ops:
    if op == Op.CUTMIX:
      candidates[op] = _cutmix_candidate(recipe, words, plan, height, width)
    elif op == Op.MIXUP:
      lam = beta.lam_from_words(
          words["mix_lam"], _drawable(recipe.mixup_alpha),
          plan.retry_key(plan_lib.RETRY_SECOND), col_offset=plan.col_offset)
      candidates[op] = lam, jnp.zeros((n, 4), jnp.int32)
    elif op == Op.CUTOUT:
      box = boxes.cutout(words["cutout_box"], *_grid(recipe, height, width),
                         recipe.cutout_size)
      candidates[op] = (jnp.ones((n,), jnp.float32),
                        tokens.to_pixels(box, recipe.patch))
    else:
      box = tokens.to_pixels(boxes.resize(
          words["resize_box"], *_grid(recipe, height, width),
          recipe.resize_scale), recipe.patch)
      candidates[op] = boxes.lam_from_box(box, height, width), box
  return candidates


def _switch(recipe, switch_words, candidates, num_draws):
  """The (λ, box, op) each draw takes from its op's candidate."""
  ops = recipe.ops
  if recipe.method == "mix":
    choose_cut = prng.uniform(switch_words[0]) < recipe.switch_prob
    # alpha == 0 switches that branch off (as in timm), static or traced.
    choose_cut = jnp.where(jnp.asarray(recipe.mixup_alpha) <= 0, True,
                           choose_cut)
    choose_cut = jnp.where(jnp.asarray(recipe.cutmix_alpha) <= 0, False,
                           choose_cut)
    (cut_lam, cut_box), (mix_lam, _) = (candidates[Op.CUTMIX],
                                        candidates[Op.MIXUP])
    lam = jnp.where(choose_cut, cut_lam, mix_lam)
    box = jnp.where(choose_cut[:, None], cut_box, 0)
    op = jnp.where(choose_cut, Op.CUTMIX, Op.MIXUP).astype(jnp.int32)
    return lam, box, op
  lam, box = candidates[ops[0]]
  op = jnp.full((num_draws,), int(ops[0]), jnp.int32)
  weights = recipe.op_probs
  if len(ops) > 1:
    choice = _choose(switch_words[0], [weights[o.name.lower()] for o in ops])
    for i, o in enumerate(ops[1:], 1):
      lam = jnp.where(choice == i, candidates[o][0], lam)
      box = jnp.where((choice == i)[:, None], candidates[o][1], box)
    op = jnp.asarray(ops, jnp.int32)[choice]
  if weights and not all(validation.is_static_number(p)
                         for p in weights.values()):
    total = sum(jnp.asarray(p, jnp.float32) for p in weights.values())
    lam = jnp.where(total > 0, lam, jnp.nan)  # traced weights, all 0
  return lam, box, op


def _unless(keep, lam, box, op):
  """(λ, box, op) where `keep`, and 'nothing happens' elsewhere."""
  return (jnp.where(keep, lam, 1.0), jnp.where(keep[:, None], box, 0),
          jnp.where(keep, op, Op.NONE).astype(jnp.int32))


def _sample_cross_device(key, batch_size, height, width, recipe, *, axis_name,
                         mode, pairing):
  """A draw for the global batch, as on one device; this shard's rows of it.

  Every shard draws the whole global batch's parameters (a few numbers per
  sample) from the same key and keeps its own rows, so the result equals a
  single-device draw with `groups=1`; `partner_rows` then fetches partners
  from the other shards with one `lax.ppermute`.
  """
  shards = lax.axis_size(axis_name)
  params = _sample(key, batch_size * shards, height, width, recipe, mode=mode,
                   pairing=pairing, groups=1, axis_name=None)
  rows = lax.axis_index(axis_name) * batch_size + jnp.arange(batch_size)
  return dataclasses.replace(
      params,
      lam=params.lam[rows],
      box=params.box[rows],
      partner=params.partner[rows],
      op=params.op[rows],
      exchange_axis=axis_name,
  )


def _sample(key, batch_size, height, width, recipe, *, mode, pairing, groups,
            axis_name, invariant=False, cross_device=False):
  """The draw behind every `sample_*` of `MixParams`, in five steps.

  Pair the samples (`plan.plan`); read the draw's words at fixed rows
  (`plan.ROWS`), so they do not depend on which options are static; turn them
  into each op's (λ, box); switch between the ops per draw; then leave
  unapplied draws, and samples paired with themselves, unchanged.
  """
  if cross_device:
    return _sample_cross_device(key, batch_size, height, width, recipe,
                                axis_name=axis_name, mode=mode,
                                pairing=pairing)
  plan = plan_lib.plan(key, batch_size, mode=mode, pairing=pairing,
                          groups=groups, axis_name=axis_name,
                          invariant=invariant)
  words = plan_lib.read_words(plan, recipe.word_rows())
  candidates = _candidates(recipe, words, plan, height, width)
  lam, box, op = _switch(recipe, words["switch"], candidates, plan.num_draws)
  if not recipe.always:
    lam, box, op = _unless(
        plan_lib.applied(words, recipe.prob, plan.num_draws), lam, box, op)
  lam, box, op = (plan.per_sample(v) for v in (lam, box, op))
  ops, partner = recipe.ops, plan.partner
  if ops != (Op.CUTOUT,):
    # A sample paired with itself is left exactly as it is, and says so
    # (Cutout needs no partner).
    mixed = plan.has_partner
    if Op.CUTOUT in ops:
      mixed = mixed | (op == Op.CUTOUT)
    lam, box, op = _unless(mixed, lam, box, op)
  if invariant and recipe.method == "cutout":
    partner = jnp.arange(batch_size, dtype=jnp.int32)
  return MixParams(
      lam=lam,
      box=box,
      partner=partner,
      op=op,
      height=height,
      width=width,
      pairing=plan.pairing,
      groups=plan.groups,
      ops=tuple(int(o) for o in ops),
  )


@compiled.compiled
def sample_lam(
    key: jax.Array, alpha: ArrayLike, shape: Sequence[int] = ()
) -> jax.Array:
  """Draws λ ~ Beta(α, α) exactly, cheaply enough to do per sample.

  `jax.random.beta` is exact too but draws two Gammas by a per-variate
  rejection loop, ~0.5 ms for 256 variates on a CPU. Symmetric Beta has
  cheaper exact methods: α = 1 is Uniform(0, 1); α > 1/2 uses Ulrich's
  rejection-free polar method; α <= 1/2 uses Jöhnk's method, vectorised.
  All the random words come from one PRNG call.

  Args:
    key: a PRNG key.
    alpha: α > 0, a Python number or a traced scalar. A traced α <= 0 gives NaN
      (there is no Beta(α, α) to draw from), which surfaces in the loss.
    shape: the shape of the draw.

  Returns:
    float32 λ in [0, 1] of the given shape.

  >>> lam = sample_lam(jax.random.key(0), 1.0, (3,))
  >>> lam.shape, bool(((lam >= 0) & (lam <= 1)).all())
  ((3,), True)
  """
  validation.check_key(key)
  validation.check_positive(alpha, "alpha")
  shape = tuple(shape)
  size = math.prod(shape)
  words = prng.bits(prng.fold_in(key, plan_lib.WORDS), beta.rows_needed(alpha),
                    size)
  lam = beta.lam_from_words(words, alpha,
                            prng.fold_in(key, plan_lib.RETRY_FIRST))
  return lam.reshape(shape)


@compiled.compiled
def sample_box(
    key: jax.Array,
    lam: ArrayLike,
    height: int,
    width: int,
    *,
    placement: Placement = "official",
) -> jax.Array:
  """Draws one CutMix box for a given λ, as in the paper's `rand_bbox`.

  The box side is `floor(side * sqrt(1 - lam))`; see `sample_cutmix` for the
  placements. The box may be clipped, so recompute the label weight from it
  with `lam_from_box`.

  Args:
    key: a PRNG key.
    lam: scalar λ in [0, 1].
    height: image height.
    width: image width.
    placement: 'official' (centre uniform, box clipped) or 'inside' (box kept
      whole inside the image).

  Returns:
    int32 `[4]`: `(top, left, bottom, right)`, half-open.

  >>> box = sample_box(jax.random.key(0), 0.75, 32, 48, placement="inside")
  >>> [int(v) for v in box[2:] - box[:2]]  # sides: 32 and 48 times sqrt(0.25)
  [16, 24]
  """
  validation.check_key(key)
  validation.check_choice(placement, "placement", params_lib.PLACEMENTS)
  height = validation.check_size(height, "height")
  width = validation.check_size(width, "width")
  bits = prng.bits(prng.fold_in(key, plan_lib.WORDS), (0, 1), 1)[:, 0]
  return boxes.from_lam(
      jnp.asarray(lam, jnp.float32), bits[0], bits[1], height, width, placement
  )


@compiled.compiled
@options.with_common_args
def sample_cutmix(
    key: jax.Array,
    batch_size: int,
    height: int,
    width: int,
    *,
    alpha: ArrayLike = 1.0,
    prob: ArrayLike = 1.0,
    mode: Mode = "batch",
    pairing: Pairing = "flip",
    groups: int = 1,
    placement: Placement = "official",
    minmax: Optional[tuple[float, float]] = None,
    patch_size: Optional[PatchSize] = None,
    axis_name: AxisName = None,
    invariant: bool = False,
    cross_device: bool = False,
) -> MixParams:
  """Draws CutMix parameters (Yun et al., ICCV 2019, arXiv:1905.04899).

  λ ~ Beta(α, α); the box has sides `floor(height * sqrt(1 - λ))` and
  `floor(width * sqrt(1 - λ))`, and `lam` is recomputed from the box actually
  pasted, so label weights always equal pixel fractions.

  Args:
    key: a PRNG key.
    batch_size: static batch size.
    height: static image height.
    width: static image width.
    alpha: Beta(α, α) parameter, > 0; may be traced.
    placement: 'official' centres the box uniformly over all pixels and clips
      it (the paper's `rand_bbox`); 'inside' keeps the box whole inside the
      image (the common tutorial variant, drawn without rejection).
    minmax: timm's `cutmix_minmax`: if given, α is not used and each box
      side is uniform over the integers `int(lo * side)` to
      `int(hi * side)`, both included; the box lies whole inside the image,
      its top-left corner uniform over every position where it fits (flush
      with the bottom or right edge included). timm's `rand_bbox_minmax`
      draws both with `np.random.randint`, which excludes the upper bounds
      (checked at pytorch-image-models 066e490): there a side of
      `int(hi * side)` and the flush positions never occur. Here both do,
      so `hi` is reachable.
{common_args}

  Returns:
    A `MixParams`.

  >>> p = sample_cutmix(jax.random.key(0), 4, 32, 32, mode="elem")
  >>> p.lam.shape, p.box.shape, p.partner.tolist()
  ((4,), (4, 4), [3, 2, 1, 0])
  """
  batch_size, groups = options.check_common(
      key, batch_size, mode, pairing, groups, prob, invariant,
      cross_device, axis_name)
  height = validation.check_size(height, "height")
  width = validation.check_size(width, "width")
  validation.check_choice(placement, "placement", params_lib.PLACEMENTS)
  if minmax is None:
    validation.check_positive(alpha, "alpha")
  else:
    minmax = validation.check_range(minmax, "minmax", 0.0, 1.0)
  recipe = _Recipe("cutmix", prob=prob, cutmix_alpha=alpha,
                   placement=placement, cutmix_minmax=minmax,
                   patch=tokens.sampler_patch(patch_size, height, width))
  return _sample(key, batch_size, height, width, recipe, mode=mode,
                 pairing=pairing, groups=groups, axis_name=axis_name,
                 invariant=invariant, cross_device=cross_device)


@compiled.compiled
@options.with_common_args
def sample_mixup(
    key: jax.Array,
    batch_size: int,
    *,
    alpha: ArrayLike = 1.0,
    prob: ArrayLike = 1.0,
    mode: Mode = "batch",
    pairing: Pairing = "flip",
    groups: int = 1,
    axis_name: AxisName = None,
    invariant: bool = False,
    cross_device: bool = False,
) -> MixParams:
  """Draws MixUp parameters (Zhang et al., ICLR 2018, arXiv:1710.09412).

  Each mixed sample becomes `lam * own + (1 - lam) * partner` with
  λ ~ Beta(α, α), and so does its label.

  Args:
    key: a PRNG key.
    batch_size: static batch size.
    alpha: Beta(α, α) parameter, > 0; may be traced.
{common_args}

  Returns:
    A `MixParams` with empty boxes; it applies to any
    spatial size.

  >>> p = sample_mixup(jax.random.key(0), 3, alpha=0.2)
  >>> p.partner.tolist(), p.op.tolist()  # the middle sample pairs with itself
  ([2, 1, 0], [1, 0, 1])
  """
  batch_size, groups = options.check_common(
      key, batch_size, mode, pairing, groups, prob, invariant,
      cross_device, axis_name)
  validation.check_positive(alpha, "alpha")
  recipe = _Recipe("mixup", prob=prob, mixup_alpha=alpha)
  return _sample(key, batch_size, None, None, recipe, mode=mode,
                 pairing=pairing, groups=groups, axis_name=axis_name,
                 invariant=invariant, cross_device=cross_device)


@compiled.compiled
@options.with_common_args
def sample_mix(
    key: jax.Array,
    batch_size: int,
    height: int,
    width: int,
    *,
    mixup_alpha: ArrayLike = 0.8,
    cutmix_alpha: ArrayLike = 1.0,
    switch_prob: ArrayLike = 0.5,
    prob: ArrayLike = 1.0,
    mode: Mode = "batch",
    pairing: Pairing = "flip",
    groups: int = 1,
    placement: Placement = "official",
    cutmix_minmax: Optional[tuple[float, float]] = None,
    patch_size: Optional[PatchSize] = None,
    axis_name: AxisName = None,
    invariant: bool = False,
    cross_device: bool = False,
) -> MixParams:
  """Draws the CutMix-or-MixUp switch, as timm's `Mixup` does.

  With probability `prob` a draw mixes; a mixing draw is CutMix with
  probability `switch_prob` and MixUp otherwise. The choice is made per batch,
  per pair or per sample, following `mode`.

  Args:
    key: a PRNG key.
    batch_size: static batch size.
    height: static image height.
    width: static image width.
    mixup_alpha: MixUp's Beta parameter; 0 turns MixUp off. May be traced.
    cutmix_alpha: CutMix's Beta parameter; 0 turns CutMix off. May be traced.
    switch_prob: chance that a mixing draw is CutMix when both are on. May
      be traced; a traced value is not range-checked: at 1 or above every
      mixing draw is CutMix, at 0 or below (or NaN) every one is MixUp.
    placement: CutMix box placement, as in `sample_cutmix`.
    cutmix_minmax: as `minmax` in `sample_cutmix`; turns CutMix on regardless
      of `cutmix_alpha`.
{common_args}

  Returns:
    A `MixParams`.

  >>> p = sample_mix(jax.random.key(1), 8, 32, 32, mode="elem")
  >>> sorted(set(p.op.tolist())) in ([1], [2], [1, 2])
  True
  """
  batch_size, groups = options.check_common(
      key, batch_size, mode, pairing, groups, prob, invariant,
      cross_device, axis_name)
  height = validation.check_size(height, "height")
  width = validation.check_size(width, "width")
  validation.check_choice(placement, "placement", params_lib.PLACEMENTS)
  _check_alpha_or_off(mixup_alpha, "mixup_alpha")
  _check_alpha_or_off(cutmix_alpha, "cutmix_alpha")
  validation.check_probability(switch_prob, "switch_prob")
  if cutmix_minmax is not None:
    cutmix_minmax = validation.check_range(cutmix_minmax, "cutmix_minmax",
                                           0.0, 1.0)
    if validation.is_static_number(cutmix_alpha) and float(cutmix_alpha) == 0:
      cutmix_alpha = 1.0  # minmax turns CutMix on; its α is unused.
  if (
      validation.is_static_number(mixup_alpha)
      and validation.is_static_number(cutmix_alpha)
      and float(mixup_alpha) == 0
      and float(cutmix_alpha) == 0
  ):
    raise ValueError(
        "mixup_alpha and cutmix_alpha are both 0, which turns both off; set at "
        "least one > 0."
    )
  recipe = _Recipe("mix", prob=prob, cutmix_alpha=cutmix_alpha,
                   mixup_alpha=mixup_alpha, switch_prob=switch_prob,
                   placement=placement, cutmix_minmax=cutmix_minmax,
                   patch=tokens.sampler_patch(patch_size, height, width))
  return _sample(key, batch_size, height, width, recipe, mode=mode,
                 pairing=pairing, groups=groups, axis_name=axis_name,
                 invariant=invariant, cross_device=cross_device)


@compiled.compiled
def sample_cutout(
    key: jax.Array,
    batch_size: int,
    height: int,
    width: int,
    *,
    size: Union[int, tuple[int, int], None] = None,
    prob: ArrayLike = 1.0,
    mode: Mode = "elem",
    patch_size: Optional[PatchSize] = None,
    axis_name: AxisName = None,
    invariant: bool = False,
) -> MixParams:
  """Draws Cutout boxes (DeVries & Taylor 2017, arXiv:1708.04552).

  A `size` box is centred uniformly over the image and clipped to it, as in
  the Cutout paper; labels are unchanged (`lam` is 1).

  Exactly: for a centre row `c` uniform over `0 .. height - 1`, the box
  covers rows `c - size // 2` (included) to `c - size // 2 + size`
  (excluded), clipped to the image, and likewise for columns. An odd size
  is centred on pixel `c` (`size // 2` rows on each side); an even one has
  `size // 2` rows above `c` and `size // 2 - 1` below. Unclipped, the box
  is always `size` pixels; the reference code's `c ± size // 2` makes an
  odd box one pixel smaller.

  Args:
    key: a PRNG key.
    batch_size: static batch size.
    height: static image height.
    width: static image width.
    size: box side in pixels, an int or `(height, width)`; default half of
      each image side (16 on CIFAR, the Cutout paper's CIFAR-10 setting).
    prob: chance of cutting, per batch ('batch') or per sample ('elem',
      the default, as in the Cutout paper). A traced value is not
      range-checked: at 1 or above every box is cut, at 0 or below (or NaN)
      none is.
    mode: 'batch' or 'elem' ('pair' is accepted and draws per pair).
    patch_size: as in `sample_cutmix`: the centre is then a token, the box
      covers whole patches, and `size` (in pixels) must be a multiple of
      the patch; the default is half of each side in whole tokens.
    axis_name: as in `sample_cutmix`.
    invariant: as in `sample_cutmix`: each sample's box depends on the key
      and its global index only.

  Returns:
    A `MixParams`.

  >>> p = sample_cutout(jax.random.key(0), 2, 32, 32, size=8)
  >>> p.op.tolist(), p.lam.tolist()
  ([3, 3], [1.0, 1.0])
  """
  if invariant and mode == "batch":
    raise ValueError("invariant=True needs mode='elem' or 'pair'.")
  batch_size, _ = options.check_common(key, batch_size, mode, "flip", 1, prob)
  if invariant and batch_size % 2:
    raise ValueError(
        f"invariant=True needs an even (per-shard) batch, got {batch_size}.")
  height = validation.check_size(height, "height")
  width = validation.check_size(width, "width")
  patch = tokens.sampler_patch(patch_size, height, width)
  recipe = _Recipe("cutout", prob=prob, patch=patch,
                   cutout_size=_check_cutout_size(size, height, width, "size",
                                                  patch))
  return _sample(key, batch_size, height, width, recipe, mode=mode,
                 pairing="flip", groups=1, axis_name=axis_name,
                 invariant=invariant)


@compiled.compiled
@options.with_common_args
def sample_resizemix(
    key: jax.Array,
    batch_size: int,
    height: int,
    width: int,
    *,
    scale: tuple[float, float] = (0.1, 0.8),
    prob: ArrayLike = 1.0,
    mode: Mode = "batch",
    pairing: Pairing = "flip",
    groups: int = 1,
    patch_size: Optional[PatchSize] = None,
    axis_name: AxisName = None,
    invariant: bool = False,
    cross_device: bool = False,
) -> MixParams:
  """Draws ResizeMix boxes (Qin et al. 2020, arXiv:2012.11101).

  The whole partner image, resized to the box, is pasted into it: nothing of
  the partner is cut away, so its label is always present. The box keeps the
  image's aspect ratio, with sides `floor(tau * height)` and
  `floor(tau * width)` for tau ~ Uniform(lo, hi), and is placed uniformly
  where it fits whole. `lam` is the exact fraction of pixels outside it.
  `apply_params` does the resizing (antialiased linear by default), on a
  canvas of fixed size, so the op stays jit-able.

  Args:
    key: a PRNG key.
    batch_size: static batch size.
    height: static image height.
    width: static image width.
    scale: `(lo, hi)`, the range of tau, the box side as a fraction of the
      image side; the paper's default (0.1, 0.8).
{common_args}

  Returns:
    A `MixParams`.

  >>> p = sample_resizemix(jax.random.key(0), 2, 32, 32, scale=(0.5, 0.5))
  >>> (p.box[:, 2:] - p.box[:, :2]).tolist(), p.lam.tolist()
  ([[16, 16], [16, 16]], [0.75, 0.75])
  """
  batch_size, groups = options.check_common(
      key, batch_size, mode, pairing, groups, prob, invariant, cross_device,
      axis_name)
  height = validation.check_size(height, "height")
  width = validation.check_size(width, "width")
  recipe = _Recipe("resizemix", prob=prob,
                   resize_scale=validation.check_range(scale, "scale", 0.0,
                                                       1.0),
                   patch=tokens.sampler_patch(patch_size, height, width))
  return _sample(key, batch_size, height, width, recipe, mode=mode,
                 pairing=pairing, groups=groups, axis_name=axis_name,
                 invariant=invariant, cross_device=cross_device)


@compiled.compiled
@options.with_common_args
def sample_switch(
    key: jax.Array,
    batch_size: int,
    height: int,
    width: int,
    *,
    probs: Mapping[str, ArrayLike],
    cutmix_alpha: ArrayLike = 1.0,
    mixup_alpha: ArrayLike = 0.8,
    cutout_size: Union[int, tuple[int, int], None] = None,
    resize_scale: tuple[float, float] = (0.1, 0.8),
    prob: ArrayLike = 1.0,
    mode: Mode = "batch",
    pairing: Pairing = "flip",
    groups: int = 1,
    placement: Placement = "official",
    cutmix_minmax: Optional[tuple[float, float]] = None,
    patch_size: Optional[PatchSize] = None,
    axis_name: AxisName = None,
    invariant: bool = False,
    cross_device: bool = False,
) -> MixParams:
  """Draws a switch among CutMix, MixUp, Cutout and ResizeMix.

  With probability `prob` a draw mixes (applied once, as everywhere); a
  mixing draw is then op `name` with probability
  `probs[name] / sum(probs.values())`. Per batch, pair or sample, following
  `mode`. Each op's parameters are drawn as by its own sampler. Only the ops
  named in `probs` are compiled into `apply_params`.

  Args:
    key: a PRNG key.
    batch_size: static batch size.
    height: static image height.
    width: static image width.
    probs: relative weights of the ops, a dict with some of the keys
      'cutmix', 'mixup', 'cutout', 'resizemix'; values >= 0, may be traced.
      Traced values are not checked: a negative one changes every op's
      odds, and weights that sum to 0 or less, or hold a NaN, give NaN `lam`
      (which surfaces in the loss).
    cutmix_alpha: CutMix's Beta parameter, > 0; may be traced.
    mixup_alpha: MixUp's Beta parameter, > 0; may be traced.
    cutout_size: Cutout's box side, as `size` in `sample_cutout` (in
      pixels, a multiple of `patch_size`).
    resize_scale: ResizeMix's side range, as `scale` in `sample_resizemix`.
    placement: CutMix box placement, as in `sample_cutmix`.
    cutmix_minmax: as `minmax` in `sample_cutmix`.
{common_args}

  Returns:
    A `MixParams` whose `ops` are the ops named in `probs`.

  >>> p = sample_switch(jax.random.key(0), 8, 32, 32, mode="elem",
  ...                   probs={"cutmix": 0.5, "cutout": 0.25, "resizemix": 0.25})
  >>> set(p.op.tolist()) <= {Op.CUTMIX, Op.CUTOUT, Op.RESIZEMIX}
  True
  """
  batch_size, groups = options.check_common(
      key, batch_size, mode, pairing, groups, prob, invariant, cross_device,
      axis_name)
  height = validation.check_size(height, "height")
  width = validation.check_size(width, "width")
  validation.check_choice(placement, "placement", params_lib.PLACEMENTS)
  if not isinstance(probs, Mapping) or not probs:
    raise ValueError(
        f"probs must be a non-empty dict from op names {SWITCH_OPS} to "
        f"weights, got {probs!r}.")
  unknown = sorted(set(map(str, probs)) - set(SWITCH_OPS))
  if unknown:
    raise ValueError(
        f"probs has unknown ops {unknown}; the ops are {SWITCH_OPS}.")
  for name, weight in probs.items():
    validation.check_positive(weight, f"probs[{name!r}]", allow_zero=True)
  if all(validation.is_static_number(w) for w in probs.values()) and not sum(
      float(w) for w in probs.values()):
    raise ValueError(f"probs are all 0, got {dict(probs)!r}; make one > 0.")
  if "cutmix" in probs and cutmix_minmax is None:
    validation.check_positive(cutmix_alpha, "cutmix_alpha")
  if "mixup" in probs:
    validation.check_positive(mixup_alpha, "mixup_alpha")
  if cutmix_minmax is not None:
    cutmix_minmax = validation.check_range(cutmix_minmax, "cutmix_minmax",
                                           0.0, 1.0)
  patch = tokens.sampler_patch(patch_size, height, width)
  recipe = _Recipe(
      "switch", prob=prob, patch=patch,
      op_probs={name: probs[name] for name in SWITCH_OPS if name in probs},
      cutmix_alpha=cutmix_alpha, mixup_alpha=mixup_alpha,
      placement=placement, cutmix_minmax=cutmix_minmax,
      cutout_size=_check_cutout_size(cutout_size, height, width,
                                     "cutout_size", patch),
      resize_scale=validation.check_range(resize_scale, "resize_scale", 0.0,
                                          1.0))
  return _sample(key, batch_size, height, width, recipe, mode=mode,
                 pairing=pairing, groups=groups, axis_name=axis_name,
                 invariant=invariant, cross_device=cross_device)

