"""The k-way losses against optax on the dense target, in value and gradient."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

import cutmix_jax as cj

LOSSES = {
    "softmax": (cj.softmax_cross_entropy_kway,
                optax.softmax_cross_entropy),
    "sigmoid": (cj.sigmoid_binary_cross_entropy_kway,
                lambda z, t: optax.sigmoid_binary_cross_entropy(z, t).sum(-1)),
}


def _labels(batch, num_classes, label_smoothing, seed=0):
  """Mixed labels as a draw makes them: own class, partner class (some the
  same class, one a self-pair), λ with exact 1s (partner weight 0)."""
  rng = np.random.default_rng(seed)
  own = rng.integers(0, num_classes, batch)
  partner = rng.permutation(batch)
  partner[0] = 0
  lam = rng.uniform(size=batch).astype(np.float32)
  lam[1::3] = 1.0
  classes = np.stack([own, own[partner]], 1).astype(np.int32)
  weights = np.stack([lam, np.float32(1) - lam], 1)
  return cj.KWayLabels(classes, weights, num_classes=num_classes,
                       label_smoothing=label_smoothing)


def _logits(batch, num_classes, dtype, seed=1):
  z = np.random.default_rng(seed).normal(0, 3, (batch, num_classes))
  return jnp.asarray(z.astype(np.float32)).astype(dtype)


def _value_and_grad(loss, logits, labels):
  # Rows are independent: the gradient of the sum is each row's gradient.
  value, vjp = jax.vjp(lambda z: loss(z, labels), logits)
  return value, vjp(jnp.ones_like(value))[0]


# The two paths round differently. Measured worst cases over the grid below:
# values 5.2e-7 relative, float32 gradients 2.4e-7 of their largest entry.
RTOL_F32, GRAD_ATOL_F32 = 2e-6, 1e-6
# The gradient of bfloat16 logits comes back rounded to bfloat16 (2^-9
# relative); measured 2.0e-3 of the largest entry.
BF16_GRAD_RTOL = 2 ** -8


@pytest.mark.quick_every(3)
@pytest.mark.parametrize("num_classes", [2, 10, 1000, 21843])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_equal_to_optax_on_the_dense_target(num_classes, dtype):
  batch = 6
  labels = _labels(batch, num_classes, jnp.float32(0.1))  # ε traced
  logits = _logits(batch, num_classes, dtype)
  dense = labels.to_dense()

  @jax.jit
  def ours(z, y):
    return {n: _value_and_grad(f, z, y) for n, (f, _) in LOSSES.items()}

  @jax.jit
  def reference(z, t):
    return {n: _value_and_grad(lambda z, _, f=f: f(z, t), z, None)
            for n, (_, f) in LOSSES.items()}

  got = ours(logits, labels)
  want = reference(logits.astype(jnp.float32), dense)
  for name in LOSSES:
    (value, grad), (ref_value, ref_grad) = got[name], want[name]
    assert value.dtype == jnp.float32 and value.shape == (batch,)
    assert grad.dtype == dtype and grad.shape == logits.shape
    np.testing.assert_allclose(value, ref_value, rtol=RTOL_F32, atol=RTOL_F32,
                               err_msg=name)
    scale = float(jnp.abs(ref_grad).max())
    atol = (GRAD_ATOL_F32 if dtype == jnp.float32 else BF16_GRAD_RTOL) * scale
    np.testing.assert_allclose(grad.astype(jnp.float32), ref_grad, rtol=0,
                               atol=atol, err_msg=name)


@pytest.mark.parametrize("eps", [0, 0.1, 1.0])
def test_static_smoothing_and_the_two_term_loss(eps):
  labels = _labels(8, 10, eps)
  logits = _logits(8, 10, jnp.float32)
  ce = optax.softmax_cross_entropy_with_integer_labels

  @jax.jit
  def run(z, y):
    out = {n: (ours(z, y), ref(z, y.to_dense()))
           for n, (ours, ref) in LOSSES.items()}
    # The official code's λ·CE(y_a) + (1 - λ)·CE(y_b), when ε = 0.
    two_term = (y.weights[:, 0] * ce(z, y.classes[:, 0])
                + y.weights[:, 1] * ce(z, y.classes[:, 1]))
    return out, two_term

  out, two_term = run(logits, labels)
  for name, (got, want) in out.items():
    np.testing.assert_allclose(got, want, rtol=RTOL_F32, err_msg=name)
  if eps == 0:
    np.testing.assert_allclose(out["softmax"][0], two_term, rtol=RTOL_F32)


def test_from_a_draw_and_under_vmap():
  y = jnp.arange(8) % 3
  logits = _logits(8, 10, jnp.float32)

  @jax.jit
  def run(key, z, y):
    p = cj.sample_mixup(key, 8, mode="elem")
    labels = cj.mix_labels_kway(p, y, num_classes=10, label_smoothing=0.1)
    dense = cj.mix_labels(p, y, num_classes=10, label_smoothing=0.1)
    # vmap: each call sees logits [C] and labels [k].
    return {n: (ours(z, labels), ref(z, dense),
                jax.vmap(ours)(z, labels))
            for n, (ours, ref) in LOSSES.items()}

  for name, (batched, want, per_example) in run(
      jax.random.key(0), logits, y).items():
    np.testing.assert_allclose(batched, want, rtol=RTOL_F32, err_msg=name)
    np.testing.assert_allclose(per_example, batched, rtol=1e-7, err_msg=name)


@pytest.mark.parametrize("axis_type", [AxisType.Explicit, AxisType.Auto])
def test_sharded_jit_and_shard_map(axis_type):
  batch, num_classes = 16, 1000
  labels = _labels(batch, num_classes, 0.1)
  logits = _logits(batch, num_classes, jnp.bfloat16)
  mesh = jax.make_mesh((8,), ("data",), axis_types=(axis_type,))
  sharding = NamedSharding(mesh, P("data"))

  def both(z, y):
    return {n: _value_and_grad(f, z, y) for n, (f, _) in LOSSES.items()}

  want = jax.jit(both)(logits, labels)
  put = lambda a: jax.device_put(a, sharding)
  sharded = jax.jit(both)(put(logits), jax.tree.map(put, labels))
  mapped = jax.jit(jax.shard_map(both, mesh=mesh, in_specs=P("data"),
                                 out_specs=P("data")))(
                                     put(logits), jax.tree.map(put, labels))
  for got in (sharded, mapped):
    for name in LOSSES:
      for g, w in zip(got[name], want[name]):
        np.testing.assert_allclose(g.astype(jnp.float32),
                                   w.astype(jnp.float32), rtol=1e-6,
                                   atol=1e-6, err_msg=name)
  assert sharded["softmax"][1].sharding.is_equivalent_to(sharding, 2)


def test_invalid_ids_give_nan_rows_in_value_and_gradient():
  classes = np.array([[1, 2], [-1, 2], [1, 10], [1, -3], [12, 12], [3, 4]])
  lam = np.array([0.6, 0.6, 0.6, 1.0, 1.0, 0.0], np.float32)
  labels = cj.KWayLabels(classes, np.stack([lam, 1 - lam], 1),
                         num_classes=10, label_smoothing=0.1)
  logits = _logits(6, 10, jnp.float32)
  dense = labels.to_dense()
  nan_rows = np.isnan(np.asarray(dense)).any(-1)
  np.testing.assert_array_equal(np.flatnonzero(nan_rows), [1, 2, 4])

  @jax.jit
  def run(z, y, t):
    return {n: (_value_and_grad(ours, z, y),
                ref(z, t)) for n, (ours, ref) in LOSSES.items()}

  for name, ((value, grad), ref_value) in run(logits, labels, dense).items():
    np.testing.assert_array_equal(np.isnan(value), nan_rows, err_msg=name)
    np.testing.assert_array_equal(np.isnan(np.asarray(grad)).any(-1),
                                  nan_rows, err_msg=name)
    ok = ~nan_rows
    np.testing.assert_allclose(np.asarray(value)[ok],
                               np.asarray(ref_value)[ok], rtol=RTOL_F32)


def _big_buffers(compiled, shape):
  """Float buffers of `shape` that the entry computation builds from no
  other buffer of that shape: a target made from the labels alone."""
  text = compiled.as_text()
  entry = text[text.index("\nENTRY"):]
  dims = ",".join(map(str, shape))
  made = set()
  found = []
  for line in entry.splitlines():
    m = re.match(r"\s*(?:ROOT )?%(\S+) = (f\d+)\[([\d,]*)\]\S* (\S+)\((.*)",
                 line)
    if not m or m.group(3) != dims:
      continue
    name, op, operands = m.group(1), m.group(4), m.group(5)
    if op != "parameter" and not any(
        f"%{o}" in operands for o in made):
      found.append(name)
    made.add(name)
  return found


@pytest.mark.parametrize("name", list(LOSSES))
def test_no_batch_by_classes_buffer_but_logits_and_gradient(name):
  batch, num_classes = 8, 4096
  size = batch * num_classes * 4
  labels = _labels(batch, num_classes, 0.1)
  ours, ref = LOSSES[name]
  paths = {"kway": lambda z, y: ours(z, y).sum(),
           "dense": lambda z, y: ref(z, y.to_dense()).sum()}
  for path, loss in paths.items():
    compiled = jax.jit(jax.value_and_grad(loss)).lower(
        jnp.zeros((batch, num_classes)), labels).compile()
    memory = compiled.memory_analysis()
    built = _big_buffers(compiled, (batch, num_classes))
    if path == "kway":
      assert memory.argument_size_in_bytes < size + 1024
      assert memory.output_size_in_bytes < size + 1024
      assert memory.temp_size_in_bytes < size // 8, memory
      assert not built
    else:  # the checks can fail: the dense path builds its target
      assert memory.temp_size_in_bytes >= size
      assert built


def test_errors_at_trace_time():
  labels = _labels(4, 10, 0.1)
  spec = jax.ShapeDtypeStruct
  loss = cj.softmax_cross_entropy_kway
  with pytest.raises(ValueError, match=r"same batch shape.*\(5,\) and \(4,\)"):
    jax.eval_shape(loss, spec((5, 10), jnp.float32), labels)
  with pytest.raises(ValueError, match="12 classes but labels.num_classes is 10"):
    jax.eval_shape(cj.sigmoid_binary_cross_entropy_kway,
                   spec((4, 12), jnp.float32), labels)
  with pytest.raises(TypeError, match="logits must be float"):
    loss(jnp.zeros((4, 10), jnp.int32), labels)
  with pytest.raises(TypeError, match="KWayLabels.*optax"):
    loss(jnp.zeros((4, 10)), labels.to_dense())
  # A static ε outside [0, 1] that skipped the constructor's check.
  bad = cj.KWayLabels.tree_unflatten((10, 1.5), jax.tree.leaves(labels))
  with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\]"):
    jax.eval_shape(loss, spec((4, 10), jnp.float32), bad)
