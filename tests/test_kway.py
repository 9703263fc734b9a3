"""k-way labels: `mix_labels_kway`, `KWayLabels` and the ops' `targets=`."""

import dataclasses
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import cutmix_jax as cj
from cutmix_jax import Op

KEY = jax.random.key(3)
C = 5
PROBS = {"cutmix": 1.0, "mixup": 1.0, "cutout": 1.0, "resizemix": 1.0}
# Python 0 and 0.0 skip the smoothing step, a NumPy scalar is static too, a
# jnp scalar is a leaf (traced under jit).
SMOOTHINGS = [0, 0.1, 1.0, np.float32(0.3), jnp.float32(0.1)]


def assert_bits_equal(a, b):
  a, b = np.asarray(a), np.asarray(b)
  assert a.dtype == b.dtype and a.shape == b.shape
  np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.fixture(scope="module")
def real_draws():
  """One draw of every sampler, each mode and pairing at least once, with
  prob < 1 so that some samples are left unchanged.

  Compiled in one program with most XLA optimisations off: the draws are
  only inputs here, and this halves a compile of nine samplers.
  """
  def draw_all(k):
    return {
        "cutmix": cj.sample_cutmix(k, 8, 8, 8, mode="elem", pairing="permute",
                                   prob=0.8),
        "mixup": cj.sample_mixup(k, 8, mode="pair", prob=0.8),
        "cutout": cj.sample_cutout(k, 8, 8, 8, prob=0.8),
        "resizemix": cj.sample_resizemix(k, 8, 8, 8, mode="batch",
                                         pairing="roll"),
        "switch": cj.sample_switch(k, 8, 8, 8, probs=PROBS, mode="elem",
                                   pairing="roll", prob=0.9),
        "mix": cj.sample_mix(k, 8, 8, 8, mode="pair", pairing="permute",
                             prob=0.8),
        "fmix": cj.sample_fmix(k, 8, 8, 8, mode="elem", prob=0.8),
        "multibox": cj.sample_multibox(k, 8, 8, 8, mode="batch",
                                       pairing="permute"),
        "cuboid": cj.sample_cutmix_cuboid(k, 8, 3, 8, 8, mode="elem",
                                          pairing="roll", prob=0.8),
    }
  jax.config.update("jax_disable_most_optimizations", True)
  try:
    draws = jax.jit(draw_all)(KEY)
  finally:
    jax.config.update("jax_disable_most_optimizations", False)
    jax.clear_caches()
  ops = np.concatenate([np.asarray(d.op) for d in draws.values()])
  assert {int(o) for o in ops} == {int(o) for o in Op}  # every op occurs
  return draws


def _partners(batch, groups, pairing, rng):
  block = batch // groups
  j = np.arange(block)
  if pairing == "flip":
    local = [block - 1 - j] * groups
  elif pairing == "roll":
    local = [(j - 1) % block] * groups
  else:
    local = [rng.permutation(block) for _ in range(groups)]
  return np.concatenate([g * block + p for g, p in enumerate(local)])


