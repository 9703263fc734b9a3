"""Host-side datasets (NumPy, nothing downloaded) and the batch pipeline."""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
import pickle
import tarfile
from typing import Any, Callable, Iterator, Optional

import jax
import numpy as np

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

LAYOUTS = {
    "cifar10": "the CIFAR-10 python version: cifar-10-python.tar.gz, or its "
               "extracted cifar-10-batches-py/ folder (data_batch_1..5, "
               "test_batch), or a folder that contains either",
    "cifar100": "the CIFAR-100 python version: cifar-100-python.tar.gz, or its "
                "extracted cifar-100-python/ folder (train, test, meta), or a "
                "folder that contains either",
    "imagefolder": "<root>/train/<class>/*.jpg|png and <root>/test/<class>/... "
                   "(or <root>/val/<class>/...), with the same class folders "
                   "and one image size",
    "npz": "one .npz file with arrays x_train [N, H, W] or [N, H, W, C], "
           "y_train [N] integer labels, x_test, y_test",
}


class DataError(ValueError):
  """A dataset path that is missing or not in the expected layout."""


@dataclasses.dataclass
class Dataset:
  """Train and test splits as NumPy arrays.

  Attributes:
    x_train: `[N, H, W, C]` images, uint8 for image files, any numeric dtype
      for npz; normalised on the device with `mean` and `std`.
    y_train: int32 `[N]` labels.
    x_test: `[M, H, W, C]` images.
    y_test: int32 `[M]` labels.
    class_names: one name per class.
    mean: float32 `[C]` per-channel mean of the training images.
    std: float32 `[C]` per-channel standard deviation.
  """

  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  class_names: list[str]
  mean: np.ndarray = None
  std: np.ndarray = None

  def __post_init__(self):
    for name in ("x_train", "x_test"):
      x = getattr(self, name)
      if x.ndim == 3:
        setattr(self, name, x[..., None])
    if self.x_train.shape[1:] != self.x_test.shape[1:]:
      raise DataError(
          f"train images are {self.x_train.shape[1:]} but test images are "
          f"{self.x_test.shape[1:]}; they must match."
      )
    self.y_train = self.y_train.astype(np.int32)
    self.y_test = self.y_test.astype(np.int32)
    self.mean, self.std = channel_stats(self.x_train)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.x_train.shape[1:])


