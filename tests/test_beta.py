"""Jöhnk's retry loop, forced: with one proposal per variate most variates
are drawn by the loop, and the result is still exactly Beta(α, α)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special
from scipy import stats

import cutmix_jax as cj
from cutmix_jax._src import beta

P_MIN = 1e-4


@pytest.mark.parametrize("alpha", [0.5, 0.2, 0.05])
@pytest.mark.parametrize("traced", [False, True])
def test_the_retry_loop_draws_exact_beta(alpha, traced, monkeypatch):
  monkeypatch.setattr(beta, "PROPOSALS", 1)
  n = 20000
  if traced:
    lam = jax.jit(lambda k, a: cj.sample_lam(k, a, (n,)))(
        jax.random.key(4), jnp.float32(alpha))
  else:
    lam = jax.jit(lambda k: cj.sample_lam(k, alpha, (n,)))(jax.random.key(4))
  lam = np.asarray(lam)
  assert ((lam >= 0) & (lam <= 1)).all()
  # Jöhnk accepts a proposal with probability Γ(α+1)² / Γ(2α+1): with one
  # proposal, that many variates (80 to 4,300 here) are drawn by the loop.
  accept = np.exp(2 * special.gammaln(alpha + 1) - special.gammaln(2 * alpha + 1))
  assert n * (1 - accept) > 50
  ref = np.random.default_rng(5).beta(alpha, alpha, n).astype(np.float32)
  ref[ref < np.finfo(np.float32).tiny] = 0
  p = stats.ks_2samp(lam, ref).pvalue
  assert p > P_MIN, f"alpha={alpha}: KS p={p:.2g}"

