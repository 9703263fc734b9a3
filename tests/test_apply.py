"""Applying draws (`apply.py`); here integer MixUp, which rounds to nearest,
ties to even, exactly as documented.

λ is a multiple of 1/256 and the pixels are integers below 2**16, so
`partner + λ * (own - partner)` is exact in float32, with or without FMA
contraction: the output must equal the float64 blend rounded half to even,
bit for bit. A quarter of the pixels hit the λ grid's exact x.5 ties, so
flooring, rounding half up or half away from zero all fail.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cutmix_jax as cj

B, N = 64, 512  # samples, pixels per sample


def _draw(dtype):
  info = np.iinfo(dtype)
  lo, hi = max(info.min, -(2**15)), min(info.max, 2**15 - 1)
  rng = np.random.default_rng(0)
  x = rng.integers(lo, hi, (B, N, 1), endpoint=True).astype(dtype)
  # The extremes, so a missing clip or a wrap-around would show.
  x[:, :2, 0] = [lo, hi]
  lam = rng.integers(0, 257, B).astype(np.float32) / 256
  lam[:4] = [0.0, 1.0, 0.5, 0.5]
  return x, lam


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16,
                                   np.int32])
@pytest.mark.parametrize("jit", [False, True])
def test_mixup_rounds_half_to_even_exactly(dtype, jit):
  x, lam = _draw(dtype)
  p = cj.sample_mixup(jax.random.key(0), B, mode="elem", prob=1.0)
  p = dataclasses.replace(p, lam=jnp.asarray(lam))
  partner = np.asarray(p.partner)
  apply = lambda p, x: cj.apply_params(p, x, layout="NHW")
  out = np.asarray((jax.jit(apply) if jit else apply)(p, x))
  own, other = x.astype(np.float64), x[partner].astype(np.float64)
  blend = other + lam[:, None, None].astype(np.float64) * (own - other)
  # np.round is round-half-to-even.
  want = np.round(blend).astype(dtype)
  ties = blend - np.floor(blend) == 0.5
  assert (ties & (np.floor(blend) % 2 == 0)).sum() > 100  # half up fails
  assert (ties & (np.floor(blend) % 2 == 1)).sum() > 100  # half down fails
  if np.iinfo(dtype).min < 0:
    assert (ties & (blend < 0)).sum() > 100  # half away from zero fails
  assert out.dtype == dtype
  np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("dtype", [jnp.uint8, jnp.int32])
def test_mixup_rounds_integer_images(dtype):
  x = jnp.stack([jnp.zeros((2, 2, 1)), jnp.full((2, 2, 1), 3.0)]).astype(dtype)
  params = cj.sample_mixup(jax.random.key(0), 2, alpha=1.0)
  out = cj.apply_params(params, x)
  assert out.dtype == dtype
  lam = float(params.lam[0])
  np.testing.assert_array_equal(out[0], np.round((1 - lam) * 3))
  np.testing.assert_array_equal(out[1], np.round(lam * 3))