def channel_stats(x: np.ndarray, chunk: int = 1024
                  ) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and standard deviation of `[N, H, W, C]` images.

  Computed over chunks of `chunk` images in float32, so the memory used is
  that of one chunk, not a float copy of the whole set; the chunks' means and
  squared deviations are merged exactly (Chan et al.), without the
  cancellation of a sum of squares.
  """
  count, mean, m2 = 0, np.zeros(x.shape[-1]), np.zeros(x.shape[-1])
  for start in range(0, len(x), chunk):
    part = x[start : start + chunk].astype(np.float32).reshape(-1, x.shape[-1])
    n = len(part)
    part_mean = part.mean(axis=0)
    part_m2 = np.square(part - part_mean).sum(axis=0)
    delta = part_mean - mean
    total = count + n
    mean = mean + delta * (n / total)
    m2 = m2 + part_m2 + np.square(delta) * (count * n / total)
    count = total
  std = np.sqrt(m2 / count)
  return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


def load(name: str, data_dir: Optional[str] = None) -> Dataset:
  """Loads a dataset by name; see `LAYOUTS` for what each expects on disk."""
  if name == "digits":
    return load_digits()
  if not data_dir or not os.path.exists(data_dir):
    raise DataError(
        f"--data-dir {data_dir!r} does not exist. --dataset {name} expects "
        f"{LAYOUTS[name]}. Nothing is downloaded."
    )
  loader = {"cifar10": load_cifar, "cifar100": load_cifar,
            "imagefolder": load_imagefolder, "npz": load_npz}[name]
  try:
    ds = loader(data_dir, name) if loader is load_cifar else loader(data_dir)
  except DataError:
    raise
  except EOFError as e:
    raise DataError(
        f"{data_dir!r} ended early ({e}): it looks truncated, say by an "
        "interrupted download or copy; fetch it again.") from e
  except (OSError, KeyError, ValueError, pickle.UnpicklingError,
          tarfile.TarError) as e:
    raise DataError(
        f"could not read {data_dir!r} as {name} ({type(e).__name__}: {e}); "
        f"expected {LAYOUTS[name]}."
    ) from e
  check_labels(ds, data_dir)
  return ds


def check_labels(ds: Dataset, source: str) -> None:
  """Refuses labels outside `[0, num_classes)`: they would become NaN
  targets, and the run would stop later as if it had diverged."""
  for split, y in (("train", ds.y_train), ("test", ds.y_test)):
    bad = np.unique(y[(y < 0) | (y >= ds.num_classes)])
    if bad.size:
      raise DataError(
          f"{source!r}: {split} labels {bad[:10].tolist()} are outside "
          f"[0, {ds.num_classes}) ({ds.num_classes} classes).")


def load_digits(test_fraction: float = 0.2) -> Dataset:
  """scikit-learn's 1,797 8x8 digits, with a fixed stratified split.

  Pixels are 0..16 in sklearn; they are scaled to uint8 0..255 so that every
  dataset enters the pipeline the same way.
  """
  from sklearn import datasets  # pylint: disable=g-import-not-at-top

  digits = datasets.load_digits()
  x = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]
  y = digits.target
  # Fixed seed: the split is part of the dataset, not of a run's --seed.
  rng = np.random.default_rng(0)
  test = np.zeros(len(y), bool)
  for c in np.unique(y):
    idx = rng.permutation(np.flatnonzero(y == c))
    test[idx[: int(round(len(idx) * test_fraction))]] = True
  return Dataset(x[~test], y[~test], x[test], y[test],
                 [str(c) for c in range(10)])


def _unpickle(data: bytes) -> dict:
  return pickle.loads(data, encoding="bytes")


def load_cifar(path: str, name: str) -> Dataset:
  """CIFAR-10/100 in the python-pickle layout, from .tar.gz or a folder."""
  folder = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}[name]
  train_files = ([f"data_batch_{i}" for i in range(1, 6)]
                 if name == "cifar10" else ["train"])
  files = train_files + ["test_batch" if name == "cifar10" else "test"]
  meta_file = "batches.meta" if name == "cifar10" else "meta"
  label_key = b"labels" if name == "cifar10" else b"fine_labels"
  names_key = b"label_names" if name == "cifar10" else b"fine_label_names"

  tarball = {"cifar10": "cifar-10-python.tar.gz",
             "cifar100": "cifar-100-python.tar.gz"}[name]
  if (os.path.isdir(path) and not os.path.isdir(os.path.join(path, folder))
      and os.path.basename(os.path.normpath(path)) != folder
      and os.path.isfile(os.path.join(path, tarball))):
    path = os.path.join(path, tarball)
  if os.path.isfile(path):
    if os.path.getsize(path) == 0:
      raise DataError(f"{path!r} is empty: it looks truncated, say by an "
                      "interrupted download or copy; fetch it again.")
    with tarfile.open(path) as tar:
      members = {os.path.relpath(m.name, folder): m for m in tar.getmembers()
                 if m.isfile() and m.name.startswith(folder + "/")}
      read = lambda f: tar.extractfile(members[f]).read()
      blobs = {f: read(f) for f in files + [meta_file] if f in members}
  else:
    root = path if os.path.basename(os.path.normpath(path)) == folder else (
        os.path.join(path, folder))
    blobs = {}
    for f in files + [meta_file]:
      if os.path.isfile(os.path.join(root, f)):
        with open(os.path.join(root, f), "rb") as fh:
          blobs[f] = fh.read()
  missing = [f for f in files if f not in blobs]
  if missing:
    raise DataError(
        f"{path!r} has no {folder}/{missing[0]}; --dataset {name} expects "
        f"{LAYOUTS[name]}."
    )

  def unpickle(f):
    try:
      return _unpickle(blobs[f])
    except EOFError as e:
      raise DataError(
          f"{path!r}: {folder}/{f} ends early ({len(blobs[f])} bytes): it "
          "looks truncated; fetch the dataset again.") from e

  def split(file_names):
    parts = [unpickle(f) for f in file_names]
    x = np.concatenate([p[b"data"] for p in parts]).reshape(-1, 3, 32, 32)
    y = np.concatenate([np.asarray(p[label_key]) for p in parts])
    return x.transpose(0, 2, 3, 1), y

  x_train, y_train = split(train_files)
  x_test, y_test = split(files[-1:])
  if meta_file in blobs:
    class_names = [n.decode() for n in unpickle(meta_file)[names_key]]
  else:
    class_names = [str(c) for c in range(int(y_train.max()) + 1)]
  return Dataset(x_train, y_train, x_test, y_test, class_names)


def load_npz(path: str) -> Dataset:
  """An .npz file with x_train, y_train, x_test, y_test."""
  with np.load(path) as f:
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test")
               if k not in f]
    if missing:
      raise DataError(
          f"{path!r} has no array {missing[0]!r} (it has {sorted(f.files)}); "
          f"--dataset npz expects {LAYOUTS['npz']}."
      )
    arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
  for split in ("train", "test"):
    x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
    if x.ndim not in (3, 4) or y.shape != (len(x),) or not np.issubdtype(
        y.dtype, np.integer):
      raise DataError(
          f"{path!r}: x_{split} {x.shape} {x.dtype} and y_{split} {y.shape} "
          f"{y.dtype} do not match; expected {LAYOUTS['npz']}."
      )
  # The classes are 0..max label; negative labels are refused by `load`.
  labels = np.concatenate([arrays["y_train"], arrays["y_test"]])
  return Dataset(arrays["x_train"], arrays["y_train"], arrays["x_test"],
                 arrays["y_test"],
                 [str(c) for c in range(max(int(labels.max()), 0) + 1)])


@dataclasses.dataclass
class ImageFiles:
  """An image folder's file lists, not decoded (see `scan_imagefolder`)."""

  train_paths: list[str]
  train_labels: np.ndarray
  test_paths: list[str]
  test_labels: np.ndarray
  class_names: list[str]

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def scan_imagefolder(root: str) -> ImageFiles:
  """Lists `<root>/train/<class>/*.jpg|png` and `<root>/test` (or `val`),
  checking the layout; labels index the sorted train class folders."""
  layout = LAYOUTS["imagefolder"]
  test_name = next((d for d in ("test", "val")
                    if os.path.isdir(os.path.join(root, d))), None)
  if not os.path.isdir(os.path.join(root, "train")) or test_name is None:
    found = sorted(os.listdir(root)) if os.path.isdir(root) else []
    raise DataError(
        f"{root!r} has no train/ and test/ (or val/) folders (found "
        f"{found[:10]}); --dataset imagefolder expects {layout}."
    )
  class_names = sorted(
      d for d in os.listdir(os.path.join(root, "train"))
      if os.path.isdir(os.path.join(root, "train", d)))
  if not class_names:
    raise DataError(f"{root}/train has no class folders; expected {layout}.")
  test_classes = {d for d in os.listdir(os.path.join(root, test_name))
                  if os.path.isdir(os.path.join(root, test_name, d))}
  unknown = sorted(test_classes - set(class_names))
  if unknown:
    raise DataError(
        f"{root}/{test_name}/ has classes not in {root}/train/: {unknown}; "
        "the model could never predict them. Add them to train/ or remove "
        f"them from {test_name}/.")

  def list_split(split):
    paths, labels = [], []
    for label, name in enumerate(class_names):
      folder = os.path.join(root, split, name)
      files = sorted(f for f in os.listdir(folder)
                     if f.lower().endswith(_IMAGE_EXTENSIONS)) if os.path.isdir(
                         folder) else []
      paths += [os.path.join(folder, f) for f in files]
      labels += [label] * len(files)
    if not paths:
      raise DataError(
          f"{root}/{split} has no .jpg/.png images in class folders "
          f"{class_names[:5]}...; expected {layout}."
      )
    return paths, np.asarray(labels, np.int32)

  return ImageFiles(*list_split("train"), *list_split(test_name), class_names)


