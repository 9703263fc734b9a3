"""Draws one CutMix draw applied to images, segmentation maps and boxes.

    python docs/dense_figure.py [--out docs/dense_targets.png] [--seed 16]

The scenes are synthetic (squares, discs and bars on striped backgrounds), so
the script needs no data. One `sample_cutmix` draw goes through `apply_tree`
(the float images are pasted, the int32 maps selected) and `mix_boxes`, so the
box that cuts each image is exactly the box that cuts its map and its boxes.
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
from matplotlib import colors  # pylint: disable=g-import-not-at-top
from matplotlib import patches  # pylint: disable=g-import-not-at-top
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

import cutmix_jax  # pylint: disable=g-import-not-at-top

SIZE = 64
CLASSES = ("background", "square", "disc", "bar")
# One fixed colour per class id, shared by the maps and the box outlines.
CLASS_COLOURS = ("#2b2b2b", "#e6194b", "#3cb44b", "#4363d8")
SEG_STYLE = dict(cmap=colors.ListedColormap(CLASS_COLOURS), vmin=0,
                 vmax=len(CLASSES) - 1, interpolation="nearest")


def shape_mask(kind: int, top: int, left: int, side: int) -> np.ndarray:
  rows, cols = np.mgrid[:SIZE, :SIZE]
  if kind == 2:  # disc of diameter `side`
    r = side / 2
    return (rows + 0.5 - top - r) ** 2 + (cols + 0.5 - left - r) ** 2 <= r * r
  height = side if kind == 1 else side // 3  # a bar is a flat rectangle
  return ((rows >= top) & (rows < top + height)
          & (cols >= left) & (cols < left + side))


def scenes(batch: int = 4, max_boxes: int = 4, seed: int = 0):
  """Images, int32 maps `[b, H, W]` and padded boxes, valid mask, classes."""
  rng = np.random.default_rng(seed)
  rows, cols = np.mgrid[:SIZE, :SIZE]
  images = np.zeros((batch, SIZE, SIZE, 3), np.float32)
  seg = np.zeros((batch, SIZE, SIZE), np.int32)
  boxes = np.zeros((batch, max_boxes, 4), np.float32)
  classes = np.zeros((batch, max_boxes), np.int32)
  valid = np.zeros((batch, max_boxes), bool)
  for b in range(batch):
    # A distinct hue and stripe angle per image, so pasted pixels stand out.
    hue = rng.uniform(0.3, 0.9, 3)
    stripes = 0.5 + 0.5 * np.sin((rows * np.cos(b) + cols * np.sin(b)) / 2.5)
    images[b] = hue * (0.45 + 0.25 * stripes[..., None])
    for n in range(rng.integers(2, max_boxes)):  # the last slot stays padding
      kind, side = (b + n) % 3 + 1, int(rng.integers(14, 26))
      for _ in range(100):  # apart, so each box is one whole, unoccluded shape
        mask = shape_mask(kind, *rng.integers(0, SIZE - side, 2), side)
        ys, xs = np.nonzero(mask)
        if not seg[b, max(ys.min() - 3, 0):ys.max() + 4,
                   max(xs.min() - 3, 0):xs.max() + 4].any():
          break
      seg[b][mask] = kind
      # A light, jittered tint of the class colour: the box outline stays
      # visible on the shape's edge and the image still reads like its map.
      tint = colors.to_rgb(CLASS_COLOURS[kind])
      images[b][mask] = 0.6 * np.array(tint) + rng.uniform(0.2, 0.4)
      # Pixel-edge (top, left, bottom, right), half-open: the pixels' extent.
      boxes[b, n] = ys.min(), xs.min(), ys.max() + 1, xs.max() + 1
      classes[b, n], valid[b, n] = kind, True
  return images, seg, boxes, classes, valid


def draw_boxes(ax, boxes, classes, valid, dashed=None):
  """Outlines the valid boxes in their class colour; `dashed` marks some."""
  for i in np.flatnonzero(valid):
    top, left, bottom, right = boxes[i]
    ax.add_patch(patches.Rectangle(
        (left - 0.5, top - 0.5), right - left, bottom - top, fill=False,
        lw=1.6, ec=CLASS_COLOURS[classes[i]],
        ls=(0, (3, 2)) if dashed is not None and dashed[i] else "-"))


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__),
                                                    "dense_targets.png"))
  parser.add_argument("--seed", type=int, default=16)
  args = parser.parse_args(argv)

  images, seg, boxes, classes, valid = scenes()
  params = cutmix_jax.sample_cutmix(jax.random.key(args.seed), len(images),
                                    SIZE, SIZE, mode="elem")
  mixed = cutmix_jax.apply_tree(params, {"image": jnp.asarray(images),
                                         "seg": jnp.asarray(seg)})
  # Twice the input capacity never drops a box, so the counts shown are exact.
  out = cutmix_jax.mix_boxes(params, boxes, classes, valid, min_visible=0.3,
                             max_boxes=2 * boxes.shape[1])
  mixed, out, params = jax.tree.map(np.asarray, (mixed, out, params))

  shown = (0, 1, 2)  # 1 and 2 are partners under 'flip'; 0 pastes from 3
  fig, axes = plt.subplots(len(shown), 4, figsize=(8.4, 2.45 * len(shown)))
  for row, i in zip(axes, shown):
    j, lam = params.partner[i], params.lam[i]
    kept = out.valid[i] & ~out.from_partner[i]
    gained = out.valid[i] & out.from_partner[i]
    row[0].imshow(images[i])
    draw_boxes(row[0], boxes[i], classes[i], valid[i])
    row[0].set_title(f"sample {i}: image, boxes", fontsize=8)
    row[1].imshow(seg[i], **SEG_STYLE)
    row[1].set_title(f"sample {i}: seg map", fontsize=8)
    row[2].imshow(mixed["image"][i])
    draw_boxes(row[2], out.boxes[i], out.classes[i], out.valid[i],
               dashed=out.from_partner[i])
    top, left, bottom, right = params.box[i]
    row[2].add_patch(patches.Rectangle(
        (left - 0.5, top - 0.5), right - left, bottom - top, fill=False,
        lw=1.8, ec="white", ls=(0, (2, 2))))
    row[2].set_title(f"from {j}: kept {kept.sum()}/{valid[i].sum()} own, "
                     f"gained {gained.sum()}", fontsize=8)
    row[3].imshow(mixed["seg"][i], **SEG_STYLE)
    row[3].set_title(f"mixed seg map; \u03bb = {lam:.3f}", fontsize=8)
    for ax in row:
      ax.set_xticks([])
      ax.set_yticks([])
  fig.legend(handles=[patches.Patch(color=c, label=f"{k} {name}")
                      for k, (name, c) in enumerate(zip(CLASSES, CLASS_COLOURS))]
             + [patches.Patch(fill=False, ec="grey", ls=(0, (2, 2)),
                              label="pasted box (white)")],
             loc="lower center", ncol=5, fontsize=7, frameon=False)
  fig.suptitle("one sample_cutmix draw (mode='elem') through apply_tree and "
               "mix_boxes(min_visible=0.3); dashed boxes came from the partner",
               fontsize=8.5)
  fig.tight_layout(rect=(0, 0.04, 1, 1))
  fig.savefig(args.out, dpi=100)
  print(f"wrote {args.out}")
  for i in shown:
    print(f"sample {i}: partner {params.partner[i]}, box {params.box[i]}, "
          f"lam {params.lam[i]:.4f}")


if __name__ == "__main__":
  main()
