"""Video: the same box on every frame, and space-time cuboids."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cutmix_jax as cj
from cutmix_jax._src import cuboid as cuboid_lib

B, T, H, W = 5, 6, 7, 9


def _ids(dtype=jnp.int32, channels=2):
  """Clips whose every voxel holds its sample's id (1-based)."""
  ids = jnp.arange(1, B + 1, dtype=dtype).reshape(B, 1, 1, 1, 1)
  return jnp.broadcast_to(ids, (B, T, H, W, channels))


def test_default_video_gets_the_same_box_on_every_frame():
  p = cj.sample_cutmix(jax.random.key(0), B, H, W, mode="elem")
  out = np.asarray(cj.apply_params(p, _ids(), layout="NTHWC"))
  for i in range(B):
    from_partner = out[i, ..., 0] != i + 1
    box = np.asarray(cj.box_mask(p.box[i], H, W))
    for t in range(T):
      np.testing.assert_array_equal(from_partner[t], box)
    # λ is the area fraction and so the voxel fraction too.
    assert float(p.lam[i]) == pytest.approx(1 - from_partner.mean(), abs=1e-6)


@functools.lru_cache(maxsize=None)
def _run(mode, pairing, placement):
  def run(key, x, labels):
    c = cuboid_lib.sample_cutmix_cuboid(
        key, B, T, H, W, alpha=0.7, prob=0.8, mode=mode, pairing=pairing,
        placement=placement)
    return (c, cj.apply_params(c, x),
            cj.mix_labels(c, labels, num_classes=B))
  return jax.jit(run)


@pytest.mark.parametrize("mode,pairing,placement", [
    ("elem", "permute", "official"), ("pair", "flip", "inside"),
    ("batch", "roll", "official")])
def test_cuboid_lam_is_the_voxel_fraction(mode, pairing, placement):
  x = _ids(jnp.uint8)
  for seed in range(4):
    c, out, targets = _run(mode, pairing, placement)(
        jax.random.key(seed), x, jnp.arange(B))
    assert out.dtype == jnp.uint8
    out = np.asarray(out)[..., 0]
    lam, partner = np.asarray(c.lam), np.asarray(c.partner)
    time, box = np.asarray(c.time), np.asarray(c.box)
    for i in range(B):
      own = out[i] == i + 1
      assert set(np.unique(out[i])) <= {i + 1, partner[i] + 1}
      # Exactly the cuboid, and λ the exact kept-voxel fraction.
      want = np.zeros((T, H, W), bool)
      want[time[i, 0]:time[i, 1], box[i, 0]:box[i, 2], box[i, 1]:box[i, 3]] = 1
      np.testing.assert_array_equal(~own, want if partner[i] != i else False)
      if c.op[i] == cj.Op.NONE:
        assert lam[i] == 1 and own.all()
      else:
        assert lam[i] == np.float32(own.sum()) * np.float32(1 / (T * H * W))
      if partner[i] != i:
        assert targets[i, i] == pytest.approx(lam[i], abs=1e-6)
        assert targets[i, partner[i]] == pytest.approx(1 - lam[i], abs=1e-6)
      np.testing.assert_allclose(targets[i].sum(), 1.0, rtol=1e-6)
    if mode == "batch":
      assert len(set(map(tuple, time[c.op == cj.Op.CUTMIX]))) <= 1


@pytest.mark.slow
def test_layouts_agree_and_vmap():
  run = _run("elem", "permute", "official")
  labels = jnp.arange(B)
  c = run(jax.random.key(3), _ids(jnp.uint8), labels)[0]
  x = jax.random.uniform(jax.random.key(1), (B, T, H, W, 3))
  a = cj.apply_params(c, x)
  b = cj.apply_params(c, jnp.moveaxis(x, -1, 1), layout="NCTHW")
  np.testing.assert_array_equal(a, jnp.moveaxis(b, 1, -1))
  # vmap over keys agrees with the jitted single draw of the test above.
  keys = jax.random.split(jax.random.key(0), 2)
  mapped = jax.jit(jax.vmap(lambda k: run(k, _ids(jnp.uint8), labels)[1]))
  np.testing.assert_array_equal(mapped(keys)[1],
                                run(keys[1], _ids(jnp.uint8), labels)[1])


def test_errors():
  c = cuboid_lib.sample_cutmix_cuboid(jax.random.key(0), B, T, H, W)
  with pytest.raises(ValueError, match="no time axis"):
    cj.apply_params(c, jnp.zeros((B, H, W, 3)), layout="NHWC")
  with pytest.raises(ValueError, match="drawn for"):
    cj.apply_params(c, jnp.zeros((B, T + 1, H, W, 3)))
  # The footgun of 0.1: a cuboid's box applied on every frame. A cuboid is
  # no MixParams and holds none, and a layout without frames is refused.
  assert not isinstance(c, cj.MixParams) and not hasattr(c, "params")
  with pytest.raises(ValueError, match="rank 4 but layout 'NTHWC'"):
    cj.apply_params(c, jnp.zeros((B, H, W, 3)))
  with pytest.raises(TypeError, match="mix_boxes needs a box draw"):
    cj.mix_boxes(c, jnp.zeros((B, 1, 4)), jnp.zeros((B, 1)),
                 jnp.ones((B, 1), bool))
  with pytest.raises(TypeError, match="length"):
    cuboid_lib.sample_cutmix_cuboid(jax.random.key(0), B, 2.0, H, W)
  with pytest.raises(ValueError, match="alpha"):
    cuboid_lib.sample_cutmix_cuboid(jax.random.key(0), B, T, H, W, alpha=0)
