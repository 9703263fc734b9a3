"""The one plan (`plan.py`): partners, draws per sample, the words each
sampler reads, and whether each draw applies."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cutmix_jax._src import plan as plan_lib

KEY = jax.random.key(3)


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


def test_applied_reads_the_apply_word_unless_prob_is_a_static_one():
  p = plan_lib.plan(KEY, 4000, mode="elem", pairing="flip", groups=1,
                    axis_name=None, invariant=False)
  words = plan_lib.read_words(p, {"apply": (0,)})
  # A static 1 reads no word and applies every draw.
  assert plan_lib.applied({}, 1.0, 7).tolist() == [True] * 7
  hits = np.asarray(plan_lib.applied(words, 0.3, p.num_draws))
  assert hits.dtype == bool and hits.shape == (4000,)
  assert abs(hits.mean() - 0.3) < 0.03
  # A traced prob compares the same word: the same draws apply.
  traced = jax.jit(lambda w, q: plan_lib.applied(w, q, p.num_draws))(
      words, jnp.float32(0.3))
  np.testing.assert_array_equal(traced, hits)
  assert np.asarray(jax.jit(lambda w, q: plan_lib.applied(
      w, q, p.num_draws))(words, jnp.float32(1.0))).all()