def decode_errors() -> tuple[type[Exception], ...]:
  """What PIL raises for a file it cannot read."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  return (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def decode_error(path: str, e: Exception) -> DataError:
  """The one-line error for an image file that PIL cannot read."""
  return DataError(
      f"{path} cannot be decoded ({type(e).__name__}: {e}): the file looks "
      "truncated or corrupt. Replace it with a good copy, or delete it from "
      "the folder.")


def read_rgb(path: str):
  """Decodes an image file into an RGB PIL image.

  Raises:
    DataError: naming the file, if it cannot be decoded (a truncated or
      corrupt file): one line, whichever loader or worker process read it.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(path) as im:
      return im.convert("RGB")
  except decode_errors() as e:
    raise decode_error(path, e) from None


def load_imagefolder(root: str) -> Dataset:
  """`<root>/train/<class>/*.jpg|png` plus `<root>/test` or `<root>/val`,
  decoded into memory; all images must have one size."""
  files = scan_imagefolder(root)
  first = {}

  def read(paths):
    images = []
    for path in paths:
      image = np.asarray(read_rgb(path))
      if not first:
        first.update(path=path, shape=image.shape)
      elif image.shape != first["shape"]:
        raise DataError(
            f"{path} is {image.shape[1]}x{image.shape[0]} but {first['path']} "
            f"is {first['shape'][1]}x{first['shape'][0]}; all images must "
            "have one size (resize them first, or use --loader grain)."
        )
      images.append(image)
    return np.stack(images)

  return Dataset(read(files.train_paths), files.train_labels,
                 read(files.test_paths), files.test_labels, files.class_names)