def _lams(mode, partner, rng):
  """Per-sample λ as each mode shares it, with exact 0s and 1s mixed in."""
  batch = len(partner)
  values = rng.choice(
      np.array([0.0, 1.0, 0.3, 0.7109375, 1 / 3, 0.9999], np.float32), batch)
  values[: batch // 2] = rng.uniform(size=batch // 2)
  if mode == "batch":
    return np.full(batch, values[0], np.float32)
  if mode == "pair":
    return np.minimum(values, values[partner]).astype(np.float32)
  return values.astype(np.float32)


def _hand_built(kind, mode, pairing, batch, groups, seed):
  """A draw of each type with arbitrary λ, ops and partners: the label
  arithmetic does not depend on how a sampler chose them."""
  rng = np.random.default_rng(seed)
  partner = jnp.asarray(_partners(batch, groups, pairing, rng), jnp.int32)
  lam = jnp.asarray(_lams(mode, np.asarray(partner), rng))
  common = dict(lam=lam, partner=partner, pairing=pairing, groups=groups)
  if kind == "MixParams":
    op = rng.integers(0, 5, batch)
    return cj.MixParams(box=jnp.zeros((batch, 4), jnp.int32),
                        op=jnp.asarray(op, jnp.int32), height=8, width=8,
                        **common)
  op = jnp.asarray(rng.choice([int(Op.NONE), int(Op.CUTMIX)], batch),
                   jnp.int32)
  if kind == "MaskParams":
    return cj.MaskParams(mask=jnp.zeros((batch, 4, 4), bool), op=op, **common)
  return cj.CuboidParams(box=jnp.zeros((batch, 4), jnp.int32),
                         time=jnp.zeros((batch, 2), jnp.int32), op=op,
                         length=2, height=4, width=4, **common)


def _labels(batch, seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(0, C, batch),
                     jnp.int32)


# ---------------------------------------------------------------------------
# to_dense equals mix_labels bit for bit


@pytest.mark.parametrize("name", ["cutmix", "mixup", "cutout", "resizemix",
                                  "switch", "mix", "fmix", "multibox",
                                  "cuboid"])
def test_to_dense_equals_mix_labels_for_every_sampler(real_draws, name):
  draw = real_draws[name]
  y = _labels(8)
  for eps in SMOOTHINGS:
    dense = cj.mix_labels(draw, y, num_classes=C, label_smoothing=eps)
    kway = cj.mix_labels_kway(draw, y, num_classes=C, label_smoothing=eps)
    assert_bits_equal(kway.to_dense(), dense)
  # Under jit, with ε traced, each in a program of its own.
  dense_fn = jax.jit(lambda d, y, e: cj.mix_labels(
      d, y, num_classes=C, label_smoothing=e))
  kway_fn = jax.jit(lambda d, y, e: cj.mix_labels_kway(
      d, y, num_classes=C, label_smoothing=e).to_dense())
  assert_bits_equal(kway_fn(draw, y, 0.1), dense_fn(draw, y, 0.1))


@pytest.mark.parametrize("kind", ["MixParams", "MaskParams", "CuboidParams"])
@pytest.mark.parametrize("batch,groups", [(7, 1), (8, 2)])
def test_to_dense_equals_mix_labels_for_every_mode_and_pairing(
    kind, batch, groups):
  y = _labels(batch)
  for seed, mode in enumerate(["batch", "pair", "elem"]):
    for pairing in ["flip", "roll", "permute"]:
      draw = _hand_built(kind, mode, pairing, batch, groups, seed)
      for eps in SMOOTHINGS:
        dense = cj.mix_labels(draw, y, num_classes=C, label_smoothing=eps)
        kway = cj.mix_labels_kway(draw, y, num_classes=C,
                                  label_smoothing=eps)
        assert_bits_equal(kway.to_dense(), dense)
        partner = np.asarray(draw.partner)
        np.testing.assert_array_equal(
            kway.classes, np.stack([y, np.asarray(y)[partner]], 1))


def test_weights_are_lam_and_its_complement(real_draws):
  draw = real_draws["switch"]
  kway = cj.mix_labels_kway(draw, _labels(8), num_classes=C)
  lam = np.asarray(kway.weights[:, 0])
  np.testing.assert_array_equal(kway.weights[:, 1], np.float32(1) - lam)
  op = np.asarray(draw.op)
  # Cutout and unchanged samples keep their label: partner weight 0.
  assert ((op == Op.CUTOUT) | (op == Op.NONE)).any()
  np.testing.assert_array_equal(lam[(op == Op.CUTOUT) | (op == Op.NONE)], 1)
  # With distinct classes, a mixed sample's own entry of the dense target is
  # λ itself.
  dense = np.asarray(cj.mix_labels(draw, jnp.arange(8), num_classes=8))
  paired = np.asarray(draw.partner) != np.arange(8)
  np.testing.assert_array_equal(lam[paired], np.diag(dense)[paired])


def test_same_class_and_self_pairs_stay_two_entries():
  draw = _hand_built("MixParams", "elem", "flip", 7, 1, 0)  # 3 is self-paired
  y = jnp.zeros(7, jnp.int32)  # every partner has the same class
  kway = cj.mix_labels_kway(draw, y, num_classes=C, label_smoothing=0.1)
  assert kway.classes.shape == (7, 2) and kway.k == 2
  np.testing.assert_array_equal(kway.classes, 0)
  assert_bits_equal(kway.to_dense(), cj.mix_labels(
      draw, y, num_classes=C, label_smoothing=0.1))


def test_invalid_ids_give_the_same_nan_rows():
  draw = dataclasses.replace(
      _hand_built("MixParams", "elem", "roll", 8, 1, 1),
      op=jnp.full(8, int(Op.MIXUP), jnp.int32),
      lam=jnp.full(8, 0.3, jnp.float32).at[4].set(1.0))
  for dtype in [np.int32, np.int8, np.int64]:
    y = np.array([0, -1, 2, C, 1, 2, 3, 4]).astype(dtype)
    dense = cj.mix_labels(draw, y, num_classes=C)
    kway = cj.mix_labels_kway(draw, y, num_classes=C)
    assert kway.classes.dtype == jnp.int32
    assert_bits_equal(kway.to_dense(), dense)
    nan_rows = np.isnan(np.asarray(dense)).any(1)
    # Own ids 1 and 3 are invalid; 2 and 4 have them as partners (roll), but
    # sample 4 keeps its label (λ = 1).
    np.testing.assert_array_equal(np.flatnonzero(nan_rows), [1, 2, 3])


def test_integer_label_dtypes():
  draw = _hand_built("MixParams", "elem", "flip", 8, 1, 2)
  y = np.array([0, 1, 2, 3, 4, 0, 1, 2])
  ref = cj.mix_labels(draw, y.astype(np.int32), num_classes=C)
  for dtype in [np.uint8, np.int16, np.uint32]:
    kway = cj.mix_labels_kway(draw, y.astype(dtype), num_classes=C)
    assert kway.classes.dtype == jnp.int32
    assert_bits_equal(kway.to_dense(), ref)


def test_to_dense_in_float64_equals_mix_labels_of_float64_targets():
  with jax.enable_x64(True):
    draw = _hand_built("MixParams", "elem", "permute", 8, 2, 3)
    y = _labels(8)
    dense_fn = jax.jit(lambda d, y, e: cj.mix_labels(
        d, cj.one_hot(y, C, dtype=jnp.float64), label_smoothing=e))
    kway_fn = jax.jit(lambda d, y, e: cj.mix_labels_kway(
        d, y, num_classes=C, label_smoothing=e).to_dense(jnp.float64))
    dense = dense_fn(draw, y, jnp.float64(0.2))
    assert dense.dtype == jnp.float64
    assert_bits_equal(kway_fn(draw, y, jnp.float64(0.2)), dense)


def test_other_k_sum_their_one_hot_rows():
  one = cj.KWayLabels(jnp.array([[2], [7]]), num_classes=C,
                      label_smoothing=0.1)
  assert_bits_equal(one.to_dense(), cj.one_hot(jnp.array([2, 7]), C,
                                               label_smoothing=0.1))
  three = cj.KWayLabels(jnp.array([[0, 1, 9], [0, 9, 0]]),
                        jnp.array([[0.5, 0.5, 0.0], [0.5, 0.25, 0.25]]),
                        num_classes=C)
  dense = np.asarray(three.to_dense())
  np.testing.assert_array_equal(dense[0], [0.5, 0.5, 0, 0, 0])
  assert np.isnan(dense[1]).all()  # an invalid id with a nonzero weight


# ---------------------------------------------------------------------------
# The pytree


def test_pytree_static_and_traced_smoothing():
  y = cj.KWayLabels(jnp.zeros((4, 2), jnp.int32), jnp.ones((4, 2)) / 2,
                    num_classes=C, label_smoothing=0.1)
  leaves, treedef = jax.tree.flatten(y)
  assert len(leaves) == 2 and "0.1" in str(treedef)
  traced = cj.KWayLabels(y.classes, y.weights, num_classes=C,
                         label_smoothing=jnp.float32(0.1))
  assert len(jax.tree.leaves(traced)) == 3

  @jax.jit
  def f(labels):
    assert isinstance(labels.num_classes, int)
    return labels.to_dense()

  # XLA may fold a constant ε differently from a traced one: close, not bits.
  np.testing.assert_allclose(f(traced), y.to_dense(), rtol=1e-6)
  per_example = jax.vmap(lambda l: l.to_dense())(y)
  assert_bits_equal(per_example, y.to_dense())
  with pytest.raises(AttributeError, match="immutable"):
    y.num_classes = 3


# ---------------------------------------------------------------------------
# Bad input


def test_errors(real_draws):
  draw = real_draws["cutmix"]
  y = _labels(8)
  with pytest.raises(TypeError, match=r"integer class ids \[batch\].*"
                     r"shape \(8, 5\).*mix_labels"):
    cj.mix_labels_kway(draw, cj.one_hot(y, C), num_classes=C)
  with pytest.raises(TypeError, match="num_classes must be a static"):
    cj.mix_labels_kway(draw, y, num_classes=None)
  with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\]"):
    cj.mix_labels_kway(draw, y, num_classes=C, label_smoothing=1.5)
  with pytest.raises(ValueError, match="batch size 4"):
    cj.mix_labels_kway(draw, y[:4], num_classes=C)
  with pytest.raises(TypeError, match="params must be a draw"):
    cj.mix_labels_kway(y, y, num_classes=C)
  with pytest.raises(TypeError, match="weights must be float with the shape"):
    cj.KWayLabels(jnp.zeros((4, 2), jnp.int32), jnp.ones((4, 3)),
                  num_classes=C)
  with pytest.raises(TypeError, match="classes must be integer"):
    cj.KWayLabels(jnp.zeros((4, 2)), num_classes=C)
  with pytest.raises(TypeError, match="float dtype"):
    cj.KWayLabels(jnp.zeros((4, 1), jnp.int32), num_classes=C).to_dense(
        jnp.int32)


