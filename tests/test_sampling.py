"""The samplers (`sampling.py`): pairing, modes, groups and `prob`."""

import jax
import numpy as np
import pytest

import cutmix_jax as cj

MODES = ["batch", "pair", "elem"]


@pytest.mark.parametrize("mode", MODES)
def test_pair_mode_partners_share_a_draw(mode):
  params = cj.sample_cutmix(jax.random.key(3), 9, 16, 20, mode=mode)
  partner = np.asarray(params.partner)
  np.testing.assert_array_equal(partner, np.arange(9)[::-1])
  lam, box = np.asarray(params.lam), np.asarray(params.box)
  if mode == "elem":
    assert len(set(lam.tolist())) > 1
  else:
    np.testing.assert_array_equal(lam, lam[partner])
    np.testing.assert_array_equal(box, box[partner])
  if mode == "batch":
    mixed = partner != np.arange(9)
    assert len(set(lam[mixed].tolist())) == 1
  # The odd batch's middle sample is paired with itself and left unmixed.
  assert lam[4] == 1.0 and params.op[4] == cj.Op.NONE


def test_pair_mode_with_permutation_is_an_involution():
  params = cj.sample_cutmix(jax.random.key(5), 11, 8, 8, mode="pair", pairing="permute")
  partner = np.asarray(params.partner)
  np.testing.assert_array_equal(partner[partner], np.arange(11))
  assert (partner == np.arange(11)).sum() == 1  # odd batch: one self-pair
  np.testing.assert_array_equal(np.asarray(params.lam), np.asarray(params.lam)[partner])


@pytest.mark.parametrize("pairing,expected", [
    ("flip", [5, 4, 3, 2, 1, 0]), ("roll", [2, 0, 1, 5, 3, 4])])
def test_groups_keep_pairs_inside_blocks(pairing, expected):
  params = cj.sample_cutmix(jax.random.key(0), 6, 4, 4, pairing=pairing, groups=2 if pairing == "roll" else 1)
  np.testing.assert_array_equal(np.asarray(params.partner), expected)
  params = cj.sample_cutmix(jax.random.key(0), 8, 4, 4, pairing="permute", groups=4)
  partner = np.asarray(params.partner)
  np.testing.assert_array_equal(partner // 2, np.arange(8) // 2)


def test_prob_is_applied_once_per_batch():
  key = jax.random.key(0)
  x = np.random.default_rng(0).normal(size=(6, 8, 8, 3)).astype(np.float32)
  outcomes = []
  for i in range(40):
    params = cj.sample_cutmix(jax.random.fold_in(key, i), 6, 8, 8, prob=0.5)
    ops = np.asarray(params.op)
    assert len(set(ops.tolist())) == 1
    outcomes.append(ops[0])
  # Half of the batches mixed, in expectation; both outcomes occur.
  assert 8 < sum(o == cj.Op.CUTMIX for o in outcomes) < 32
  params = cj.sample_cutmix(key, 6, 8, 8, prob=0.0)
  np.testing.assert_array_equal(cj.apply_params(params, x), x)
  np.testing.assert_array_equal(np.asarray(params.lam), 1.0)


def test_prob_is_applied_once_per_sample_in_elem_mode():
  params = cj.sample_cutmix(jax.random.key(1), 4000, 8, 8, prob=0.3, mode="elem")
  applied = np.asarray(params.op) == cj.Op.CUTMIX
  assert abs(applied.mean() - 0.3) < 0.03
  lam = np.asarray(params.lam)
  np.testing.assert_array_equal(lam[~applied], 1.0)
  np.testing.assert_array_equal(np.asarray(params.box)[~applied], 0)
