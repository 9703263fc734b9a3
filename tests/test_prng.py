"""The one PRNG layer behind every draw: JAX's Threefry hash of the
documented counters, `jax.random.fold_in` bit for bit, and words that depend
on their own row and column only."""

import jax
import jax.extend.random as jax_random_ext
import jax.numpy as jnp
import numpy as np
import pytest

from cutmix_jax._src import prng


def _reference_bits(key, rows, cols, offset=0):
  """Word (r, c) = output r % 2 of JAX's own (rolled) Threefry of the counter
  (c + offset, r // 2)."""
  k0, k1 = jax.random.key_data(key) if jnp.issubdtype(
      key.dtype, jax.dtypes.prng_key) else key
  out = np.zeros((len(rows), cols), np.uint32)
  column = np.arange(cols, dtype=np.uint32) + np.uint32(offset)
  for i, r in enumerate(rows):
    pair = np.full(cols, r // 2, np.uint32)
    words = jax_random_ext.threefry2x32_p.bind(
        k0, k1, jnp.asarray(column), jnp.asarray(pair))
    out[i] = words[r % 2]
  return out


@pytest.mark.parametrize("rows,cols", [((0,), 1), ((0, 1), 1), (range(3), 256),
                                       ((5, 2, 9), 7), ((), 4), ((1,), 0)])
@pytest.mark.parametrize("seed", [0, 1, 2**31 - 1])
def test_bits_are_jax_threefry_of_the_counters(rows, cols, seed):
  for key in (jax.random.key(seed), jax.random.PRNGKey(seed),
              jax.random.fold_in(jax.random.key(seed), 7)):
    expected = _reference_bits(key, tuple(rows), cols, 3)
    np.testing.assert_array_equal(prng.bits(key, rows, cols, col_offset=3),
                                  expected)
    np.testing.assert_array_equal(
        jax.jit(prng.bits, static_argnums=(1, 2))(key, tuple(rows), cols),
        _reference_bits(key, tuple(rows), cols))


def test_a_word_depends_on_its_row_and_column_only():
  key = jax.random.key(4)
  full = np.asarray(prng.bits(key, range(20), 12))
  np.testing.assert_array_equal(prng.bits(key, (7, 13), 12), full[[7, 13]])
  np.testing.assert_array_equal(prng.bits(key, (3,), 5, col_offset=7),
                                full[3:4, 7:12])
  # A traced offset, as under invariant=True inside shard_map.
  np.testing.assert_array_equal(
      jax.jit(lambda o: prng.bits(key, (3,), 5, col_offset=o))(7),
      full[3:4, 7:12])


def test_bits_look_uniform():
  words = np.asarray(prng.bits(jax.random.key(0), range(8), 4096))
  assert len(np.unique(words)) == words.size
  bytes_ = words.view(np.uint8)
  counts = np.bincount(bytes_.ravel(), minlength=256)
  expected = bytes_.size / 256
  chi2 = ((counts - expected) ** 2 / expected).sum()
  assert chi2 < 350  # 255 degrees of freedom: p < 1e-4 above 350


def test_other_key_types_go_to_jax_per_column():
  rbg = jax.random.key(0, impl="rbg")
  got = prng.bits(rbg, (0, 3), 4)
  for c in range(4):
    words = jax.random.bits(jax.random.fold_in(rbg, c), (2, 2), jnp.uint32)
    np.testing.assert_array_equal(got[:, c], [words[0, 0], words[1, 1]])


def test_the_compiled_draw_has_no_loop():
  hlo = jax.jit(lambda k: prng.bits(k, range(3), 256)).lower(
      jax.random.key(0)).compile().as_text()
  assert "while" not in hlo


@pytest.mark.parametrize("data", [0, 1, 3, 2**31 + 5])
def test_fold_in_equals_jax_fold_in(data):
  for key in (jax.random.key(5), jax.random.PRNGKey(5),
              jax.random.key(5, impl="rbg")):
    expected = jax.random.fold_in(key, data)
    got = prng.fold_in(key, data)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(jax.random.key_data(got),
                                  jax.random.key_data(expected))
  key = jax.random.key(9)
  data = jnp.arange(4, dtype=jnp.int32) + data % 1000
  np.testing.assert_array_equal(
      jax.random.key_data(jax.jit(prng.fold_in)(key, data)),
      jax.random.key_data(jax.vmap(jax.random.fold_in, (None, 0))(key, data)))


def test_uniform_and_normal_transform_words_as_jax_does():
  key = jax.random.key(11)
  words = jax.random.bits(key, (1000,), jnp.uint32)
  np.testing.assert_array_equal(prng.uniform(words),
                                jax.random.uniform(key, (1000,)))
  np.testing.assert_allclose(prng.normal(words), jax.random.normal(key, (1000,)),
                             rtol=0, atol=1e-6)


def test_record_hashes_sees_every_hash():
  key = jax.random.key(1)
  with prng.record_hashes() as seen:
    jax.block_until_ready(prng.bits(prng.fold_in(key, 2), (0, 1, 2), 3))
  jax.effects_barrier()
  hashes = np.concatenate(seen)
  assert hashes.shape == (1 + 2 * 3, 4)  # one fold, two row pairs x 3 columns
