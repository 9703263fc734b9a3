"""The paper's algorithm in NumPy: what a user writes by hand.

One λ and one box per batch, a random permutation as the partner, and slice
assignment in place (`input[:, :, y1:y2, x1:x2] = input[perm, :, y1:y2,
x1:x2]` in the official PyTorch code, here in NHWC), with λ recomputed from
the clipped box (Yun et al., ICCV 2019, arXiv:1905.04899, Algorithm A1).
"""

from __future__ import annotations

import numpy as np


def rand_bbox(rng: np.random.Generator, height: int, width: int, lam: float):
  cut_rat = np.sqrt(1.0 - lam)
  cut_h = int(height * cut_rat)
  cut_w = int(width * cut_rat)
  cy = rng.integers(height)
  cx = rng.integers(width)
  top = int(np.clip(cy - cut_h // 2, 0, height))
  bottom = int(np.clip(cy + cut_h // 2, 0, height))
  left = int(np.clip(cx - cut_w // 2, 0, width))
  right = int(np.clip(cx + cut_w // 2, 0, width))
  return top, left, bottom, right


def cutmix_numpy(
    rng: np.random.Generator,
    images: np.ndarray,
    targets: np.ndarray,
    alpha: float = 1.0,
):
  """CutMix on an NHWC batch in place; returns `(images, mixed_targets)`."""
  batch, height, width = images.shape[:3]
  lam = rng.beta(alpha, alpha)
  perm = rng.permutation(batch)
  top, left, bottom, right = rand_bbox(rng, height, width, lam)
  images[:, top:bottom, left:right] = images[perm, top:bottom, left:right]
  lam = 1.0 - (bottom - top) * (right - left) / (height * width)
  return images, lam * targets + (1.0 - lam) * targets[perm]
