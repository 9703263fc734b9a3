"""`partner_rows` (`pairing.py`): each sample's partner's rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cutmix_jax as cj

KEY = jax.random.key(3)


@pytest.mark.parametrize("pairing_rule,groups", [
    ("flip", 1), ("flip", 3), ("roll", 1), ("roll", 2), ("permute", 3)])
def test_partner_rows_is_the_gather_by_partner(pairing_rule, groups):
  p = cj.sample_mixup(KEY, 12, mode="elem", pairing=pairing_rule,
                      groups=groups)
  partner = np.asarray(p.partner)
  # Pairing stays inside each group.
  np.testing.assert_array_equal(partner // (12 // groups),
                                np.arange(12) // (12 // groups))
  x = jnp.arange(12 * 5).reshape(12, 5)
  np.testing.assert_array_equal(cj.partner_rows(p, x), np.asarray(x)[partner])
