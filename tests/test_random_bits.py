"""The unrolled Threefry behind every draw: JAX's Threefry hash of the
documented counters, and `jax.random.fold_in` bit for bit."""

import jax
import jax.extend.random as jax_random_ext
import jax.numpy as jnp
import numpy as np
import pytest

from cutmix_jax._src import sampling


def _reference_bits(key, shape):
  """The layout by hand, hashed by JAX's own (rolled) Threefry."""
  rows = shape[0]
  cols = int(np.prod(shape[1:]))
  half = (rows + 1) // 2
  counters = np.arange(2 * half * cols, dtype=np.uint32).reshape(2 * half, cols)
  k0, k1 = jax.random.key_data(key) if jnp.issubdtype(
      key.dtype, jax.dtypes.prng_key) else key
  first, second = jax_random_ext.threefry2x32_p.bind(
      k0, k1, jnp.asarray(counters[:half]), jnp.asarray(counters[half:]))
  return np.concatenate([first, second])[:rows].reshape(shape)


@pytest.mark.parametrize("shape", [(1,), (2,), (3, 256), (6, 256), (17, 5, 3),
                                   (0, 4)])
@pytest.mark.parametrize("seed", [0, 1, 2**31 - 1])
def test_bits_are_jax_threefry_of_the_counters(shape, seed):
  for key in (jax.random.key(seed), jax.random.PRNGKey(seed),
              jax.random.fold_in(jax.random.key(seed), 7)):
    expected = _reference_bits(key, shape)
    np.testing.assert_array_equal(sampling._random_bits(key, shape), expected)
    np.testing.assert_array_equal(
        jax.jit(sampling._random_bits, static_argnums=1)(key, shape), expected)


def test_bits_look_uniform():
  words = np.asarray(sampling._random_bits(jax.random.key(0), (8, 4096)))
  assert len(np.unique(words)) == words.size  # no repeated counter
  bytes_ = words.view(np.uint8)
  counts = np.bincount(bytes_.ravel(), minlength=256)
  expected = bytes_.size / 256
  chi2 = ((counts - expected) ** 2 / expected).sum()
  assert chi2 < 350  # 255 degrees of freedom: p < 1e-4 above 350


def test_bits_under_vmap_and_other_key_types():
  keys = jax.random.split(jax.random.key(3), 4)
  np.testing.assert_array_equal(
      jax.vmap(lambda k: sampling._random_bits(k, (5,)))(keys),
      np.stack([_reference_bits(k, (5,)) for k in keys]))
  rbg = jax.random.key(0, impl="rbg")  # not threefry: handed to JAX
  np.testing.assert_array_equal(sampling._random_bits(rbg, (6,)),
                                jax.random.bits(rbg, (6,), jnp.uint32))


def test_the_compiled_draw_has_no_loop():
  hlo = jax.jit(lambda k: sampling._random_bits(k, (3, 256))).lower(
      jax.random.key(0)).compile().as_text()
  assert "while" not in hlo


@pytest.mark.parametrize("data", [0, 1, 3, 2**31 + 5])
def test_fold_in_equals_jax_fold_in(data):
  for key in (jax.random.key(5), jax.random.PRNGKey(5),
              jax.random.key(5, impl="rbg")):
    expected = jax.random.fold_in(key, data)
    got = sampling._fold_in(key, data)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(jax.random.key_data(got),
                                  jax.random.key_data(expected))
  # A vector of data folds each element, as vmap(fold_in) does.
  key = jax.random.key(9)
  data = jnp.arange(4, dtype=jnp.int32) + data % 1000
  np.testing.assert_array_equal(
      jax.random.key_data(jax.jit(sampling._fold_in)(key, data)),
      jax.random.key_data(jax.vmap(jax.random.fold_in, (None, 0))(key, data)))
