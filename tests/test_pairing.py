"""Pairing: the one plan (`plan.py`: partners, draws per sample) and
`partner_rows` (`pairing.py`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cutmix_jax as cj
from cutmix_jax._src import plan as plan_lib

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


@pytest.mark.parametrize("pairing_rule", ["flip", "permute"])
def test_pair_mode_shares_one_draw_per_pair(pairing_rule):
  plan = plan_lib.plan(KEY, 10, mode="pair", pairing=pairing_rule, groups=1,
                      axis_name=None, invariant=False)
  partner, draw = np.asarray(plan.partner), np.asarray(plan.draw)
  np.testing.assert_array_equal(partner[partner], np.arange(10))  # mutual
  np.testing.assert_array_equal(draw[partner], draw)
  assert sorted(set(draw.tolist())) == list(range(plan.num_draws))


def test_draw_marks_self_pairs_and_unapplied_draws_inactive():
  # An odd batch's middle sample is its own partner under 'flip'.
  plan, active, words = plan_lib.draw(
      KEY, 5, mode="elem", pairing="flip", groups=1, prob=1.0,
      axis_name=None, parts={"box": (0, 1)})
  assert words["box"].shape == (2, 5) and words["box"].dtype == jnp.uint32
  np.testing.assert_array_equal(active, [True, True, False, True, True])
  _, never, _ = plan_lib.draw(KEY, 4, mode="elem", pairing="flip", groups=1,
                             prob=0.0, axis_name=None)
  assert not np.asarray(never).any()
