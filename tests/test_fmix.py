"""FMix (Harris et al. 2020): the noise's spectrum, the top-k threshold, hard
masks that select, and λ as the exact kept fraction."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cutmix_jax as cj
from cutmix_jax._src import masks
from cutmix_jax._src import plan as plan_lib


def _noise(key, batch, height, width, decay_power):
  """`sample_fmix(key, batch, height, width, mode='elem')`'s pre-threshold
  noise, one image per draw (the only private access in this file)."""
  plan = plan_lib.plan(key, batch, mode="elem", pairing="flip", groups=1,
                      axis_name=None, invariant=False)
  return np.asarray(masks._fourier_noise(  # pylint: disable=protected-access
      plan, height, width, decay_power))


def _apply(p, x):
  return cj.apply_params(p, x)


# Enough draws for a smooth spectrum; small images keep the FFTs cheap.
B, H, W = 128, 20, 28


@pytest.mark.slow
@pytest.mark.parametrize("decay_power", [1.0, 2.0, 3.0])
def test_noise_power_falls_as_frequency_to_minus_twice_decay(decay_power):
  """The spectrum's amplitude is `1 / f^decay_power`, so the power falls as
  `f^(-2 decay_power)`, and the mask keeps the top-k pixels of that noise."""
  key = jax.random.key(0)
  noise = _noise(key, B, H, W, decay_power)
  power = (np.abs(np.fft.rfft2(noise)) ** 2).mean(0)
  fy, fx = np.fft.fftfreq(H)[:, None], np.fft.rfftfreq(W)[None, :]
  f = np.broadcast_to(np.hypot(fx, fy), power.shape)
  # Above the clamp at 1 / max(H, W), and off the real-FFT's own columns
  # (0 and Nyquist), whose imaginary parts the inverse FFT drops.
  fit = (f > 1 / max(H, W)) & (fx > 0) & (fx < 0.5)
  slope = np.polyfit(np.log(f[fit]), np.log(power[fit]), 1)[0]
  # A decay off by 0.5 moves the slope by 1; the fit is within 0.02.
  assert abs(slope + 2 * decay_power) < 0.1, slope

  p = cj.sample_fmix(key, B, H, W, decay_power=decay_power, mode="elem")
  mask = np.asarray(p.mask).reshape(B, -1)
  noise = noise.reshape(B, -1)
  active = np.asarray(p.op) == cj.Op.CUTMIX
  assert active.all()
  for i in range(B):
    kept, taken = noise[i][~mask[i]], noise[i][mask[i]]
    if kept.size and taken.size:
      assert kept.min() >= taken.max()


@pytest.mark.slow
@pytest.mark.parametrize("height,width", [(16, 16), (10, 12)])
@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_hard_masks_are_binary_and_lam_is_the_kept_fraction(height, width,
                                                             alpha):
  n = height * width
  p = cj.sample_fmix(jax.random.key(1), 64, height, width, alpha=alpha,
                     mode="elem", prob=0.75)
  assert p.mask.dtype == jnp.bool_
  mask, lam = np.asarray(p.mask), np.asarray(p.lam)
  kept = n - mask.sum((1, 2))
  # Documented exactly: kept * float32(1 / n), as `lam_from_box`.
  np.testing.assert_array_equal(lam, np.float32(kept) * np.float32(1 / n))
  if n & (n - 1) == 0:  # a power of two: the product is the exact quotient
    np.testing.assert_array_equal(lam, 1 - mask.mean((1, 2)))
  assert kept.max() == n and 0 < (kept < n).sum() < 64  # prob=0.75
  # Applying a hard mask is a select: each pixel is its own or its partner's.
  x = np.arange(64 * n * 2, dtype=np.float32).reshape(64, height, width, 2)
  out = np.asarray(_apply(p, x))
  partner = np.asarray(p.partner)
  np.testing.assert_array_equal(
      out, np.where(mask[..., None], x[partner], x))


def test_soft_mask_lam_is_one_minus_its_mean():
  """`max_soft > 0`: a float ramp, and λ = 1 - mean(mask) to the float32
  rounding of its closed-form sum."""
  p = cj.sample_fmix(jax.random.key(2), 64, 16, 16, mode="elem",
                     max_soft=0.2)
  mask = np.asarray(p.mask)
  assert p.mask.dtype == jnp.float32
  assert mask.min() == 0 and mask.max() == 1
  assert ((mask > 0) & (mask < 1)).any()
  want = 1 - mask.astype(np.float64).mean((1, 2))
  # An error of one ramp step would be 1 / (256 * (2s - 1)) >= 4e-5.
  np.testing.assert_allclose(p.lam, want, rtol=0, atol=2e-7)
