"""On the 8 simulated devices: sharded jit, shard_map and pmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

import cutmix_jax as cj

COLLECTIVES = ("all-gather", "collective-permute", "all-to-all", "all-reduce")


@pytest.fixture(scope="module")
def batch():
  assert jax.device_count() == 8, "tests/conftest.py sets 8 CPU devices"
  x = np.random.default_rng(0).normal(size=(16, 6, 10, 3)).astype(np.float32)
  return x, np.arange(16) % 5


# Each op under Explicit axes; 'mix' (CutMix and MixUp in one program)
# under Auto too.
@pytest.mark.quick_every(3)
@pytest.mark.parametrize("axis_type,op", [
    (AxisType.Explicit, "cutmix"), (AxisType.Explicit, "mixup"),
    (AxisType.Explicit, "mix"), (AxisType.Auto, "mix")])
@pytest.mark.parametrize("mode,pairing,groups", [
    ("batch", "flip", 1), ("elem", "flip", 8), ("pair", "permute", 1),
    ("elem", "roll", 4)])
def test_sharded_jit_equals_single_device(batch, axis_type, op, mode, pairing, groups):
  x, y = batch
  mesh = jax.make_mesh((8,), ("data",), axis_types=(axis_type,))
  sharding = NamedSharding(mesh, P("data"))
  fn = jax.jit(lambda k, x, y: getattr(cj, op)(
      k, x, y, num_classes=5, mode=mode, pairing=pairing, groups=groups))
  key = jax.random.key(2)
  ref_images, ref_targets = fn(key, x, y)
  images, targets = fn(key, jax.device_put(x, sharding), jax.device_put(y, sharding))
  np.testing.assert_array_equal(images, ref_images)
  np.testing.assert_array_equal(targets, ref_targets)
  assert images.sharding.is_equivalent_to(sharding, images.ndim)
  assert targets.sharding.is_equivalent_to(sharding, targets.ndim)


@pytest.mark.parametrize("op", ["cutmix", "mixup", "mix"])
def test_groups_per_device_moves_no_images(batch, op):
  """Pairing inside each device's block compiles to no communication."""
  x, y = batch
  mesh = jax.make_mesh((8,), ("data",))
  sharding = NamedSharding(mesh, P("data"))
  xs, ys = jax.device_put(x, sharding), jax.device_put(y, sharding)
  fn = jax.jit(lambda k, x, y: getattr(cj, op)(
      k, x, y, num_classes=5, mode="elem", groups=8))
  hlo = fn.lower(jax.random.key(0), xs, ys).compile().as_text()
  assert not [c for c in COLLECTIVES if c in hlo]
  # A global flip does move images: the check above can fail.
  fn = jax.jit(lambda k, x, y: getattr(cj, op)(k, x, y, num_classes=5))
  hlo = fn.lower(jax.random.key(0), xs, ys).compile().as_text()
  assert [c for c in COLLECTIVES if c in hlo]


def _local_op(op, axis_name):
  def local(key, x, y):
    if op == "cutout":
      return cj.cutout(key, x, mode="batch", axis_name=axis_name), y
    return getattr(cj, op)(key, x, y, num_classes=5, axis_name=axis_name)
  return local


def _check_per_shard_draws(op, key, x, y, images, shards):
  """Shard s used fold_in(key, s): each its own draw, as the docs say."""
  block = x.shape[0] // shards
  unfolded = jax.jit(_local_op(op, None))  # jitted like the shards: same FMAs
  differs = []
  for s in range(shards):
    rows = slice(s * block, (s + 1) * block)
    ref, _ = unfolded(jax.random.fold_in(key, s), x[rows], y[rows])
    np.testing.assert_array_equal(images[rows], ref)
    same_key, _ = unfolded(key, x[rows], y[rows])
    differs.append(not np.array_equal(images[rows], same_key))
  assert any(differs)


@pytest.mark.parametrize("op", ["cutmix", "mixup", "mix", "cutout"])
def test_shard_map_with_axis_name_draws_per_shard(batch, op):
  x, y = batch
  mesh = jax.make_mesh((8,), ("data",))
  sharding = NamedSharding(mesh, P("data"))
  fn = jax.jit(jax.shard_map(
      _local_op(op, "data"), mesh=mesh, in_specs=(P(), P("data"), P("data")),
      out_specs=(P("data"), P("data"))))
  key = jax.random.key(0)
  xs, ys = jax.device_put(x, sharding), jax.device_put(y, sharding)
  images, _ = fn(key, xs, ys)
  _check_per_shard_draws(op, key, x, y, np.asarray(images), 8)
  # Pairing stayed inside each shard: no communication at all.
  hlo = fn.lower(key, xs, ys).compile().as_text()
  assert not [c for c in COLLECTIVES if c in hlo]


@pytest.mark.parametrize("op", ["cutmix", "mixup", "mix", "cutout"])
def test_pmap_with_axis_name(batch, op):
  x, y = batch
  key = jax.random.key(0)
  images, targets = jax.pmap(_local_op(op, "i"), axis_name="i",
                             in_axes=(None, 0, 0))(
      key, x.reshape(8, 2, 6, 10, 3), y.reshape(8, 2))
  assert images.shape == (8, 2, 6, 10, 3)
  _check_per_shard_draws(op, key, x, y, np.asarray(images).reshape(x.shape), 8)
  if op != "cutout":
    np.testing.assert_allclose(np.asarray(targets).sum(-1), 1.0, rtol=1e-6)
