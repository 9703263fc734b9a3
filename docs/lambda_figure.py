"""Draws what each op does to one real CIFAR-10 image at three values of λ.

    python docs/lambda_figure.py [--zip ../shared/data/cifar10-jpg.zip] [--out docs/lambdas.png]

Reads two CIFAR-10 test images (a cat and a ship) straight from the zip. Each
op's draw comes from its own sampler; only its λ is then set to 0.8, 0.5 and
0.2 (with the box drawn for that λ by `sample_box`, and λ recomputed from the
box by `lam_from_box`, as the samplers do), so every image shown is exactly
what `apply_params` makes of such a draw. Without the zip it prints a message
and exits 0 without writing anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import sys
import zipfile

import jax
import jax.numpy as jnp
import numpy as np

import cutmix_jax

DEFAULT_ZIP = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
    "cifar10-jpg.zip")
LAMS = (0.8, 0.5, 0.2)


def first_test_image(archive: zipfile.ZipFile, label: str) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top

  for name in sorted(archive.namelist()):
    parts = name.split("/")
    if (len(parts) == 4 and parts[1] == "test" and parts[2] == label
        and parts[3].endswith(".jpg")):
      with archive.open(name) as f:
        return np.asarray(Image.open(io.BytesIO(f.read())).convert("RGB"))
  raise ValueError(f"no test image of class {label!r} in the zip")


def at_lam(params, lam: float, key):
  """`params` with sample 0's λ set to `lam` (and its box drawn for it)."""
  h, w = params.height, params.width
  if params.method == "mixup":
    return dataclasses.replace(params, lam=jnp.full_like(params.lam, lam))
  box = cutmix_jax.sample_box(key, jnp.float32(lam), h, w, placement="inside")
  boxes = jnp.broadcast_to(box, params.box.shape)
  kept = cutmix_jax.lam_from_box(boxes, h, w)
  new_lam = jnp.ones_like(kept) if params.method == "cutout" else kept
  return dataclasses.replace(params, box=boxes, lam=new_lam)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--zip", default=DEFAULT_ZIP,
                      help="CIFAR-10 JPEG zip (cifar10/test/<class>/*.jpg)")
  parser.add_argument("--out", default=os.path.join(
      os.path.dirname(os.path.abspath(__file__)), "lambdas.png"))
  args = parser.parse_args(argv)
  if not os.path.exists(args.zip):
    print(f"{args.zip} not found: no CIFAR-10 images, nothing drawn.")
    return 0

  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  with zipfile.ZipFile(args.zip) as archive:
    images = np.stack([first_test_image(archive, "cat"),
                       first_test_image(archive, "ship")])
  labels = jnp.array([0, 1])  # cat, ship
  key = jax.random.key(0)
  h, w = images.shape[1:3]
  samplers = [
      ("CutMix", cutmix_jax.sample_cutmix(key, 2, h, w, mode="elem")),
      ("MixUp", cutmix_jax.sample_mixup(key, 2, mode="elem")),
      ("Cutout", cutmix_jax.sample_cutout(key, 2, h, w, mode="elem")),
      ("ResizeMix", cutmix_jax.sample_resizemix(key, 2, h, w, mode="elem")),
  ]
  fig, axes = plt.subplots(len(samplers), len(LAMS) + 2,
                           figsize=(1.75 * (len(LAMS) + 2), 1.95 * len(samplers)))
  for r, (name, params) in enumerate(samplers):
    for c, title in enumerate(("cat (own)", "ship (partner)")):
      axes[r, c].imshow(images[c])
      axes[r, c].set_title(title, fontsize=8)
    for c, lam in enumerate(LAMS):
      drawn = at_lam(params, lam, jax.random.fold_in(key, c))
      out = np.asarray(cutmix_jax.apply_params(drawn, images, fill_value=127))
      targets = np.asarray(cutmix_jax.mix_labels(drawn, labels, num_classes=2))
      ax = axes[r, c + 2]
      ax.imshow(out[0])
      ax.set_title(f"λ={lam}: cat {targets[0, 0]:.3f}\nship {targets[0, 1]:.3f}",
                   fontsize=8)
    axes[r, 0].set_ylabel(name, fontsize=10)
  for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle("One CIFAR-10 test image under each op at λ = 0.8, 0.5, 0.2; "
               "titles: the label weights mix_labels returns", fontsize=8)
  fig.tight_layout()
  fig.savefig(args.out, dpi=110)
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