# ---------------------------------------------------------------------------
# Batches


@functools.lru_cache(maxsize=2)
def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  """The training order of an epoch: a function of (seed, epoch) only, so a
  resumed run replays exactly the batches an uninterrupted one would.

  Cached (read-only): every step of an epoch, and every image a Grain worker
  reads, looks its index up in the same permutation.
  """
  perm = np.random.default_rng([seed, epoch]).permutation(n)
  perm.flags.writeable = False
  return perm


def train_batch_indices(
    seed: int, step: int, steps_per_epoch: int, n: int, batch_size: int
) -> np.ndarray:
  """The global sample indices of training step `step` (0-based): a function
  of (seed, epoch, position in the epoch) only, whatever the topology.

  Each epoch is a fresh permutation; its last partial batch is dropped, so
  that every step has the same shape (one compilation).
  """
  epoch, i = divmod(step, steps_per_epoch)
  perm = epoch_permutation(seed, epoch, n)
  return perm[i * batch_size : (i + 1) * batch_size]


def train_batches(
    ds: Dataset, batch_size: int, seed: int, start_step: int, num_steps: int,
    rows: Optional[np.ndarray] = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Training batches for global steps `[start_step, num_steps)`, in the
  order of `train_batch_indices`.

  Args:
    ds: the dataset.
    batch_size: the global batch size.
    seed: the run's seed.
    start_step: the first step to yield.
    num_steps: one past the last step.
    rows: the rows of each global batch to load (this process's share, see
      `train.distributed.local_rows`); None: the whole global batch.
  """
  n = len(ds.x_train)
  for step in range(start_step, num_steps):
    idx = train_batch_indices(seed, step, n // batch_size, n, batch_size)
    if rows is not None:
      idx = idx[rows]
    yield ds.x_train[idx], ds.y_train[idx]


def eval_batch_indices(n: int, batch_size: int,
                       rows: Optional[np.ndarray] = None) -> np.ndarray:
  """The sample indices of every evaluation batch: `[num_batches, rows]`,
  -1 where the last global batch is padded.

  Every sample is in exactly one global batch. With `rows` (this process's
  rows of each global batch, as in `train_batches`), only those rows; over
  all processes every sample is still counted exactly once.
  """
  num_batches = -(-n // batch_size)
  idx = np.arange(num_batches * batch_size).reshape(num_batches, batch_size)
  if rows is not None:
    idx = idx[:, rows]
  return np.where(idx < n, idx, -1)


def eval_batches(
    x: np.ndarray, y: np.ndarray, batch_size: int,
    rows: Optional[np.ndarray] = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """Every sample exactly once (`eval_batch_indices`): the padding of the
  last batch is zeros, masked out."""
  for idx in eval_batch_indices(len(x), batch_size, rows):
    mask = idx >= 0
    idx = np.where(mask, idx, 0)
    xb = np.where(mask.reshape((-1,) + (1,) * (x.ndim - 1)), x[idx],
                  np.zeros((), x.dtype))
    yb = np.where(mask, y[idx], np.zeros((), y.dtype))
    yield xb, yb, mask


def prefetch(iterator, put, size: int = 2):
  """Keeps `size` batches in flight to the devices.

  `put` (a `jax.device_put` to the data sharding) is asynchronous, so the
  next batch is copied while the current step runs.
  """
  queue = collections.deque()
  try:
    for batch in iterator:
      queue.append(jax.tree.map(put, batch))
      if len(queue) == size:
        yield queue.popleft()
    while queue:
      yield queue.popleft()
  finally:
    # Stops a loader's worker processes now, also when the consumer stops
    # early (an error, an interrupt), not whenever the iterator is collected.
    if hasattr(iterator, "close"):
      iterator.close()


@dataclasses.dataclass
class Source:
  """What the training loop reads, whichever loader provides it.

  Attributes:
    num_train: training images.
    num_test: test images.
    class_names: one name per class.
    image_shape: `(height, width, channels)` of every batch's images.
    mean: float32 `[C]` per-channel mean, subtracted on the device.
    std: float32 `[C]` per-channel standard deviation.
    train_batches: `(batch_size, seed, start_step, num_steps, rows)` ->
      `(images, labels)` of global steps `[start_step, num_steps)`, this
      process's `rows` of each (see `train_batches`).
    eval_batches: `(batch_size, rows)` -> `(images, labels, mask)`, every
      test image once over all processes (see `eval_batches`).
    loader: 'memory' or 'grain'.
    train_stream: for a loader whose iterator state goes into the
      checkpoints (Grain): `(batch_size, seed, num_steps, rows)` -> a
      `grain_data.TrainStream` over global steps `[0, num_steps)`. None for
      the in-memory loader, whose state is the step alone.
    num_val: validation images (`--val-split`; 0: none).
    val_batches: as `eval_batches`, over the validation images (None
      without them).
    settings: `Config` fields that the loader fixes, recorded in the run's
      config.json so that a resumed run reads its data the same way.
    step_settings: `Config` fields for the on-device train step, where the
      loader already does part of its work (a loader that crops and flips
      sets `crop_pad` 0 and `flip` False).
  """

  num_train: int
  num_test: int
  class_names: list[str]
  image_shape: tuple[int, int, int]
  mean: np.ndarray
  std: np.ndarray
  train_batches: Callable[..., Iterator]
  eval_batches: Callable[..., Iterator]
  loader: str
  train_stream: Optional[Callable[..., Any]] = None
  num_val: int = 0
  val_batches: Optional[Callable[..., Iterator]] = None
  settings: dict[str, Any] = dataclasses.field(default_factory=dict)
  step_settings: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def in_memory(ds: Dataset,
              val: Optional[tuple[np.ndarray, np.ndarray]] = None) -> Source:
  """A `Source` over arrays in memory; `val`: validation `(images,
  labels)`, held out of `ds`'s training images (`validation_split`)."""
  val_batches = None
  if val is not None:
    val_batches = lambda batch_size, rows: eval_batches(*val, batch_size,
                                                        rows=rows)
  return Source(
      len(ds.x_train), len(ds.x_test), ds.class_names, ds.image_shape,
      ds.mean, ds.std,
      lambda batch_size, seed, start, stop, rows: train_batches(
          ds, batch_size, seed, start, stop, rows=rows),
      lambda batch_size, rows: eval_batches(ds.x_test, ds.y_test, batch_size,
                                            rows=rows),
      "memory", num_val=0 if val is None else len(val[1]),
      val_batches=val_batches)


def validation_split(labels: np.ndarray, fraction: float
                     ) -> tuple[np.ndarray, np.ndarray]:
  """The training and validation indices of a `--val-split`: `fraction` of
  each class (rounded) held out, fixed by the labels alone (not by a run's
  seed), so that every run of a study holds out the same images.

  Raises:
    DataError: if no image, or every image of a class, would be held out.
  """
  rng = np.random.default_rng(0)
  val = np.zeros(len(labels), bool)
  for c in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == c))
    count = int(round(len(idx) * fraction))
    if count == len(idx):
      raise DataError(
          f"--val-split {fraction} would hold out all {count} training "
          f"images of class {c}; use a smaller fraction.")
    val[idx[:count]] = True
  if not val.any():
    raise DataError(
        f"--val-split {fraction} holds out no image of the {len(labels)} "
        "training images (it rounds to 0 per class); use a larger fraction.")
  return np.flatnonzero(~val), np.flatnonzero(val)


def hold_out(ds: Dataset, fraction: float
             ) -> tuple[Dataset, tuple[np.ndarray, np.ndarray]]:
  """`ds` less `validation_split(fraction)` of its training images (its
  normalisation statistics are those of the images left for training), and
  the held-out `(images, labels)`."""
  train, val = validation_split(ds.y_train, fraction)
  rest = Dataset(ds.x_train[train], ds.y_train[train], ds.x_test, ds.y_test,
                 ds.class_names)
  return rest, (ds.x_train[val], ds.y_train[val])
