"""The unrolled Threefry behind every draw reproduces `jax.random.bits` and
`jax.random.fold_in`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cutmix_jax._src import sampling


@pytest.mark.parametrize("shape", [(1,), (2,), (3, 256), (17, 5, 3), (0, 4)])
@pytest.mark.parametrize("seed", [0, 1, 2**31 - 1])
def test_bits_equal_jax_random_bits(shape, seed):
  for key in (jax.random.key(seed), jax.random.PRNGKey(seed),
              jax.random.fold_in(jax.random.key(seed), 7)):
    expected = jax.random.bits(key, shape, jnp.uint32)
    np.testing.assert_array_equal(sampling._random_bits(key, shape), expected)
    np.testing.assert_array_equal(
        jax.jit(sampling._random_bits, static_argnums=1)(key, shape), expected)


def test_bits_under_vmap_and_other_key_types():
  keys = jax.random.split(jax.random.key(3), 4)
  np.testing.assert_array_equal(
      jax.vmap(lambda k: sampling._random_bits(k, (5,)))(keys),
      jax.vmap(lambda k: jax.random.bits(k, (5,), jnp.uint32))(keys))
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
