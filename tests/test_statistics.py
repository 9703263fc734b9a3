"""The sampler against the paper's: λ's law, box sides, pasted fractions.

All KS tests use fixed seeds, so they are deterministic; the thresholds are
loose enough that a correct sampler passes with any seed.
"""

import jax
import numpy as np
import pytest
from scipy import stats

import cutmix_jax as cj

P_MIN = 1e-3


def official_boxes(rng, n, height, width, alpha=1.0):
  """NumPy transcription of the official `rand_bbox` with the λ correction.

  H and W are the right way round (the official code swaps them, which only
  goes unnoticed on square images).
  """
  lam = rng.beta(alpha, alpha, n)
  ratio = np.sqrt(1.0 - lam)
  cut_h = (height * ratio).astype(int)
  cut_w = (width * ratio).astype(int)
  cy = rng.integers(0, height, n)
  cx = rng.integers(0, width, n)
  top = np.clip(cy - cut_h // 2, 0, height)
  bottom = np.clip(cy + cut_h // 2, 0, height)
  left = np.clip(cx - cut_w // 2, 0, width)
  right = np.clip(cx + cut_w // 2, 0, width)
  return np.stack([top, left, bottom, right], -1)


def draw_boxes(n, height, width, seed=0, **kwargs):
  params = jax.jit(
      lambda k: cj.sample_cutmix(k, n, height, width, mode="elem",
                                 pairing="permute", **kwargs)
  )(jax.random.key(seed))
  # 'permute' pairs few samples with themselves; drop those (no box drawn).
  mixed = np.asarray(params.op) == cj.Op.CUTMIX
  return np.asarray(params.box)[mixed], np.asarray(params.lam)[mixed]


@pytest.mark.parametrize("height,width", [(32, 32), (24, 40)])
def test_boxes_match_the_official_sampler(height, width):
  n = 20000
  ours, lam = draw_boxes(n, height, width)
  ref = official_boxes(np.random.default_rng(0), n, height, width)
  for name, a, b in [
      ("pasted fraction", cj.box_area(ours) / (height * width),
       cj.box_area(ref) / (height * width)),
      ("box height", ours[:, 2] - ours[:, 0], ref[:, 2] - ref[:, 0]),
      ("box width", ours[:, 3] - ours[:, 1], ref[:, 3] - ref[:, 1]),
      ("top", ours[:, 0], ref[:, 0]),
      ("right", ours[:, 3], ref[:, 3]),
  ]:
    p = stats.ks_2samp(np.asarray(a), np.asarray(b)).pvalue
    assert p > P_MIN, f"{name}: KS p={p:.2g}"
  np.testing.assert_allclose(
      lam, 1 - cj.box_area(ours) / (height * width), atol=1e-6
  )


def test_swapped_height_and_width_would_be_detected():
  """The KS test above has the power to see the official H/W swap."""
  n = 20000
  ours, _ = draw_boxes(n, 24, 40)
  swapped = official_boxes(np.random.default_rng(0), n, 40, 24)
  assert stats.ks_2samp(ours[:, 2] - ours[:, 0],
                        np.minimum(swapped[:, 2] - swapped[:, 0], 24)).pvalue < 1e-6


def test_boxes_reach_every_edge():
  boxes, _ = draw_boxes(5000, 7, 9, alpha=0.5)
  assert (boxes[:, 0] == 0).any() and (boxes[:, 1] == 0).any()
  assert (boxes[:, 2] == 7).any() and (boxes[:, 3] == 9).any()
  # Centres cover the last row and column: a box of one pixel can sit there.
  small = (boxes[:, 2] - boxes[:, 0] <= 2) & (boxes[:, 2] == 7)
  assert small.any()


def test_inside_placement_keeps_the_whole_box():
  boxes, lam = draw_boxes(5000, 10, 14, placement="inside")
  assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 10).all()
  assert (boxes[:, 3] <= 14).all()
  # Every position where the box fits is used, the last ones included.
  assert (boxes[:, 2] == 10).any() and (boxes[:, 3] == 14).any()
  # Sides are exactly floor(side * sqrt(1 - λ_drawn)), never clipped: the
  # area law is that of the unclipped official box.
  ref = np.random.default_rng(1).beta(1, 1, 5000)
  ref_area = np.floor(10 * np.sqrt(1 - ref)) * np.floor(14 * np.sqrt(1 - ref))
  assert stats.ks_2samp(cj.box_area(boxes), ref_area).pvalue > P_MIN
  np.testing.assert_allclose(lam, 1 - cj.box_area(boxes) / 140, atol=1e-6)


def test_a_traced_nonpositive_alpha_gives_nan():
  lam = jax.jit(lambda a: cj.sample_lam(jax.random.key(0), a, (3,)))(0.0)
  assert np.isnan(np.asarray(lam)).all()


def test_minmax_box_sides_are_uniform_in_range():
  boxes, lam = draw_boxes(4000, 20, 30, minmax=(0.2, 0.6))
  heights, widths = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
  assert set(heights.tolist()) == set(range(4, 13))
  assert set(widths.tolist()) == set(range(6, 19))
  np.testing.assert_allclose(lam, 1 - heights * widths / 600, atol=1e-6)


def test_mix_switch_probability():
  params = jax.jit(lambda k: cj.sample_mix(k, 20000, 8, 8, mode="elem",
                                           switch_prob=0.3))(jax.random.key(0))
  ops = np.asarray(params.op)
  mixed = ops != cj.Op.NONE
  assert abs((ops[mixed] == cj.Op.CUTMIX).mean() - 0.3) < 0.02
