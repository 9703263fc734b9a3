"""`patch_size`: boxes and masks on a ViT's patch grid.

Every rule runs on the token grid and is scaled to pixels: box edges lie on
the grid, λ is the exact token fraction, and `(1, 1)` is the pixel draw bit
for bit. The box-size law is tested at token resolution against a NumPy
transcription of the official `rand_bbox`, as `test_boxes.py` tests it in
pixels.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import cutmix_jax as cj
from cutmix_jax import Op

from test_boxes import assert_same_box_law, official_boxes

H, W = 12, 16
PATCH = (3, 4)
B = 16
SWITCH = {"cutmix": 1.0, "mixup": 1.0, "cutout": 1.0, "resizemix": 1.0}

SAMPLERS = {
    "cutmix": lambda k, **kw: cj.sample_cutmix(k, B, H, W, **kw),
    "cutmix_minmax": lambda k, **kw: cj.sample_cutmix(k, B, H, W,
                                                      minmax=(0.2, 0.8), **kw),
    "mix": lambda k, **kw: cj.sample_mix(k, B, H, W, **kw),
    "cutout": lambda k, **kw: cj.sample_cutout(k, B, H, W, size=(6, 8), **kw),
    "resizemix": lambda k, **kw: cj.sample_resizemix(k, B, H, W, **kw),
    "switch": lambda k, **kw: cj.sample_switch(k, B, H, W, probs=SWITCH,
                                               cutout_size=(6, 8), **kw),
    "multibox": lambda k, **kw: cj.sample_multibox(k, B, H, W, n_boxes=3,
                                                   **kw),
    "fmix": lambda k, **kw: cj.sample_fmix(k, B, H, W, **kw),
    "fmix_soft": lambda k, **kw: cj.sample_fmix(k, B, H, W, max_soft=0.2,
                                                **kw),
}


@functools.lru_cache(maxsize=None)
def _draw(name, patch_size, seed=0, mode="elem"):
  return jax.jit(lambda k: SAMPLERS[name](k, mode=mode, prob=0.9,
                                          patch_size=patch_size))(
                                              jax.random.key(seed))


@pytest.mark.quick_every(3)
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_unit_patches_draw_what_none_draws(name):
  pixels, unit = _draw(name, None), _draw(name, (1, 1))
  assert type(pixels) is type(unit)
  for a, b in zip(jax.tree.leaves(pixels), jax.tree.leaves(unit)):
    np.testing.assert_array_equal(a, b)
  assert jax.tree.structure(pixels) == jax.tree.structure(unit)


def _pixel_field(params):
  """What each pixel takes from elsewhere, `[batch, H, W]`, by the applier's
  own region (`field` at stride 1)."""
  return np.asarray(params.field(H, W), np.float64)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_regions_tile_patches_and_lam_is_the_token_fraction(name):
  params = _draw(name, PATCH)
  ph, pw = PATCH
  field = _pixel_field(params)
  tokens = field[:, ::ph, ::pw]
  # Every patch is uniform: its top-left pixel speaks for all of it.
  np.testing.assert_array_equal(
      field, np.repeat(np.repeat(tokens, ph, 1), pw, 2))
  token_mask = np.asarray(cj.token_mask(params, patch_size=PATCH))
  np.testing.assert_array_equal(token_mask, tokens.reshape(B, -1))
  if isinstance(params, cj.MixParams):
    box = np.asarray(params.box)
    assert (box[:, [0, 2]] % ph == 0).all() and (box[:, [1, 3]] % pw == 0).all()
  # λ is the token fraction kept, exactly as the samplers compute it.
  op = np.asarray(params.op)
  region = np.isin(op, [Op.CUTMIX, Op.RESIZEMIX])
  taken = tokens.reshape(B, -1).sum(1)
  num_tokens = (H // ph) * (W // pw)
  np.testing.assert_array_equal(
      np.asarray(params.lam)[region],
      np.float32(num_tokens - taken[region]) * np.float32(1 / num_tokens))
  assert region.any() or (name == "cutout" and field.any())
  if name.startswith("fmix"):
    # FMix keeps round(λ * tokens) whole tokens: an integer token count.
    kept = np.asarray(params.lam)[region] * num_tokens
    np.testing.assert_allclose(kept, np.round(kept), atol=1e-4)


def test_ops_take_patch_size():
  images = jnp.arange(B * H * W, dtype=jnp.float32).reshape(B, H, W, 1)
  labels = jnp.arange(B) % 5
  key = jax.random.key(1)
  kwargs = dict(probs=SWITCH, cutout_size=(6, 8), mode="elem",
                patch_size=PATCH)
  out, targets = jax.jit(lambda k, x, y: cj.switch(k, x, y, num_classes=5,
                                                   **kwargs))(
                                                       key, images, labels)
  params = jax.jit(lambda k: cj.sample_switch(k, B, H, W, **kwargs))(key)
  np.testing.assert_array_equal(out, jax.jit(cj.apply_params)(params, images))
  np.testing.assert_array_equal(
      targets, cj.mix_labels(params, labels, num_classes=5))
  # Every other op passes it on to its sampler: a patch that does not tile
  # the images is refused.
  for op in (cj.cutmix, cj.mix, cj.resizemix):
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
      op(key, images, labels, num_classes=5, patch_size=5)
  with pytest.raises(ValueError, match="not a multiple of patch_size"):
    cj.cutout(key, images, patch_size=5)


def test_box_size_law_at_token_resolution_is_the_official_rule():
  # The official rand_bbox on the 6 x 5 token grid of 24 x 40 pixels in
  # 4 x 8 patches, scaled to pixels.
  n, height, width, patch = 20000, 24, 40, (4, 8)
  params = jax.jit(lambda k: cj.sample_cutmix(
      k, n, height, width, mode="elem", pairing="permute",
      patch_size=patch))(jax.random.key(0))
  mixed = np.asarray(params.op) == Op.CUTMIX
  ours = np.asarray(params.box)[mixed]
  ref = official_boxes(np.random.default_rng(0), n, 6, 5) * np.array(
      [4, 8, 4, 8])
  assert_same_box_law(ours, ref)
  # The power to tell the token law from the pixel law: the official box
  # in pixels, whose sides are floor(24 * sqrt(1 - λ)), not multiples of 4.
  pixels = official_boxes(np.random.default_rng(1), n, height, width)
  assert stats.ks_2samp(cj.box_area(ours),
                        cj.box_area(pixels)).pvalue < 1e-6


def test_cutout_size_is_in_pixels_on_whole_patches():
  params = jax.jit(lambda k: cj.sample_cutout(
      k, 4000, H, W, size=(6, 8), patch_size=PATCH))(jax.random.key(2))
  box = np.asarray(params.box)
  sides = box[:, 2:] - box[:, :2]
  # Unclipped boxes are exactly 6 x 8 pixels: 2 x 2 tokens.
  assert {tuple(s) for s in sides} >= {(6, 8)}
  assert (sides[:, 0] <= 6).all() and (sides[:, 1] <= 8).all()
  assert (box[:, [0, 2]] % 3 == 0).all() and (box[:, [1, 3]] % 4 == 0).all()
  # The default is half of each side, in whole tokens: 2 x 2 of 4 x 4.
  default = cj.sample_cutout(jax.random.key(3), 64, H, W, patch_size=PATCH)
  assert (np.asarray(default.box[:, 2:] - default.box[:, :2]).max(0)
          == [6, 8]).all()


@pytest.mark.parametrize("call,message", [
    (lambda: cj.sample_cutmix(jax.random.key(0), 2, 12, 16, patch_size=5),
     r"image size \(12, 16\) is not a multiple of patch_size \(5, 5\)"),
    (lambda: cj.sample_fmix(jax.random.key(0), 2, 12, 15, patch_size=(3, 4)),
     r"image size \(12, 15\) is not a multiple of patch_size \(3, 4\)"),
    (lambda: cj.sample_cutout(jax.random.key(0), 2, 12, 16, size=5,
                              patch_size=(3, 4)),
     r"size \(5, 5\) is in pixels and must be a multiple of patch_size "
     r"\(3, 4\)"),
    (lambda: cj.sample_switch(jax.random.key(0), 2, 12, 16,
                              probs={"cutout": 1.0}, cutout_size=(3, 3),
                              patch_size=(3, 4)),
     r"cutout_size \(3, 3\) is in pixels"),
    (lambda: cj.sample_mix(jax.random.key(0), 2, 12, 16, patch_size=(0, 4)),
     "patch_size must be a static int or a pair"),
    (lambda: cj.cutmix(jax.random.key(0), jnp.zeros((2, 10, 16, 3)),
                       jnp.arange(2), num_classes=2, patch_size=4),
     r"image size \(10, 16\) is not a multiple"),
])
def test_bad_patch_sizes_are_clear_errors(call, message):
  with pytest.raises(ValueError, match=message):
    call()
