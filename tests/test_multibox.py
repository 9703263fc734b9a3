"""Multi-box masks (French et al.): the aspect-ratio rules and one mask
proportion `p` per box, tested on fixed keys (deterministic) with enough
samples for KS tests."""

import jax
import numpy as np
from scipy import ndimage
from scipy import stats

import cutmix_jax as cj

H = W = 128  # large enough that rounding a side moves it by < 2%
P_LO, P_HI = 0.25, 0.5


def _one_box_sides(key, **options):
  """Height and width proportions of the single box of each mask."""
  p = cj.sample_multibox(key, 1000, H, W, mode="elem",
                         area_range=(P_LO, P_HI), **options)
  mask = np.asarray(p.mask)
  rows, cols = mask.any(2).sum(1), mask.any(1).sum(1)
  assert (mask.sum((1, 2)) == rows * cols).all()  # one solid rectangle
  return rows / H, cols / W


def _check_uniform(values, lo, hi):
  result = stats.kstest(values, stats.uniform(lo, hi - lo).cdf)
  assert result.pvalue > 0.01, result


def test_default_aspect_rule_is_french_et_al():
  """Height proportion `p^u`, width `p^(1 - u)`: the area is `p` ~ U(lo,
  hi) and `u = log(h) / log(p)` ~ U(0, 1)."""
  h, w = _one_box_sides(jax.random.key(0))
  _check_uniform(h * w, P_LO, P_HI)
  _check_uniform(np.log(h) / np.log(h * w), 0, 1)


def test_aspect_range_is_log_uniform():
  lo, hi = 0.5, 2.0
  h, w = _one_box_sides(jax.random.key(1), aspect_range=(lo, hi))
  _check_uniform(h * w, P_LO, P_HI)
  # Uniform a (not its log) would put a third, not half, below a = 1.
  _check_uniform(np.log(h / w), np.log(lo), np.log(hi))


def test_each_box_draws_its_own_proportion():
  """With two boxes, each has area `p_k / 2` for independent p_k ~ U(lo,
  hi), read from the masks whose two boxes neither touch nor overlap."""
  lo, hi = 0.02, 0.1
  p = cj.sample_multibox(jax.random.key(2), 2000, H, W, mode="elem",
                         n_boxes=2, area_range=(lo, hi))
  areas = []
  for mask in np.asarray(p.mask):
    labels, count = ndimage.label(mask)
    if count != 2:
      continue
    boxes = [labels[s] == k + 1 for k, s in
             enumerate(ndimage.find_objects(labels))]
    if all(b.all() for b in boxes):
      areas.append([2 * b.sum() / (H * W) for b in boxes])
  areas = np.asarray(areas)
  assert len(areas) > 1000
  _check_uniform(areas.ravel(), lo, hi)
  # One p per draw would give both boxes the same area: r close to 1.
  assert abs(np.corrcoef(areas.T)[0, 1]) < 0.15
