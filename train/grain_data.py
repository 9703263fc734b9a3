"""A Grain pipeline for image folders that do not fit in memory.

Images are decoded (and, with the `resized` recipe, cropped and resized) by
Grain worker processes, batch by batch, and arrive as uint8; normalisation
and CutMix run on the device, in the jitted step, as with the in-memory
loader.

Two recipes (`Recipe`), chosen by the data's size or by `--crop`:

- `pad` (images of one size, up to 64 px: CIFAR, SVHN): the images keep
  their size, and the step pads, crops and flips them on the device, exactly
  as for the in-memory loader; test images are read as they are.
- `resized` (larger or mixed sizes: ImageNet): a RandomResizedCrop to
  `--image-size` and a flip in the workers; test images are resized and
  centre-cropped.

The data order is that of the in-memory loader: the global batch of step `s`
is `data.train_batch_indices(seed, s, ...)`, a function of the seed and the
step only, and each process reads only its own rows of it. The random crop
and flip of an image are drawn from `(seed, step, row in the global batch)`.

A run reads its training batches through one Grain iterator (`TrainStream`)
over all its steps, and every checkpoint holds that iterator's state, saved
by Grain's own Orbax handler (one JSON file per process) next to the
training state. A resumed run restores it and continues from it. The state
is the iterator's after the last batch the step took (not after the batches
prefetched beyond it); it records its step and the process and worker
counts, since Grain's state depends on them. On restore the step must be the
checkpoint's and the counts this run's, and each batch carries its step, so a
state that continues elsewhere stops the run instead of training on other
data.

Worker processes ignore SIGINT and SIGTERM (the training process handles
them and stops its workers), exit when the training process dies, and hand
every batch over in shared memory that the training process frees at once.
A file that cannot be decoded stops the run with a `data.DataError` naming
it, raised in the training process, after its workers are stopped.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import signal
import threading
import time
from typing import Iterator, Optional

import grain
import grain.multiprocessing
import jax
import numpy as np

from train import data

# RandomResizedCrop's defaults (Inception, torchvision): area and aspect.
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
# Eval: resize the shorter side to size / 0.875 (256 for 224), centre crop.
EVAL_CROP_FRACTION = 0.875
# Decoding threads without worker processes (--workers 0, one-off reads).
THREADS = 4
CROPS = ("pad", "resized")
# The largest side that the automatic recipe reads as a small-image dataset
# (CIFAR's 32, Tiny ImageNet's 64): `pad` up to it, `resized` above.
PAD_MAX_SIDE = 64
# Training images whose sizes choose the recipe and give the statistics.
SAMPLE = 1000


def random_resized_crop(image, size: int, rng: np.random.Generator,
                        flip: bool) -> np.ndarray:
  """A random crop of 8% to 100% of the area, aspect 3/4 to 4/3, resized to
  `size` x `size`, mirrored with chance 1/2 if `flip` (torchvision's
  recipe, with its fallback to a centre crop after 10 tries)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  width, height = image.size
  area = width * height
  for _ in range(10):
    target = area * rng.uniform(*CROP_SCALE)
    aspect = math.exp(rng.uniform(math.log(CROP_RATIO[0]),
                                  math.log(CROP_RATIO[1])))
    w = int(round(math.sqrt(target * aspect)))
    h = int(round(math.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      x0 = int(rng.integers(0, width - w + 1))
      y0 = int(rng.integers(0, height - h + 1))
      break
  else:
    w = h = min(width, height)
    x0, y0 = (width - w) // 2, (height - h) // 2
  out = image.resize((size, size), Image.BILINEAR, box=(x0, y0, x0 + w, y0 + h))
  if flip and rng.random() < 0.5:
    out = out.transpose(Image.FLIP_LEFT_RIGHT)
  return np.asarray(out, np.uint8)


def resize_centre_crop(image, size: int) -> np.ndarray:
  """Resizes the shorter side to `size / 0.875`, then crops the centre."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  width, height = image.size
  short = max(size, int(round(size / EVAL_CROP_FRACTION)))
  scale = short / min(width, height)
  w, h = max(size, round(width * scale)), max(size, round(height * scale))
  image = image.resize((w, h), Image.BILINEAR)
  x0, y0 = (w - size) // 2, (h - size) // 2
  return np.asarray(image.crop((x0, y0, x0 + size, y0 + size)), np.uint8)


@dataclasses.dataclass(frozen=True)
class Recipe:
  """How the workers turn an image file into a training or test image.

  Attributes:
    crop: 'pad' (the image as it is, `height` x `width`; the train step
      pads, crops and flips it on the device) or 'resized' (a
      RandomResizedCrop to `height` x `width`, and a flip if `flip`, in the
      worker; test images resized and centre-cropped).
    height: the height of every image a batch holds.
    width: its width.
    flip: whether the worker mirrors training images (with chance 1/2);
      always False for 'pad', whose flips happen on the device.
  """

  crop: str
  height: int
  width: int
  flip: bool = False

  def train(self, path: str, rng: np.random.Generator) -> np.ndarray:
    if self.crop == "pad":
      return self._as_is(path)
    return random_resized_crop(data.read_rgb(path), self.height, rng,
                               self.flip)

  def eval(self, path: str) -> np.ndarray:
    if self.crop == "pad":
      return self._as_is(path)
    return resize_centre_crop(data.read_rgb(path), self.height)

  def _as_is(self, path: str) -> np.ndarray:
    image = np.asarray(data.read_rgb(path))
    if image.shape[:2] != (self.height, self.width):
      raise data.DataError(
          f"{path} is {image.shape[1]}x{image.shape[0]}, but the folder's "
          f"images are {self.width}x{self.height}: --crop pad reads images "
          "of one size. Use --crop resized, or resize that file.")
    return image


@dataclasses.dataclass(frozen=True)
class _TrainElement:
  """Element `i` of a run's training stream: this process's `j`-th row of
  the global batch of step `i // rows`, with that step. Picklable for the
  workers."""

  files: data.ImageFiles
  seed: int
  batch_size: int
  rows: tuple[int, ...]
  recipe: Recipe

  def __call__(self, i: int) -> tuple[np.int64, np.ndarray, np.int32]:
    step, j = divmod(i, len(self.rows))
    row = self.rows[j]
    n = len(self.files.train_paths)
    index = data.train_batch_indices(self.seed, step, n // self.batch_size, n,
                                     self.batch_size)[row]
    rng = np.random.default_rng([self.seed, step, row])
    image = self.recipe.train(self.files.train_paths[index], rng)
    return np.int64(step), image, self.files.train_labels[index]


@dataclasses.dataclass(frozen=True)
class _EvalElement:
  """The image, label and mask of a sample index of
  `data.eval_batch_indices` (-1: padding, zeros with mask False)."""

  paths: list[str]
  labels: np.ndarray
  recipe: Recipe

  def __call__(self, index: int):
    if index < 0:
      return (np.zeros((self.recipe.height, self.recipe.width, 3), np.uint8),
              np.int32(0), np.bool_(False))
    return (self.recipe.eval(self.paths[index]), self.labels[index],
            np.bool_(True))


def _watch_parent(parent: int) -> None:
  while os.getppid() == parent:
    time.sleep(0.5)
  os._exit(1)  # pylint: disable=protected-access


def _init_worker(parent: int, index: int, count: int) -> None:
  """Runs first in each worker process; `parent` is the training process,
  named by it: a worker that starts after it died is already re-parented."""
  del index, count
  # A Ctrl-C reaches the whole process group, and a scheduler's SIGTERM may
  # too: the training process handles both (it saves, then stops us).
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  signal.signal(signal.SIGTERM, signal.SIG_IGN)
  # A training process killed with SIGKILL cannot stop its workers: they
  # notice it is gone (they are re-parented) and exit.
  threading.Thread(target=_watch_parent, args=(parent,),
                   daemon=True).start()


def _own(x):
  """A plain copy of an array a worker handed over in shared memory, whose
  block is freed now: Grain frees it on garbage collection, in a thread that
  an exiting interpreter does not wait for, which left blocks behind
  ("leaked shared_memory objects")."""
  if not isinstance(x, grain.multiprocessing.SharedMemoryArray):
    return x
  out = np.array(x)
  x._unlink_on_del = False  # pylint: disable=protected-access  # unlinked here
  x.shm.close()
  x.shm.unlink()
  return out


class _Reader:
  """A Grain iterator over `ds`, decoding in `workers` processes (0: in
  `THREADS` threads of this one; PIL releases the GIL), prefetching.

  Its batches are plain arrays (`_own`), and `close` stops the workers.
  """

  def __init__(self, ds: grain.MapDataset, workers: int):
    it = ds.to_iter_dataset(grain.ReadOptions(
        num_threads=2 * workers or THREADS, prefetch_buffer_size=64))
    if workers:
      # Grain 0.2.18 reads an absl flag in mp_prefetch and fails unless
      # flags were parsed, which a plain script never does
      # (google/grain#1355).
      from absl import flags  # pylint: disable=g-import-not-at-top
      if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
      it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers),
                          worker_init_fn=functools.partial(
                              _init_worker, os.getpid()))
    self._it = iter(it)

  def __iter__(self):
    return self

  def __next__(self):
    return tuple(_own(x) for x in next(self._it))

  def get_state(self):
    return self._it.get_state()

  def set_state(self, state) -> None:
    self._it.set_state(state)

  def close(self) -> None:
    self._it.close()


def _read(ds: grain.MapDataset, workers: int, select=lambda batch: batch
          ) -> Iterator:
  """The batches of `ds` (each through `select`); the workers stop when
  the iteration ends, fails or is closed."""
  reader = _Reader(ds, workers)
  try:
    for batch in reader:
      yield select(batch)
  finally:
    reader.close()


def _stack(columns):
  return tuple(np.stack(c) for c in zip(*columns))


def _all_rows(batch_size: int, rows: Optional[np.ndarray]) -> tuple[int, ...]:
  return tuple(range(batch_size) if rows is None else rows.tolist())


def _train_dataset(files: data.ImageFiles, recipe: Recipe, batch_size: int,
                   seed: int, num_steps: int,
                   rows: Optional[np.ndarray]) -> grain.MapDataset:
  """`(steps, images, labels)` of global steps `[0, num_steps)`: this
  process's rows of each global batch."""
  rows = _all_rows(batch_size, rows)
  element = _TrainElement(files, seed, batch_size, rows, recipe)
  return (grain.MapDataset.range(num_steps * len(rows)).map(element)
          .batch(len(rows), batch_fn=_stack))


def train_batches(
    files: data.ImageFiles, recipe: Recipe, batch_size: int, seed: int,
    start_step: int, num_steps: int, rows: Optional[np.ndarray] = None,
    workers: int = 4,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """As `data.train_batches`, decoding with Grain: uint8 `[rows, height,
  width, 3]` images and int32 labels for global steps `[start_step,
  num_steps)`, this process's `rows` of each global batch."""
  ds = _train_dataset(files, recipe, batch_size, seed, num_steps, rows)
  return _read(ds[start_step:], workers, lambda batch: batch[1:])


class TrainStream:
  """A run's training batches through one Grain iterator, resumable from
  the state saved in its checkpoints.

  Grain's Orbax handler (`grain.checkpoint.CheckpointHandler`) saves
  `get_state()` and restores with `set_state`, as for a Grain
  `DataLoader` iterator: JSON bytes holding the Grain iterator's state after
  `step` batches, with the process and worker counts it belongs to.

  Args:
    dataset: `_train_dataset` over all the run's steps.
    workers: Grain worker processes (0: threads of this process).
  """

  def __init__(self, dataset: grain.MapDataset, workers: int):
    self._dataset, self._workers = dataset, workers
    self.step = 0  # batches the training loop has taken
    # The Grain state after each step in flight (None: from the start).
    self._states: dict[int, Optional[dict]] = {0: None}
    self._saved_counts = None
    self._origin = "the start of the run"

  def _counts(self) -> dict[str, int]:
    return dict(processes=jax.process_count(), workers=self._workers)

  def get_state(self) -> bytes:
    return json.dumps(dict(step=self.step, **self._counts(),
                           iterator=self._states[self.step])).encode()

  def set_state(self, state: bytes) -> None:
    saved = json.loads(state)
    self.step = saved["step"]
    self._states = {self.step: saved["iterator"]}
    self._saved_counts = {k: saved[k] for k in self._counts()}

  def start_prefetch(self) -> None:
    """Called by Grain's handler after `set_state`; `batches` starts the
    iterator."""

  def check(self, step: int, path: str) -> list[str]:
    """What makes a state restored from checkpoint `path` of `step` unfit
    for this run (empty if nothing); `path` is named in later errors."""
    self._origin = f"checkpoint {path}"
    problems = []
    if self.step != step:
      problems.append(f"the loader state is that of step {self.step}")
    if self._saved_counts != self._counts():
      problems.append(
          "the loader state was saved by {processes} process(es) with "
          "--workers {workers}".format(**self._saved_counts)
          + ", and Grain's state depends on both; resume with those, not "
          "{processes} and {workers}".format(**self._counts()))
    return problems

  def batches(self, stop: int, put) -> Iterator[tuple[jax.Array, ...]]:
    """Steps `[self.step, stop)`, put on the devices by `put` as
    `data.prefetch` does; `self.step` counts the batches taken. The workers
    stop when the iteration ends, fails or is closed."""
    reader = _Reader(self._dataset, self._workers)
    if self._states[self.step] is not None:
      reader.set_state(self._states[self.step])

    def read():
      step = self.step
      while step < stop:
        steps, images, labels = next(reader)
        if steps[0] != step:
          raise data.DataError(
              f"the Grain iterator restored from {self._origin} continues "
              f"at step {steps[0]}, not {step}: its state is not this "
              "run's. Delete that step folder to resume from the one "
              "before.")
        step += 1
        self._states[step] = reader.get_state()
        yield images, labels

    batches = data.prefetch(read(), put)
    try:
      for batch in batches:
        del self._states[self.step]
        self.step += 1
        yield batch
    finally:
      batches.close()
      reader.close()


def train_stream(
    files: data.ImageFiles, recipe: Recipe, batch_size: int, seed: int,
    num_steps: int, rows: Optional[np.ndarray] = None, workers: int = 4,
) -> TrainStream:
  """A `TrainStream` over global steps `[0, num_steps)`, each batch as in
  `train_batches`."""
  return TrainStream(_train_dataset(files, recipe, batch_size, seed,
                                    num_steps, rows), workers)


def eval_batches(
    paths: list[str], labels: np.ndarray, recipe: Recipe, batch_size: int,
    rows: Optional[np.ndarray] = None, workers: int = 4,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """As `data.eval_batches`: every image of `paths` once over all
  processes, the last global batch padded with zeros and masked."""
  indices = data.eval_batch_indices(len(paths), batch_size, rows)
  ds = (grain.MapDataset.source(indices.ravel().tolist())
        .map(_EvalElement(paths, labels, recipe))
        .batch(indices.shape[1], batch_fn=_stack))
  return _read(ds, workers)


def _sample(files: data.ImageFiles, sample: int) -> list[int]:
  """A fixed random subset of the training images' indices."""
  n = len(files.train_paths)
  return np.random.default_rng(0).permutation(n)[:sample].tolist()


def image_sizes(paths: list[str]) -> list[tuple[int, int]]:
  """`(height, width)` of each image, from its header (nothing decoded)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  sizes = []
  for path in paths:
    try:
      with Image.open(path) as im:
        sizes.append((im.height, im.width))
    except data.decode_errors() as e:
      raise data.decode_error(path, e) from None
  return sizes


def choose_recipe(files: data.ImageFiles, crop: Optional[str],
                  image_size: int, flip: bool) -> Recipe:
  """The recipe for `files`: `crop` ('pad', 'resized'), or None to follow
  the data: 'pad' when a sample of the training images (`SAMPLE`) has one
  size of at most `PAD_MAX_SIDE`, else 'resized' to `image_size`.

  Resizing up (`image_size` above the images' median shorter side) is
  logged as a warning: it is never what the automatic choice does.
  """
  sizes = image_sizes([files.train_paths[i] for i in _sample(files, SAMPLE)])
  distinct = sorted(set(sizes))
  if crop is None:
    crop = ("pad" if len(distinct) == 1 and max(distinct[0]) <= PAD_MAX_SIDE
            else "resized")
  if crop == "pad":
    if len(distinct) > 1:
      raise data.DataError(
          "--crop pad reads images of one size, but the training images "
          "have sizes " + ", ".join(f"{w}x{h}" for h, w in distinct[:4])
          + (" and more" if len(distinct) > 4 else "")
          + ": use --crop resized.")
    (height, width), = distinct
    return Recipe("pad", height, width, flip=False)
  short = int(np.median([min(hw) for hw in sizes]))
  if image_size > short:
    logging.warning(
        "--image-size %d resizes the images UP: their median shorter side is "
        "%d px. Pass --image-size %d (or less) to keep their detail as it "
        "is, or --crop pad for small images of one size.", image_size, short,
        short)
  return Recipe("resized", image_size, image_size, flip=flip)


def channel_stats(files: data.ImageFiles, recipe: Recipe,
                  workers: int = 4) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and std of `SAMPLE` training images (a fixed random
  subset), read as test images are."""
  pick = _sample(files, SAMPLE)
  images = [x[m] for x, _, m in eval_batches(
      [files.train_paths[i] for i in pick], files.train_labels[pick], recipe,
      64, workers=workers)]
  return data.channel_stats(np.concatenate(images))


def decoded_bytes(files: data.ImageFiles) -> int:
  """An estimate of the in-memory loader's uint8 arrays: every image the
  size of the first one."""
  (height, width), = image_sizes(files.train_paths[:1])
  return (len(files.train_paths) + len(files.test_paths)) * width * height * 3


def source(files: data.ImageFiles, recipe: Recipe, workers: int,
           val: Optional[tuple[list[str], np.ndarray]] = None
           ) -> data.Source:
  """A `data.Source` reading `files` with Grain, by `recipe`; `val`:
  validation `(paths, labels)`, read as the test images are.

  The one-off reads (the statistics, and the first batch that the trainer
  draws augmented) decode in threads: starting worker processes, each
  importing JAX, would take seconds longer than they save.
  """
  mean, std = channel_stats(files, recipe, workers=0)
  val_batches = None
  if val is not None:
    val_batches = lambda batch_size, rows: eval_batches(
        *val, recipe, batch_size, rows=rows, workers=workers)
  if recipe.crop == "pad":
    # The step pads, crops and flips, as for the in-memory loader.
    settings, step_settings = dict(loader="grain", crop="pad"), {}
  else:
    settings = dict(loader="grain", crop="resized", image_size=recipe.height,
                    crop_pad=0)
    # The workers crop and flip; the step must not do either again.
    step_settings = dict(crop_pad=0, flip=False)
  return data.Source(
      len(files.train_paths), len(files.test_paths), files.class_names,
      (recipe.height, recipe.width, 3), mean, std,
      lambda batch_size, seed, start, stop, rows: train_batches(
          files, recipe, batch_size, seed, start, stop, rows=rows,
          workers=0),
      lambda batch_size, rows: eval_batches(
          files.test_paths, files.test_labels, recipe, batch_size, rows=rows,
          workers=workers),
      "grain",
      lambda batch_size, seed, stop, rows: train_stream(
          files, recipe, batch_size, seed, stop, rows=rows, workers=workers),
      num_val=0 if val is None else len(val[0]), val_batches=val_batches,
      settings=settings, step_settings=step_settings)
