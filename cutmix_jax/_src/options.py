"""The options every sampler shares: their checks and their documentation.

Every sampler takes `mode`, `pairing`, `groups`, `prob` and, where it
supports them, `axis_name`, `invariant` and `cross_device`; `check_common`
validates them alike and `with_common_args` writes their entries into each
sampler's docstring from one text.
"""

from __future__ import annotations

import inspect

from cutmix_jax._src import params as params_lib
from cutmix_jax._src import validation


def check_common(key, batch_size, mode, pairing, groups, prob,
                 invariant=False, cross_device=False, axis_name=None):
  """Validates the options every sampler shares; returns (batch, groups)."""
  validation.check_key(key)
  batch_size = validation.check_size(batch_size, "batch_size")
  validation.check_choice(mode, "mode", params_lib.MODES)
  validation.check_choice(pairing, "pairing", params_lib.PAIRINGS)
  groups = validation.check_size(groups, "groups")
  if batch_size % groups:
    raise ValueError(
        f"batch_size {batch_size} is not divisible by groups={groups}; pairing"
        " stays inside equal blocks of the batch.")
  if mode == "pair" and pairing == "roll":
    raise ValueError(
        "mode='pair' needs a symmetric pairing ('flip' or 'permute'); "
        "'roll' pairs i with i - 1, which is not mutual.")
  validation.check_probability(prob, "prob")
  if invariant:
    if mode == "batch":
      raise ValueError(
          "invariant=True needs mode='elem' or 'pair': one draw per batch "
          "depends on how the batch is split over devices.")
    if batch_size % 2:
      raise ValueError(
          f"invariant=True pairs samples (2k, 2k + 1), so the (per-shard) "
          f"batch size must be even, got {batch_size}.")
  if cross_device:
    if axis_name is None:
      raise ValueError(
          "cross_device=True needs axis_name (inside shard_map or pmap); under "
          "plain jit over a sharded batch, groups=1 already pairs across "
          "devices.")
    if invariant:
      raise ValueError(
          "cross_device=True and invariant=True exclude each other: invariant "
          "draws pair samples (2k, 2k + 1) inside a shard.")
    if pairing not in ("flip", "roll"):
      raise ValueError(
          f"cross_device=True supports pairing 'flip' or 'roll' (one "
          f"lax.ppermute); got pairing={pairing!r}.")
    if groups != 1:
      raise ValueError(
          f"cross_device=True pairs over the whole global batch; groups must "
          f"be 1, got {groups}.")
  return batch_size, groups


# The options every sampler shares, documented once; `with_common_args`
# puts the entries of a sampler's own parameters into its docstring.
_COMMON_ARGS = {
    "prob": """\
prob: chance of mixing at all (the official `cutmix_prob`), applied once:
  per batch in 'batch' mode, per pair in 'pair' mode, per sample in
  'elem' mode. May be traced; a traced value is not range-checked: at 1
  or above every draw mixes, at 0 or below (or NaN) none does.""",
    "mode": """\
mode: 'batch' (one draw for the whole batch, as in the paper), 'pair'
  (a sample and its partner share one draw, so they swap the same region)
  or 'elem' (an independent draw per sample). Per-sample modes cost the
  same as 'batch': the pixel work is one fused select either way.""",
    "pairing": """\
pairing: 'flip' pairs sample i with batch - 1 - i (a reversal, the cheapest
  to apply; an odd batch's middle sample is paired with itself and so is
  left unchanged), 'roll' pairs i with i - 1 (torchvision's rule) and
  'permute' uses a random permutation as the official code does
  (self-pairs can occur; a self-paired sample is unchanged).""",
    "groups": """\
groups: split the batch into this many equal contiguous blocks and pair
  only inside each. With the batch sharded over `groups` devices no image
  crosses a device, under plain `jax.jit` too.""",
    "patch_size": """\
patch_size: None (boxes in pixels), or a ViT's patch size `(ph, pw)` (or
  an int): every box edge then lies on the patch grid. The draw is made by
  the same rule on the grid of `(height // ph, width // pw)` tokens and
  scaled to pixels, so its rounding is at token resolution and `lam` is
  the exact token fraction (which equals the pixel fraction). `height`
  and `width` must be multiples of the patch. `(1, 1)` is bit-identical
  to None.""",
    "axis_name": """\
axis_name: inside `shard_map` or `pmap`, the mapped axis (or axes) whose
  index is folded into the key, so that a replicated key gives each shard
  its own draw. Pairing stays inside the shard.""",
    "invariant": """\
invariant: make every draw a function of the key and the global sample
  index only, so the same global batch gets bit-identical draws on 1, 2,
  4 or 8 devices, under `jit`, `shard_map` or `pmap` (with `axis_name`,
  shards are taken as consecutive blocks of the global batch). Sample
  (or pair) i reads column i of the key's words, and pairs are the global
  samples (2k, 2k + 1), so the per-shard batch must be even and mode
  'elem' or 'pair'; `pairing` and `groups` are then not used.""",
    "cross_device": """\
cross_device: with `axis_name`, pair over the global batch instead of
  inside each shard: the draw equals a single-device draw for the global
  batch (shards taken as consecutive blocks), and partners are fetched
  with one `lax.ppermute`: 'flip' moves every shard's whole batch (shard
  i swaps with shard n - 1 - i), 'roll' moves one sample per shard. So a
  per-device batch of 1 or 2 still gets real mixing.""",
}


def with_common_args(fn):
  """Fills `{common_args}` in a sampler's docstring with the shared options
  it takes, in the order of its signature."""
  names = [n for n in inspect.signature(fn).parameters if n in _COMMON_ARGS]
  text = "\n".join(
      "    " + line for n in names for line in _COMMON_ARGS[n].splitlines())
  fn.__doc__ = fn.__doc__.replace("{common_args}\n", text + "\n")
  return fn
