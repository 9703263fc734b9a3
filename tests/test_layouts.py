"""Every op gives the same result on every layout the README promises:
jit over a batch-sharded array vs one device, invariant=True on 8 devices vs
one, and cross_device=True vs the single-device op on the global batch. Bit
for bit, except ResizeMix's 'linear' resampling, which is a matrix product
whose summation order XLA picks per layout (equal to float32 rounding)."""

import functools

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import cutmix_jax as cj

X = np.random.default_rng(0).normal(size=(16, 24, 40, 3)).astype(np.float32)
Y = np.arange(16) % 10
KEY = jax.random.key(100)
ALL = {"cutmix": 1.0, "mixup": 1.0, "cutout": 1.0, "resizemix": 1.0}
OPS = ["cutmix", "mixup", "mix", "cutout", "resizemix-linear",
       "resizemix-nearest", "switch-linear", "switch-nearest", "multibox",
       "fmix-soft", "cuboid"]
BOX_DRAWS = [o for o in OPS[:8] if o != "cutout"]  # Cutout needs no partner


def _op(name, key, x, y, **common):
  batch = x.shape[0]
  if name == "multibox":
    p = cj.sample_multibox(key, batch, 24, 40, n_boxes=3, **common)
  elif name == "fmix-soft":
    p = cj.sample_fmix(key, batch, 24, 40, max_soft=0.2, **common)
  elif name == "cuboid":
    c = cj.sample_cutmix_cuboid(key, batch, 4, 6, 40, **common)
    return (cj.apply_params(c, x.reshape(batch, 4, 6, 40, 3)).reshape(x.shape),
            cj.mix_labels(c, y, num_classes=10))
  else:
    op, _, resize = name.partition("-")
    kwargs = {"resizemix": dict(resize=resize), "mix": dict(mixup_alpha=0.3),
              "switch": dict(probs=ALL, resize=resize)}.get(op, {})
    if op == "cutout":
      return cj.cutout(key, x, **common), y
    return getattr(cj, op)(key, x, y, num_classes=10, **common, **kwargs)
  return cj.apply_params(p, x), cj.mix_labels(p, y, num_classes=10)


def _check(name, got, expected):
  for g, e in zip(got, expected):
    if name.endswith("-linear"):
      np.testing.assert_allclose(g, e, rtol=0, atol=1e-5)
    else:
      np.testing.assert_array_equal(g, e)


@pytest.fixture(scope="module")
def mesh():
  return jax.make_mesh((8,), ("data",))


def _sharded(mesh):
  sharding = NamedSharding(mesh, P("data"))
  return jax.device_put(X, sharding), jax.device_put(Y, sharding)


@pytest.mark.slow
@pytest.mark.parametrize("name", OPS)
def test_sharded_jit_equals_one_device(name, mesh):
  fn = jax.jit(functools.partial(_op, name, mode="elem"))
  got = fn(KEY, *_sharded(mesh))
  _check(name, got, fn(KEY, X, Y))


@pytest.mark.quick_every(3)
@pytest.mark.parametrize("name", OPS)
def test_invariant_on_8_devices_equals_one(name, mesh):
  common = dict(mode="elem", invariant=True)
  one = jax.jit(functools.partial(_op, name, **common))(KEY, X, Y)
  spread = jax.jit(jax.shard_map(
      functools.partial(_op, name, axis_name="data", **common), mesh=mesh,
      in_specs=(P(), P("data"), P("data")), out_specs=P("data")))
  _check(name, spread(KEY, *_sharded(mesh)), one)


@pytest.mark.quick_every(3)
@pytest.mark.parametrize("name", BOX_DRAWS)
def test_cross_device_equals_one_device(name, mesh):
  common = dict(mode="elem")
  one = jax.jit(functools.partial(_op, name, **common))(KEY, X, Y)
  spread = jax.jit(jax.shard_map(
      functools.partial(_op, name, axis_name="data", cross_device=True,
                        **common), mesh=mesh,
      in_specs=(P(), P("data"), P("data")), out_specs=P("data")))
  _check(name, spread(KEY, *_sharded(mesh)), one)
