"""Draws real images before and after CutMix, MixUp and Cutout.

    python docs/figure.py [--zip ../shared/data/cifar10-jpg.zip] [--out docs/augmentations.png]

Uses eight CIFAR-10 test images read straight from the zip when it is there,
else scikit-learn's bundled digits. Every row is one call of the library with
the same key, so the boxes and partners shown are exactly what a train step
would see.
"""

from __future__ import annotations

import argparse
import io
import os
import zipfile

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

import cutmix_jax  # pylint: disable=g-import-not-at-top

DEFAULT_ZIP = os.path.join(
    os.path.dirname(__file__), "..", "..", "shared", "data", "cifar10-jpg.zip"
)


def cifar_images(path: str, count: int = 8):
  """The first test image of `count` different classes, as uint8 NHWC."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  images, names = [], []
  with zipfile.ZipFile(path) as archive:
    for name in sorted(archive.namelist()):
      parts = name.split("/")
      if len(parts) == 4 and parts[1] == "test" and parts[3].endswith(".jpg"):
        if parts[2] in names:
          continue
        with archive.open(name) as f:
          images.append(np.asarray(Image.open(io.BytesIO(f.read())).convert("RGB")))
        names.append(parts[2])
        if len(names) == count:
          break
  return np.stack(images), names


def digit_images(count: int = 8):
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top

  digits = load_digits()
  picks = [int(np.flatnonzero(digits.target == c)[0]) for c in range(count)]
  images = (digits.images[picks] * (255 / 16)).astype(np.uint8)
  return np.repeat(images[..., None], 3, axis=-1), [str(c) for c in range(count)]


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--zip", default=DEFAULT_ZIP,
                      help="CIFAR-10 JPEG zip (cifar10/test/<class>/*.jpg)")
  parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__),
                                                    "augmentations.png"))
  parser.add_argument("--seed", type=int, default=3)
  args = parser.parse_args(argv)

  if os.path.exists(args.zip):
    images, names = cifar_images(args.zip)
  else:
    images, names = digit_images()
  labels = jnp.arange(len(names))
  key = jax.random.key(args.seed)
  k = len(names)
  rows = [
      ("original", images, np.eye(k)),
      ("CutMix", *cutmix_jax.cutmix(key, images, labels, num_classes=k,
                                    mode="elem")),
      ("MixUp", *cutmix_jax.mixup(key, images, labels, num_classes=k,
                                  mode="elem", alpha=1.0)),
      ("Cutout", cutmix_jax.cutout(key, images, fill_value=127), np.eye(k)),
  ]
  fig, axes = plt.subplots(len(rows), k, figsize=(1.6 * k, 1.9 * len(rows)))
  for r, (title, batch, targets) in enumerate(rows):
    batch, targets = np.asarray(batch), np.asarray(targets)
    for i in range(k):
      ax = axes[r, i]
      ax.imshow(batch[i], interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      top = np.argsort(targets[i])[::-1][:2]
      ax.set_title(" ".join(f"{names[c]} {targets[i, c]:.2f}" for c in top
                            if targets[i, c] > 0.005), fontsize=7)
    axes[r, 0].set_ylabel(title, fontsize=10)
  fig.suptitle("cutmix_jax, mode='elem' (pairs: i with 7 - i); titles are "
               "the label weights", fontsize=9)
  fig.tight_layout()
  fig.savefig(args.out, dpi=110)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
