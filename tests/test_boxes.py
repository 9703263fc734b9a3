"""The box rules (`boxes.py`): against the paper's sampler, and the mask.

All KS tests use fixed seeds, so they are deterministic; the thresholds are
loose enough that a correct sampler passes with any seed.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import cutmix_jax as cj
from cutmix_jax._src import boxes

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

def assert_same_box_law(ours, ref):
  """KS tests of `[n, 4]` boxes against the reference's: area, sides, and
  two edges."""
  for name, a, b in [
      ("pasted area", cj.box_area(ours), cj.box_area(ref)),
      ("box height", ours[:, 2] - ours[:, 0], ref[:, 2] - ref[:, 0]),
      ("box width", ours[:, 3] - ours[:, 1], ref[:, 3] - ref[:, 1]),
      ("top", ours[:, 0], ref[:, 0]),
      ("right", ours[:, 3], ref[:, 3]),
  ]:
    p = stats.ks_2samp(np.asarray(a), np.asarray(b)).pvalue
    assert p > P_MIN, f"{name}: KS p={p:.2g}"


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
  assert_same_box_law(ours, ref)
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


def test_minmax_box_sides_are_uniform_in_range():
  boxes, lam = draw_boxes(4000, 20, 30, minmax=(0.2, 0.6))
  heights, widths = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
  assert set(heights.tolist()) == set(range(4, 13))
  assert set(widths.tolist()) == set(range(6, 19))
  np.testing.assert_allclose(lam, 1 - heights * widths / 600, atol=1e-6)


def test_the_image_path_mask_is_the_broadcast_box_mask():
  box = jnp.array([[1, 2, 4, 7], [0, 0, 5, 8], [3, 3, 3, 6], [2, 5, 9, 1]])
  want = np.asarray(cj.box_mask(box, 5, 8))
  # [batch, channels-first, H, W] and a folded [batch, 1, H, W * 3] view.
  got = boxes.broadcast_mask(box, (4, 2, 5, 8), 2)
  np.testing.assert_array_equal(np.broadcast_to(got, (4, 2, 5, 8)),
                                np.repeat(want[:, None], 2, 1))
  folded = boxes.broadcast_mask(box, (4, 1, 5, 24), 2, col_scale=3)
  np.testing.assert_array_equal(np.broadcast_to(folded, (4, 1, 5, 24))[:, 0],
                                np.repeat(want, 3, axis=2))
  # Leading axes of any rank, as the multi-box masks use.
  np.testing.assert_array_equal(cj.box_mask(box.reshape(2, 2, 4), 5, 8),
                                want.reshape(2, 2, 5, 8))


def test_box_area_counts_pixels_and_measures_float_boxes():
  assert cj.box_area(jnp.array([[1, 0, 3, 2], [2, 2, 1, 5]])).tolist() == [4, 0]
  area = cj.box_area(jnp.array([0.5, 1.0, 2.0, 3.5]))
  assert area.dtype == jnp.float32 and float(area) == 3.75
