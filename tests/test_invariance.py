"""invariant=True: the same global batch is augmented bit-identically on 1, 2
and 8 devices, under jit, shard_map and pmap."""

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import cutmix_jax as cj

X = np.random.default_rng(0).normal(size=(16, 6, 10, 3)).astype(np.float32)
Y = np.arange(16) % 5
KEY = jax.random.key(0)
CASES = [("cutmix", "elem"), ("cutmix", "pair"), ("mix", "elem"),
         ("cutout", "elem"), ("resizemix", "elem"), ("switch", "pair"),
         ("multibox", "elem"), ("fmix", "pair"), ("cuboid", "elem")]
SWITCH_PROBS = {"cutmix": 1.0, "mixup": 1.0, "cutout": 1.0, "resizemix": 1.0}


def _mask_or_cuboid(op, mode, axis_name, key, x, y):
  common = dict(mode=mode, axis_name=axis_name, invariant=True)
  batch = x.shape[0]
  if op == "cuboid":
    # The images as clips of 2 frames of 3 x 10.
    clips = x.reshape(batch, 2, 3, 10, 3)
    c = cj.sample_cutmix_cuboid(key, batch, 2, 3, 10, **common)
    return (cj.apply_params(c, clips).reshape(x.shape),
            cj.mix_labels(c, y, num_classes=5))
  if op == "multibox":
    p = cj.sample_multibox(key, batch, 6, 10, n_boxes=2, **common)
  else:
    p = cj.sample_fmix(key, batch, 6, 10, **common)
  return cj.apply_params(p, x), cj.mix_labels(p, y, num_classes=5)


def op_fn(op, mode, axis_name):
  def fn(key, x, y):
    if op in ("multibox", "fmix", "cuboid"):
      return _mask_or_cuboid(op, mode, axis_name, key, x, y)
    if op == "cutout":
      return cj.cutout(key, x, mode=mode, axis_name=axis_name, invariant=True), y
    kwargs = {"cutmix": dict(alpha=0.3), "mix": dict(mixup_alpha=0.3),
              "resizemix": {}, "switch": dict(probs=SWITCH_PROBS)}[op]
    return getattr(cj, op)(key, x, y, num_classes=5, mode=mode,
                           axis_name=axis_name, invariant=True, **kwargs)
  return fn


@pytest.fixture(scope="module", params=CASES, ids=["-".join(c) for c in CASES])
def case(request):
  op, mode = request.param
  reference = jax.jit(op_fn(op, mode, None))(KEY, X, Y)
  return op, mode, reference


@pytest.mark.quick_every(4)  # 4, not 3: the sample rotates over 1, 2 and 8
@pytest.mark.parametrize("devices", [1, 2, 8])
def test_shard_map_matches_one_device(case, devices):
  op, mode, (ref_images, ref_targets) = case
  mesh = jax.make_mesh((devices,), ("data",), devices=jax.devices()[:devices])
  sharding = NamedSharding(mesh, P("data"))
  fn = jax.jit(jax.shard_map(
      op_fn(op, mode, "data"), mesh=mesh, in_specs=(P(), P("data"), P("data")),
      out_specs=(P("data"), P("data"))))
  images, targets = fn(KEY, jax.device_put(X, sharding), jax.device_put(Y, sharding))
  np.testing.assert_array_equal(images, ref_images)
  np.testing.assert_array_equal(targets, ref_targets)


@pytest.mark.quick_every(3)
@pytest.mark.parametrize("devices", [2, 8])
def test_pmap_matches_one_device(case, devices):
  op, mode, (ref_images, _) = case
  images, _ = jax.pmap(op_fn(op, mode, "i"), axis_name="i", in_axes=(None, 0, 0),
                       devices=jax.devices()[:devices])(
      KEY, X.reshape((devices, -1) + X.shape[1:]), Y.reshape(devices, -1))
  np.testing.assert_array_equal(np.asarray(images).reshape(X.shape), ref_images)


def test_invariant_draws_pair_neighbours_and_differ_per_sample():
  params = cj.sample_cutmix(KEY, 8, 6, 10, mode="elem", invariant=True)
  np.testing.assert_array_equal(params.partner, [1, 0, 3, 2, 5, 4, 7, 6])
  assert len(set(np.asarray(params.lam).tolist())) > 1


@pytest.mark.parametrize("kwargs,words", [
    (dict(mode="batch"), ["invariant", "elem"]),
    (dict(mode="elem", batch_size=5), ["invariant", "even", "5"]),
])
def test_invariant_needs_per_sample_draws_and_even_batches(kwargs, words):
  batch_size = kwargs.pop("batch_size", 8)
  with pytest.raises(ValueError) as info:
    cj.sample_cutmix(KEY, batch_size, 6, 10, invariant=True, **kwargs)
  for word in words:
    assert word in str(info.value)
