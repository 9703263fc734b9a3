"""Exact Beta(α, α): every path (uniform, Ulrich, Jöhnk) against NumPy's
sampler, and Jöhnk's retry loop forced so that most variates go through it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special
from scipy import stats

import cutmix_jax as cj
from cutmix_jax._src import beta

P_MIN = 1e-3


def _lam(alpha, traced, n, seed):
  if traced:
    lam = jax.jit(lambda k, a: cj.sample_lam(k, a, (n,)))(
        jax.random.key(seed), jnp.float32(alpha))
  else:
    lam = jax.jit(lambda k: cj.sample_lam(k, alpha, (n,)))(jax.random.key(seed))
  lam = np.asarray(lam)
  assert lam.dtype == np.float32 and ((lam >= 0) & (lam <= 1)).all()
  return lam


def _assert_beta(lam, alpha, seed):
  # numpy's sampler rounded to float32 as XLA stores it (denormals flushed):
  # scipy's Beta CDF is itself inaccurate for α below ~0.2.
  ref = np.random.default_rng(seed).beta(alpha, alpha, len(lam))
  ref = ref.astype(np.float32)
  ref[ref < np.finfo(np.float32).tiny] = 0
  p = stats.ks_2samp(lam, ref).pvalue
  assert p > P_MIN, f"alpha={alpha}: KS p={p:.2g}"


@pytest.mark.quick_every(2)
@pytest.mark.parametrize("alpha", [0.05, 0.2, 0.5, 0.7, 1.0, 2.0, 8.0])
@pytest.mark.parametrize("traced", [False, True])
def test_lam_is_an_exact_beta_draw(alpha, traced):
  lam = _lam(alpha, traced, 50000, seed=1)
  _assert_beta(lam, alpha, seed=2)
  np.testing.assert_allclose(lam.var(), 1 / (4 * (2 * alpha + 1)), rtol=0.05)


@pytest.mark.quick_every(2)
@pytest.mark.parametrize("alpha", [0.5, 0.2, 0.05])
@pytest.mark.parametrize("traced", [False, True])
def test_the_retry_loop_draws_exact_beta(alpha, traced, monkeypatch):
  monkeypatch.setattr(beta, "PROPOSALS", 1)
  n = 20000
  # Jöhnk accepts a proposal with probability Γ(α+1)² / Γ(2α+1): with one
  # proposal, that many variates (80 to 4,300 here) are drawn by the loop.
  accept = np.exp(2 * special.gammaln(alpha + 1) - special.gammaln(2 * alpha + 1))
  assert n * (1 - accept) > 50
  _assert_beta(_lam(alpha, traced, n, seed=4), alpha, seed=5)


@pytest.mark.parametrize("sampler", ["lam", "cutmix", "mixup", "fmix",
                                     "cuboid", "pair"])
def test_a_traced_alpha_outside_the_domain_gives_nan(sampler):
  """α = 0, α < 0 and NaN, traced, give NaN λ, and return: Jöhnk's retry
  loop never accepts a proposal for α < 0 or NaN, so it must not run."""
  key = jax.random.key(0)
  draw = {
      "lam": lambda a: cj.sample_lam(key, a, (3,)),
      "cutmix": lambda a: cj.sample_cutmix(key, 4, 8, 8, alpha=a,
                                           mode="elem").lam,
      "mixup": lambda a: cj.sample_mixup(key, 4, alpha=a, mode="elem").lam,
      "fmix": lambda a: cj.sample_fmix(key, 4, 8, 8, alpha=a,
                                       mode="elem").lam,
      "cuboid": lambda a: cj.sample_cutmix_cuboid(key, 4, 2, 8, 8, alpha=a,
                                                  mode="elem").lam,
      "pair": lambda a: cj.cutmix_pair(key, jnp.zeros((8, 8, 3)),
                                       jnp.ones((8, 8, 3)), alpha=a)[1],
  }[sampler]
  alphas = jnp.array([0.0, -1.0, np.nan], jnp.float32)
  lam = np.asarray(jax.jit(jax.vmap(draw))(alphas))
  assert np.isnan(lam).all(), lam
