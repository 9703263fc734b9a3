"""Multi-box and FMix masks: λ is the mask fraction and the label weight."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cutmix_jax as cj
from cutmix_jax._src import masks

B, H, W = 6, 10, 12
N = H * W

# Samplers jitted with their sizes and options static: eager dispatch of
# their many small ops costs more than compiling them.
fmix = jax.jit(masks.sample_fmix, static_argnums=(1, 2, 3),
               static_argnames=("mode", "max_soft"))
multibox = jax.jit(
    masks.sample_multibox, static_argnums=(1, 2, 3),
    static_argnames=("mode", "n_boxes", "area_range", "aspect_range",
                     "invert"))


def _ids(dtype):
  """Images whose every pixel holds its sample's id (1-based)."""
  ids = jnp.arange(1, B + 1).reshape(B, 1, 1, 1).astype(dtype)
  return jnp.broadcast_to(ids, (B, H, W, 2))


@functools.lru_cache(maxsize=None)
def _run(family, mode, pairing, dtype, **options):
  sampler = {"multibox": masks.sample_multibox, "fmix": masks.sample_fmix}
  def run(key, x, labels):
    p = sampler[family](key, B, H, W, prob=0.8, mode=mode, pairing=pairing,
                        **options)
    return (p, cj.apply_params(p, x),
            cj.mix_labels(p, labels, num_classes=B))
  return jax.jit(run)


CASES = [
    ("multibox", "elem", "permute", jnp.uint8, ()),
    ("multibox", "pair", "flip", jnp.bfloat16,
     (("n_boxes", 3), ("aspect_range", (0.5, 2.0)), ("invert", True))),
    ("fmix", "elem", "roll", jnp.int32, (("alpha", 0.5),)),
    ("fmix", "batch", "flip", jnp.float32, (("decay_power", 1.5),)),
]


@pytest.mark.parametrize("family,mode,pairing,dtype,options", CASES)
def test_lam_is_mask_fraction_and_label_weight(family, mode, pairing, dtype,
                                                options):
  run = _run(family, mode, pairing, dtype, **dict(options))
  x = _ids(dtype)
  for seed in range(3):
    p, out, targets = run(jax.random.key(seed), x, jnp.arange(B))
    assert out.dtype == dtype and p.mask.dtype == jnp.bool_
    out = np.asarray(out.astype(jnp.float32))
    mask, lam = np.asarray(p.mask), np.asarray(p.lam)
    partner, op = np.asarray(p.partner), np.asarray(p.op)
    for i in range(B):
      # A select: every pixel is its own or its partner's, as the mask says.
      want = np.where(mask[i], partner[i] + 1, i + 1)
      np.testing.assert_array_equal(out[i, ..., 0], want)
      if op[i] == 0:
        assert lam[i] == 1 and not mask[i].any()
      else:
        assert lam[i] == np.float32(N - mask[i].sum()) * np.float32(1 / N)
        assert targets[i, i] == pytest.approx(lam[i], abs=1e-6)
        assert targets[i, partner[i]] == pytest.approx(1 - lam[i], abs=1e-6)
    np.testing.assert_allclose(targets.sum(1), 1.0, rtol=1e-6)
    if mode == "batch":
      assert len({m.tobytes() for m, o in zip(mask, op) if o}) <= 1


def test_fmix_lam_law_and_soft_masks():
  soft = fmix(jax.random.key(0), 64, H, W, mode="elem", max_soft=0.2)
  lam = np.asarray(soft.lam)[np.asarray(soft.op) == 2]
  # λ ~ Uniform for α = 1, up to a pixel's rounding (the soft ramp is
  # symmetric about the hard threshold, so it keeps λ).
  assert 0.35 < lam.mean() < 0.65 and lam.min() < 0.2 and lam.max() > 0.8
  m = np.asarray(soft.mask)
  assert soft.mask.dtype == jnp.float32 and m.min() >= 0 and m.max() <= 1
  assert ((m > 0) & (m < 1)).any()
  np.testing.assert_allclose(soft.lam, 1 - m.mean((1, 2)), atol=1e-5)
  x = jax.random.uniform(jax.random.key(1), (64, H, W, 3))
  out = cj.apply_params(soft, x)
  want = x + m[..., None] * (x[::-1] - x)
  np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)


def test_multibox_geometry():
  p = multibox(jax.random.key(0), 32, 40, 40, mode="elem",
               area_range=(0.3, 0.3), aspect_range=(1.0, 1.0))
  frac = 1 - np.asarray(p.lam)
  # One square box of area 0.3 (sides rounded to the pixel).
  assert np.all(np.abs(frac - 0.3) < 0.03)
  # Inverted: the partner fills all but the union of 4 boxes whose areas
  # add up to at most half the image (each side rounded to the pixel).
  inv = multibox(jax.random.key(1), 32, 40, 40, mode="elem", n_boxes=4,
                 area_range=(0.0, 0.5), invert=True)
  assert np.all(1 - np.asarray(inv.lam) >= 0.5 - 0.05)


def test_segmentation_maps_layouts_and_vmap():
  p = multibox(jax.random.key(2), B, H, W, mode="elem")
  seg = jnp.asarray(np.random.default_rng(0).integers(0, 9, (B, H, W)),
                    jnp.uint8)
  out = cj.apply_params(p, seg, layout="NHW")
  np.testing.assert_array_equal(out, jnp.where(p.mask, seg[::-1], seg))
  x = jax.random.uniform(jax.random.key(1), (B, 3, H, W))
  np.testing.assert_array_equal(
      cj.apply_params(p, x, layout="NCHW"),
      jnp.moveaxis(cj.apply_params(p, jnp.moveaxis(x, 1, -1)), -1, 1))
  keys = jax.random.split(jax.random.key(0), 2)
  fn = lambda k: masks.sample_multibox(k, B, H, W, mode="elem").mask
  np.testing.assert_array_equal(jax.jit(jax.vmap(fn))(keys)[1],
                                multibox(keys[1], B, H, W, mode="elem").mask)


def test_errors():
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="area_range"):
    masks.sample_multibox(key, B, H, W, area_range=(0.6, 0.2))
  with pytest.raises(ValueError, match="aspect_range"):
    masks.sample_multibox(key, B, H, W, aspect_range=(0.0, 2.0))
  with pytest.raises(TypeError, match="n_boxes"):
    masks.sample_multibox(key, B, H, W, n_boxes=1.5)
  with pytest.raises(ValueError, match="max_soft"):
    masks.sample_fmix(key, B, H, W, max_soft=0.7)
  with pytest.raises(ValueError, match="decay_power"):
    masks.sample_fmix(key, B, H, W, decay_power=-1)
  with pytest.raises(ValueError, match="alpha"):
    masks.sample_fmix(key, B, H, W, alpha=0.0)
  p = multibox(key, B, H, W)
  with pytest.raises(ValueError, match="masks are"):
    cj.apply_params(p, jnp.zeros((B, H, W + 1, 3)))
  with pytest.raises(ValueError, match="batch size"):
    cj.apply_params(p, jnp.zeros((B + 1, H, W, 3)))
  with pytest.raises(TypeError, match="MaskParams"):
    cj.mix_labels(object(), jnp.arange(B), num_classes=B)
