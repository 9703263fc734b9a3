"""The exact box rules the docstrings state: Cutout's box for odd and even
sizes, and `minmax`'s inclusive bounds. Over thousands of samples on a fixed
key every allowed box occurs, so the sets of boxes must match exactly."""

import collections

import jax
import numpy as np
import pytest

import cutmix_jax as cj

N = 4000


@pytest.mark.parametrize("size", [(3, 4), (5, 1), (1, 6), (9, 7)])
def test_cutout_box_is_centre_minus_half_size_clipped(size):
  height, width = 9, 7
  p = cj.sample_cutout(jax.random.key(0), N, height, width, size=size,
                       mode="elem")
  box = np.asarray(p.box)
  for axis, (side, s) in enumerate(((height, size[0]), (width, size[1]))):
    # Rows c - s // 2 .. c - s // 2 + s (excluded), c uniform, clipped.
    allowed = collections.Counter(
        (min(max(c - s // 2, 0), side), min(max(c - s // 2 + s, 0), side))
        for c in range(side))
    seen = collections.Counter(zip(box[:, axis], box[:, axis + 2]))
    assert set(seen) == set(allowed)
    # Each centre is equally likely: a span's count follows its centres.
    for span, centres in allowed.items():
      assert abs(seen[span] / N - centres / side) < 0.03, span


@pytest.mark.parametrize("minmax", [(0.2, 0.5), (0.3, 1.0), (0.4, 0.4)])
def test_minmax_sides_and_positions_include_their_upper_bounds(minmax):
  height, width = 10, 13
  p = cj.sample_cutmix(jax.random.key(1), N, height, width, minmax=minmax,
                       mode="elem")
  box = np.asarray(p.box)
  for axis, side in enumerate((height, width)):
    lo, hi = int(side * minmax[0]), int(side * minmax[1])
    cut = box[:, axis + 2] - box[:, axis]
    assert set(cut) == set(range(lo, hi + 1))  # hi included
    for c in set(cut):
      # Inside the image, flush with the far edge included.
      assert set(box[cut == c, axis]) == set(range(side - c + 1))