# ---------------------------------------------------------------------------
# The ops' opt-in, and several devices


def test_every_op_with_labels_takes_targets():
  for op in [cj.cutmix, cj.mixup, cj.mix, cj.resizemix, cj.switch]:
    parameter = inspect.signature(op).parameters["targets"]
    assert parameter.default == "dense"
    assert parameter.kind == inspect.Parameter.KEYWORD_ONLY
  x = jnp.zeros((4, 8, 8, 3))
  with pytest.raises(ValueError, match="targets must be one of"):
    cj.cutmix(KEY, x, jnp.arange(4), num_classes=C, targets="sparse")
  with pytest.raises(TypeError, match="dense already"):
    cj.cutmix(KEY, x, cj.one_hot(jnp.arange(4), C), targets="kway")


def test_ops_with_kway_targets_equal_dense():
  x = np.random.default_rng(0).normal(size=(8, 8, 8, 3)).astype(np.float32)
  y = _labels(8)

  @jax.jit
  def both(k, x, y):
    kwargs = dict(num_classes=C, mode="elem", prob=0.9, label_smoothing=0.1)
    dense = cj.cutmix(k, x, y, **kwargs)
    images, kway = cj.cutmix(k, x, y, targets="kway", **kwargs)
    return dense, images, kway, kway.to_dense()

  (images, dense), kway_images, kway, kway_dense = both(KEY, x, y)
  assert isinstance(kway, cj.KWayLabels) and kway.label_smoothing == 0.1
  assert_bits_equal(kway_images, images)
  assert_bits_equal(kway_dense, dense)


