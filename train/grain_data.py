"""A Grain pipeline for image folders that do not fit in memory.

Images are decoded, cropped and resized by Grain worker processes, batch by
batch, and arrive as uint8; normalisation and CutMix run on the device, in
the jitted step, as with the in-memory loader.

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
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from typing import Iterator, Optional

import grain
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


def _open_rgb(path: str):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(path) as im:
    return im.convert("RGB")


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
class _TrainElement:
  """Element `i` of a run's training stream: this process's `j`-th row of
  the global batch of step `i // rows`, with that step. Picklable for the
  workers."""

  files: data.ImageFiles
  seed: int
  batch_size: int
  steps_per_epoch: int
  rows: tuple[int, ...]
  size: int
  flip: bool

  def __call__(self, i: int) -> tuple[np.int64, np.ndarray, np.int32]:
    step, j = divmod(i, len(self.rows))
    row = self.rows[j]
    epoch, position = divmod(step, self.steps_per_epoch)
    perm = _permutation(self.seed, epoch, len(self.files.train_paths))
    index = perm[position * self.batch_size + row]
    rng = np.random.default_rng([self.seed, step, row])
    image = random_resized_crop(_open_rgb(self.files.train_paths[index]),
                                self.size, rng, self.flip)
    return np.int64(step), image, self.files.train_labels[index]


@functools.lru_cache(maxsize=2)
def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  # Each worker computes an epoch's order once, not once per image.
  return data.epoch_permutation(seed, epoch, n)


@dataclasses.dataclass(frozen=True)
class _EvalElement:
  """Element `i`: this process's `j`-th row of padded global eval batch
  `i // rows`, with a mask that is False on the padding."""

  files: data.ImageFiles
  batch_size: int
  rows: tuple[int, ...]
  size: int

  def __call__(self, i: int):
    batch, j = divmod(i, len(self.rows))
    index = batch * self.batch_size + self.rows[j]
    if index >= len(self.files.test_paths):
      return (np.zeros((self.size, self.size, 3), np.uint8), np.int32(0),
              np.bool_(False))
    image = resize_centre_crop(_open_rgb(self.files.test_paths[index]),
                               self.size)
    return image, self.files.test_labels[index], np.bool_(True)


def _iterate(ds: grain.MapDataset, workers: int) -> Iterator:
  """Decodes in `workers` processes (0: in `THREADS` threads of this one;
  PIL releases the GIL), prefetching."""
  it = ds.to_iter_dataset(grain.ReadOptions(
      num_threads=2 * workers or THREADS, prefetch_buffer_size=64))
  if workers:
    # Grain 0.2.18 reads an absl flag in mp_prefetch and fails unless flags
    # were parsed, which a plain script never does (google/grain#1355).
    from absl import flags  # pylint: disable=g-import-not-at-top
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
  return iter(it)


def _stack(columns):
  return tuple(np.stack(c) for c in zip(*columns))


def _all_rows(batch_size: int, rows: Optional[np.ndarray]) -> tuple[int, ...]:
  return tuple(range(batch_size) if rows is None else rows.tolist())


def _train_dataset(files: data.ImageFiles, size: int, flip: bool,
                   batch_size: int, seed: int, num_steps: int,
                   rows: Optional[np.ndarray]) -> grain.MapDataset:
  """`(steps, images, labels)` of global steps `[0, num_steps)`: this
  process's rows of each global batch."""
  rows = _all_rows(batch_size, rows)
  element = _TrainElement(files, seed, batch_size,
                          len(files.train_paths) // batch_size, rows, size,
                          flip)
  return (grain.MapDataset.range(num_steps * len(rows)).map(element)
          .batch(len(rows), batch_fn=_stack))


def _images_labels(batch):
  return batch[1:]


