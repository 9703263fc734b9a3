"""CIFAR-10 for a device machine: one file of the JPEG bytes, and back.

A device call carries at most 64 MiB of working tree. The CIFAR-10 JPEG zip
is 61 MiB, 9 MB of it zip headers (two per file, each with the file's path);
decoded, the 60,000 images are 184 MB. `pack` keeps the JPEG bytes exactly,
concatenated in one uncompressed .npz with their offsets, labels and names:
56.1 MB (53.5 MiB) for all of CIFAR-10 (JPEG does not compress further). `unpack`
writes the image folder back (for `--loader grain`) and decodes it, in
parallel, into the .npz the trainer's `--dataset npz` reads (for the memory
and device loaders), in the order `data.load_imagefolder` reads the folder,
so both give the same arrays.

    python -m bench.devdata pack ../shared/data/cifar10-jpg.zip .devdata/cifar10-jpg.npz
    python -m bench.devdata unpack .devdata/cifar10-jpg.npz /tmp/cifar10
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import os
import sys
import zipfile
from typing import Optional, Sequence

import numpy as np

SPLITS = ("train", "test")


def pack(zip_path: str, out: str, train: int = 0, test: int = 0) -> dict:
  """Packs the `<root>/<split>/<class>/<file>` JPEGs of an image-folder zip.

  Args:
    zip_path: the zip (CIFAR-10's holds `cifar10/train/airplane/0000.jpg`...).
    out: the .npz to write.
    train: keep the first `train` files of each split's sorted list per
      class, round robin over classes (0: all).
    test: likewise for the test split.

  Returns:
    `{split: count}`.
  """
  limits = {"train": train, "test": test}
  by_split = {s: {} for s in SPLITS}
  with zipfile.ZipFile(zip_path) as z:
    for name in z.namelist():
      parts = name.split("/")
      if name.endswith("/") or len(parts) < 3 or parts[-3] not in SPLITS:
        continue
      by_split[parts[-3]].setdefault(parts[-2], []).append(name)
    arrays, counts = {}, {}
    classes = sorted(by_split["train"])
    for split in SPLITS:
      per_class = [sorted(by_split[split].get(c, [])) for c in classes]
      # Round robin over the classes, so a subset stays balanced.
      order = [(label, files[i]) for i in range(max(map(len, per_class)))
               for label, files in enumerate(per_class) if i < len(files)]
      if limits[split]:
        order = order[:limits[split]]
      blobs = [z.read(name) for _, name in order]
      offsets = np.zeros(len(blobs) + 1, np.int32)
      offsets[1:] = np.cumsum([len(b) for b in blobs])
      arrays[f"{split}_jpeg"] = np.frombuffer(b"".join(blobs), np.uint8)
      arrays[f"{split}_offsets"] = offsets
      arrays[f"{split}_labels"] = np.asarray([l for l, _ in order], np.int16)
      # Bytes, not str: NumPy stores str as 4 bytes a character.
      arrays[f"{split}_names"] = np.asarray(
          [os.path.basename(n).encode() for _, n in order])
      counts[split] = len(order)
  arrays["class_names"] = np.asarray(classes)
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  np.savez(out, **arrays)
  return counts


def _decode(blob: bytes) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(io.BytesIO(blob)) as im:
    return np.asarray(im.convert("RGB"))


def unpack(packed: str, out_dir: str, workers: Optional[int] = None
           ) -> tuple[str, str]:
  """Writes `out_dir/images/<split>/<class>/<file>` and `out_dir/data.npz`.

  Returns:
    `(image folder, npz)`.
  """
  from train import data  # pylint: disable=g-import-not-at-top

  root = os.path.join(out_dir, "images")
  with np.load(packed) as f:
    arrays = {k: f[k] for k in f.files}
  classes = [str(c) for c in arrays["class_names"]]
  for split in SPLITS:
    jpeg, offsets = arrays[f"{split}_jpeg"], arrays[f"{split}_offsets"]
    for i, (label, name) in enumerate(zip(arrays[f"{split}_labels"],
                                          arrays[f"{split}_names"])):
      folder = os.path.join(root, split, classes[label])
      os.makedirs(folder, exist_ok=True)
      with open(os.path.join(folder, name.decode()), "wb") as fh:
        fh.write(jpeg[offsets[i]:offsets[i + 1]].tobytes())
  # Decoded in the order the trainer's image-folder loader reads.
  files = data.scan_imagefolder(root)
  decoded = {}
  # Threads, not processes: PIL releases the GIL while it decodes, and a
  # fork of a process that has started JAX's threads can deadlock.
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    for split, paths in (("train", files.train_paths),
                         ("test", files.test_paths)):
      blobs = [open(p, "rb").read() for p in paths]  # pylint: disable=consider-using-with
      decoded[split] = np.stack(list(pool.map(_decode, blobs,
                                              chunksize=256)))
  npz = os.path.join(out_dir, "data.npz")
  np.savez(npz, x_train=decoded["train"], y_train=files.train_labels,
           x_test=decoded["test"], y_test=files.test_labels,
           class_names=np.asarray(files.class_names))
  return root, npz


def main(argv: Optional[Sequence[str]] = None) -> int:
  p = argparse.ArgumentParser(prog="python -m bench.devdata",
                              description=__doc__.split("\n\n")[0])
  sub = p.add_subparsers(dest="command", required=True)
  a = sub.add_parser("pack", help="zip of JPEG folders -> one .npz")
  a.add_argument("zip")
  a.add_argument("out")
  a.add_argument("--train", type=int, default=0,
                 help="training images to keep, balanced (0: all)")
  a.add_argument("--test", type=int, default=0,
                 help="test images to keep, balanced (0: all)")
  b = sub.add_parser("unpack", help=".npz -> image folder and decoded .npz")
  b.add_argument("packed")
  b.add_argument("out_dir")
  b.add_argument("--workers", type=int, default=None)
  args = p.parse_args(argv)
  if args.command == "pack":
    counts = pack(args.zip, args.out, args.train, args.test)
    print(f"packed {counts} into {args.out} "
          f"({os.path.getsize(args.out) / 2**20:.1f} MiB)")
  else:
    root, npz = unpack(args.packed, args.out_dir, args.workers)
    print(f"wrote {root} and {npz}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
