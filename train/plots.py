"""PNG outputs: learning curves and a grid of augmented training images."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # Files only; no display needed on servers or in CI.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np


def save_curves(records: list[dict], path: str) -> None:
  """Plots per-epoch train and test (or, with --val-split, validation) loss
  and accuracy against the epoch."""
  records = [r for r in records if "epoch" in r]
  split = "val" if any("val_loss" in r for r in records) else "test"
  epochs = [r["epoch"] for r in records]
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
  # Epochs that --eval-every skips have a train loss but no test figures.
  tested = [r for r in records if f"{split}_loss" in r]
  test_epochs = [r["epoch"] for r in tested]
  ax_loss.plot(epochs, [r["train_loss"] for r in records], label="train (mixed)")
  ax_loss.plot(test_epochs, [r[f"{split}_loss"] for r in tested], ".-",
               label=split)
  ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
  ax_loss.legend()
  ax_acc.plot(test_epochs, [r[f"{split}_accuracy"] for r in tested], ".-")
  ax_acc.set(xlabel="epoch", ylabel="accuracy",
             title=("Validation" if split == "val" else "Test") + " accuracy",
             ylim=(0, 1))
  for ax in (ax_loss, ax_acc):
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def save_batch_grid(
    images: np.ndarray,
    targets: np.ndarray,
    class_names: list[str],
    path: str,
    max_images: int = 32,
) -> None:
  """Saves augmented images with their two largest target weights as titles.

  Args:
    images: `[batch, height, width, channels]` in raw pixel units.
    targets: `[batch, num_classes]` soft targets.
    class_names: names for the titles.
    path: the PNG to write.
    max_images: how many images to show.
  """
  n = min(len(images), max_images)
  cols = 8
  rows = -(-n // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.5, rows * 1.7),
                           squeeze=False)
  lo, hi = images.min(), images.max()
  for i, ax in enumerate(axes.flat):
    ax.axis("off")
    if i >= n:
      continue
    image = (images[i] - lo) / max(hi - lo, 1e-6)
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image,
              cmap="gray", interpolation="nearest")
    top = np.argsort(targets[i])[::-1][:2]
    title = " ".join(f"{class_names[c]}:{targets[i, c]:.2f}" for c in top
                     if targets[i, c] > 0.005)
    ax.set_title(title, fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