def train_batches(
    files: data.ImageFiles, size: int, flip: bool, batch_size: int, seed: int,
    start_step: int, num_steps: int, rows: Optional[np.ndarray] = None,
    workers: int = 4,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """As `data.train_batches`, decoding with Grain: uint8 `[rows, size,
  size, 3]` images and int32 labels for global steps `[start_step,
  num_steps)`, this process's `rows` of each global batch."""
  ds = _train_dataset(files, size, flip, batch_size, seed, num_steps, rows)
  return _iterate(ds[start_step:].map(_images_labels), workers)


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
    `data.prefetch` does; `self.step` counts the batches taken."""
    it = _iterate(self._dataset, self._workers)
    if self._states[self.step] is not None:
      it.set_state(self._states[self.step])

    def read():
      step = self.step
      while step < stop:
        steps, images, labels = next(it)
        if steps[0] != step:
          raise data.DataError(
              f"the Grain iterator restored from {self._origin} continues "
              f"at step {steps[0]}, not {step}: its state is not this "
              "run's. Delete that step folder to resume from the one "
              "before.")
        step += 1
        self._states[step] = it.get_state()
        yield images, labels

    for batch in data.prefetch(read(), put):
      del self._states[self.step]
      self.step += 1
      yield batch


def train_stream(
    files: data.ImageFiles, size: int, flip: bool, batch_size: int, seed: int,
    num_steps: int, rows: Optional[np.ndarray] = None, workers: int = 4,
) -> TrainStream:
  """A `TrainStream` over global steps `[0, num_steps)`, each batch as in
  `train_batches`."""
  return TrainStream(_train_dataset(files, size, flip, batch_size, seed,
                                    num_steps, rows), workers)


def eval_batches(
    files: data.ImageFiles, size: int, batch_size: int,
    rows: Optional[np.ndarray] = None, workers: int = 4,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """As `data.eval_batches`: every test image once over all processes, the
  last global batch padded with zeros and masked."""
  rows = _all_rows(batch_size, rows)
  num_batches = -(-len(files.test_paths) // batch_size)
  element = _EvalElement(files, batch_size, rows, size)
  ds = (grain.MapDataset.range(num_batches * len(rows))
        .map(element).batch(len(rows), batch_fn=_stack))
  return _iterate(ds, workers)


def channel_stats(files: data.ImageFiles, size: int, sample: int = 1000,
                  workers: int = 4) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and std of up to `sample` training images (a fixed
  random subset), resized and centre-cropped as for eval."""
  n = len(files.train_paths)
  pick = np.random.default_rng(0).permutation(n)[:sample]
  subset = dataclasses.replace(
      files, test_paths=[files.train_paths[i] for i in pick],
      test_labels=files.train_labels[pick])
  images = [x[m] for x, _, m in eval_batches(subset, size, 64,
                                             workers=workers)]
  return data.channel_stats(np.concatenate(images))


def decoded_bytes(files: data.ImageFiles) -> int:
  """An estimate of the in-memory loader's uint8 arrays: every image the
  size of the first one."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(files.train_paths[0]) as im:
    width, height = im.size
  return (len(files.train_paths) + len(files.test_paths)) * width * height * 3


def source(files: data.ImageFiles, size: int, flip: bool,
           workers: int) -> data.Source:
  """A `data.Source` reading `files` with Grain: crops of `size` x `size`.

  The one-off reads (the statistics, and the first batch that the trainer
  draws augmented) decode in threads: starting worker processes, each
  importing JAX, would take seconds longer than they save.
  """
  mean, std = channel_stats(files, size, workers=0)
  return data.Source(
      len(files.train_paths), len(files.test_paths), files.class_names,
      (size, size, 3), mean, std,
      lambda batch_size, seed, start, stop, rows: train_batches(
          files, size, flip, batch_size, seed, start, stop, rows=rows,
          workers=0),
      lambda batch_size, rows: eval_batches(files, size, batch_size,
                                            rows=rows, workers=workers),
      "grain",
      lambda batch_size, seed, stop, rows: train_stream(
          files, size, flip, batch_size, seed, stop, rows=rows,
          workers=workers))