def test_shard_map_and_cross_device():
  """Per-shard pairing and pairing across devices, in one sharded program."""
  n = 8  # one sample per device: every partner lives on another device
  x = np.random.default_rng(1).normal(size=(n, 6, 8, 3)).astype(np.float32)
  y = np.asarray(_labels(n, seed=2))
  mesh = jax.make_mesh((8,), ("data",))

  def local(k, x, y):
    out = {}
    for name, across in [("shard", False), ("cross", True)]:
      for targets in ["dense", "kway"]:
        out[name, targets] = cj.cutmix(
            k, x, y, num_classes=C, mode="elem", axis_name="data",
            cross_device=across, label_smoothing=0.1, targets=targets)[1]
      out[name, "to_dense"] = out[name, "kway"].to_dense()
    return out

  fn = jax.jit(jax.shard_map(local, mesh=mesh,
                             in_specs=(P(), P("data"), P("data")),
                             out_specs=P("data")))
  sharding = NamedSharding(mesh, P("data"))
  out = fn(KEY, jax.device_put(x, sharding), jax.device_put(y, sharding))
  for name in ["shard", "cross"]:
    kway = out[name, "kway"]
    assert kway.classes.shape == (n, 2)
    assert_bits_equal(out[name, "to_dense"], out[name, "dense"])
  # A one-sample shard pairs with itself; across devices global 'flip' pairs
  # sample g with n - 1 - g.
  np.testing.assert_array_equal(out["shard", "kway"].classes[:, 1], y)
  np.testing.assert_array_equal(out["cross", "kway"].classes[:, 1], y[::-1])
  assert (np.asarray(out["cross", "kway"].weights[:, 1]) > 0).any()
