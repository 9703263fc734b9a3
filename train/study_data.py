"""The studies' data: the CIFAR-10 JPEG zip extracted once, decoded into an
.npz that the runs read (`--dataset npz`), the class-balanced training
subset, and the evaluation pool of the images no run trains on.

Everything is written into a cache directory (never into the repository),
named by the source's path, size and time, and built once: concurrent runs
may build the same file, so each is written under a per-process name and
renamed into place.
"""

from __future__ import annotations

import hashlib
import os
import time
import zipfile
from typing import Optional, Sequence

import numpy as np

from train import data


def _file_tag(path: str) -> str:
  st = os.stat(path)
  key = f"{os.path.abspath(path)}:{st.st_size}:{int(st.st_mtime)}"
  return hashlib.sha1(key.encode()).hexdigest()[:10]


def _source_tag(zip_path: Optional[str], data_dir: Optional[str]) -> str:
  return _file_tag(data_dir or zip_path)


def _imagefolder_root(zip_path: Optional[str], data_dir: Optional[str],
                      cache_dir: str) -> str:
  """`data_dir`, or the folder holding train/ in `zip_path` extracted (once)
  into `cache_dir`."""
  if data_dir:
    return data_dir
  extracted = os.path.join(cache_dir,
                           f"extracted-{_source_tag(zip_path, data_dir)}")
  if not os.path.exists(os.path.join(extracted, ".done")):
    print(f"Extracting {zip_path} into {extracted} ...", flush=True)
    with zipfile.ZipFile(zip_path) as z:
      z.extractall(extracted)
    open(os.path.join(extracted, ".done"), "w").close()
  for dirpath, dirnames, _ in os.walk(extracted):
    if "train" in dirnames:
      return dirpath
  return extracted


def prepare_data(zip_path: Optional[str], data_dir: Optional[str],
                 cache_dir: str, train_subset: int = 0) -> str:
  """Returns an .npz of the dataset in `cache_dir`, building it once.

  The images are read by the trainer's `imagefolder` loader, from `data_dir`
  or from `zip_path` extracted into `cache_dir`.
  """
  os.makedirs(cache_dir, exist_ok=True)
  source = data_dir or zip_path
  if not source or not os.path.exists(source):
    raise data.DataError(f"no dataset at {source!r}; pass --zip or --data-dir.")
  tag = _source_tag(zip_path, data_dir)
  full = os.path.join(cache_dir, f"data-{tag}.npz")
  if not os.path.exists(full):
    root = _imagefolder_root(zip_path, data_dir, cache_dir)
    start = time.perf_counter()
    ds = data.load_imagefolder(root)
    print(f"Decoded {len(ds.x_train)} + {len(ds.x_test)} images from {root} "
          f"in {time.perf_counter() - start:.0f} s.", flush=True)
    _save_npz(full, x_train=ds.x_train, y_train=ds.y_train, x_test=ds.x_test,
              y_test=ds.y_test, class_names=np.asarray(ds.class_names))
  if not train_subset:
    return full
  path = os.path.join(cache_dir, f"data-{tag}-train{train_subset}.npz")
  if not os.path.exists(path):
    with np.load(full) as f:
      arrays = {k: f[k] for k in f.files}
    keep = subset_indices(arrays["y_train"], train_subset)
    arrays["x_train"] = arrays["x_train"][keep]
    arrays["y_train"] = arrays["y_train"][keep]
    _save_npz(path, **arrays)
  return path


def subset_indices(y: np.ndarray, train_subset: int) -> np.ndarray:
  """The training subset: sorted indices into the full training set.

  Class-balanced, and fixed by the data alone (NumPy `default_rng(0)`), not
  by a run's seed.
  """
  rng = np.random.default_rng(0)
  per_class = [rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)]
  order = np.stack([p[: min(len(q) for q in per_class)]
                    for p in per_class], 1).ravel()
  return np.sort(order[:train_subset])


def _save_npz(path: str, **arrays: np.ndarray) -> None:
  # A per-process name: concurrent runs may build the same file.
  tmp = f"{path}.{os.getpid()}.tmp.npz"
  np.savez(tmp, **arrays)
  os.replace(tmp, path)


def prepare_pool(zip_path: Optional[str], data_dir: Optional[str],
                 cache_dir: str, train_subset: int) -> str:
  """Returns an .npz of the evaluation pool in `cache_dir`, building it once.

  The pool is every training image outside the `train_subset` subset, in
  the full training set's order (sorted class folders, sorted file names),
  then every test image in the same order: images of the training
  distribution that no run trains on. The file holds `x`, `y`, `files` (each
  image's path relative to the imagefolder root) and `files_sha256`, the
  SHA-256 of those paths joined by newlines, which names the pool exactly.
  """
  if not train_subset:
    raise data.DataError("--pool needs --train-subset: without a subset "
                         "every training image is trained on.")
  full = prepare_data(zip_path, data_dir, cache_dir)
  path = full.replace(".npz", f"-pool{train_subset}.npz")
  if os.path.exists(path):
    return path
  with np.load(full) as f:
    x_train, y_train = f["x_train"], f["y_train"]
    x_test, y_test = f["x_test"], f["y_test"]
  root = _imagefolder_root(zip_path, data_dir, cache_dir)
  files = data.scan_imagefolder(root)
  names = [os.path.relpath(p, root) for p in files.train_paths
           + files.test_paths]
  if len(names) != len(x_train) + len(x_test):
    raise data.DataError(f"{root} lists {len(names)} images, but the decoded "
                         f"cache {full} holds {len(x_train) + len(x_test)}.")
  rest = np.setdiff1d(np.arange(len(x_train)),
                      subset_indices(y_train, train_subset))
  pool_files = [names[i] for i in rest] + names[len(x_train):]
  _save_npz(path, x=np.concatenate([x_train[rest], x_test]),
            y=np.concatenate([y_train[rest], y_test]),
            files=np.asarray(pool_files),
            files_sha256=np.asarray(files_sha256(pool_files)))
  return path


def files_sha256(names: Sequence[str]) -> str:
  """SHA-256 of file names joined by newlines: the identity of a pool."""
  return hashlib.sha256("\n".join(names).encode()).hexdigest()
