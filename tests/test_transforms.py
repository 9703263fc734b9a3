"""Eager, jit and vmap agree; the key alone decides the draw."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cutmix_jax as cj

X = np.random.default_rng(0).normal(size=(6, 10, 12, 3)).astype(np.float32)
Y = np.arange(6) % 4


def run(op, key, **kwargs):
  if op == "cutout":
    return cj.cutout(key, X, **kwargs)
  return getattr(cj, op)(key, X, Y, num_classes=4, **kwargs)


@pytest.mark.parametrize("op", ["cutmix", "mixup", "mix", "cutout"])
@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_eager_equals_jit(op, mode):
  key = jax.random.key(11)
  eager = run(op, key, mode=mode)
  jitted = jax.jit(lambda k: run(op, k, mode=mode))(key)
  for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
    # Selects are exact; MixUp's blend may differ by float32 rounding between
    # op-by-op and fused evaluation.
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


@pytest.mark.quick_every(3)
@pytest.mark.parametrize("placement", ["official", "inside"])
@pytest.mark.parametrize("alpha", [0.3, 1.0])
def test_pair_form_eager_jit_vmap(placement, alpha):
  keys = jax.random.split(jax.random.key(3), 6)
  a, b = X, X[::-1]
  pair = lambda k, a, b: cj.cutmix_pair(k, a, b, alpha=alpha, placement=placement)
  eager = [pair(keys[i], a[i], b[i]) for i in range(6)]
  jitted = [jax.jit(pair)(keys[i], a[i], b[i]) for i in range(6)]
  vmapped = jax.jit(jax.vmap(pair))(keys, a, b)
  for i in range(6):
    np.testing.assert_array_equal(eager[i][0], jitted[i][0])
    np.testing.assert_array_equal(eager[i][0], vmapped[0][i])
    assert float(eager[i][1]) == float(jitted[i][1]) == float(vmapped[1][i])
    # The pair form is the textbook CutMix: lam is the kept-pixel fraction.
    kept = np.asarray(eager[i][0] == a[i]).all(-1).mean()
    np.testing.assert_allclose(float(eager[i][1]), kept, atol=1e-6)


def test_vmapped_pair_form_matches_elem_mode():
  """Under vmap, per-sample mode is the pair form: same pixels, same cost."""
  keys = jax.random.split(jax.random.key(0), 6)
  out, lam = jax.vmap(cj.cutmix_pair)(keys, X, X[::-1])
  out = np.asarray(out)
  # X's values are distinct, so the pasted pixels show each sample's box.
  pasted = (out != X).any(-1)
  boxes = []
  for i in range(6):
    rows, cols = np.flatnonzero(pasted[i].any(1)), np.flatnonzero(
        pasted[i].any(0))
    box = ([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1] if rows.size
           else [0, 0, 0, 0])
    boxes.append(box)
  # The elem-mode draw with these boxes (partner = flip) gives the same
  # pixels and the same λ, bit for bit.
  boxes = jnp.asarray(boxes, jnp.int32)
  elem = dataclasses.replace(
      cj.sample_cutmix(jax.random.key(0), 6, *X.shape[1:3], mode="elem"),
      box=boxes, lam=cj.lam_from_box(boxes, *X.shape[1:3]),
      op=jnp.full(6, cj.Op.CUTMIX, jnp.int32))
  np.testing.assert_array_equal(out, cj.apply_params(elem, X))
  np.testing.assert_array_equal(lam, elem.lam)
  assert pasted.any(axis=(1, 2)).sum() >= 4  # most draws paste something


@pytest.mark.parametrize("op", ["cutmix", "mixup", "mix", "cutout"])
def test_same_key_same_output_different_keys_differ(op):
  fn = jax.jit(lambda k: run(op, k, mode="elem"))
  first = fn(jax.random.key(0))
  again = fn(jax.random.key(0))
  other = fn(jax.random.key(1))
  for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again)):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(jax.tree.leaves(first)[0], jax.tree.leaves(other)[0])


def test_legacy_uint32_keys_work_and_match_typed_keys():
  typed = jax.random.key(5)
  legacy = jax.random.key_data(typed)
  out_typed, _ = cj.cutmix(typed, X, Y, num_classes=4, mode="elem")
  out_legacy, _ = cj.cutmix(legacy, X, Y, num_classes=4, mode="elem")
  np.testing.assert_array_equal(out_typed, out_legacy)


def test_vmap_over_keys_gives_independent_draws():
  keys = jax.random.split(jax.random.key(0), 4)
  params = jax.vmap(lambda k: cj.sample_cutmix(k, 6, 10, 12))(keys)
  assert params.lam.shape == (4, 6)
  assert len(set(np.asarray(params.lam[:, 0]).tolist())) > 1
