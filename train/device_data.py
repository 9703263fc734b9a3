"""`--loader device`: the training images live on the accelerators.

For datasets that fit in device memory (CIFAR-10's 50,000 training images
are 150 MB as uint8), the host's per-step work of the in-memory loader (a
NumPy gather of the batch and its copy to the devices) is replaced by a
gather inside the jitted step: the host sends only the batch's indices and
labels (8 bytes an image), and the gather, normalisation, crop, flip and
mixing all run in the one compiled step.

**Replicated, not sharded.** Every device holds all the training images.
A batch is a random draw from the whole dataset, so with the images sharded
over the mesh each device's rows would live on other devices, and every
step would move the batch between devices (an all-to-all, or a gather of
the whole batch on every device). Replicated, each device gathers its own
rows of the global batch from its own copy, with no communication, and the
batch order stays exactly the in-memory loader's. The price is the dataset's
size on every device, which is why this loader is for datasets far smaller
than one device's memory; larger ones belong with `--loader grain`.

**The same batches as `--loader memory`.** The global batch of step `s` is
`data.train_batch_indices(seed, s, ...)`, the in-memory loader's order, and
its images are `x_train[idx]` gathered on the device instead of the host:
the same uint8 pixels. The crop, flip and mix draws are the step's, so a
run trains as `--loader memory` does with the same seed (the test suite
checks the final states are equal).

**Resumes.** The loader's state is the step. It goes into every checkpoint
through the trainer's loader-state item (as Grain's iterator state does), is
restored with it, and must be the checkpoint's step; batches are a function
of `(seed, step)`, so a resumed run takes the uninterrupted run's batches.

Evaluation reads the test set from the host, as the in-memory loader does.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Iterator, Optional

import jax
import numpy as np

from train import data


def gather(images: jax.Array, idx: jax.Array) -> jax.Array:
  """The batch `images[idx]`, inside the step (indices are always valid)."""
  return images.at[idx].get(mode="promise_in_bounds")


class IndexStream:
  """The training batches' indices and labels, resumable from a checkpoint.

  Speaks the protocol of the trainer's loader-state item (`get_state`,
  `set_state`, `start_prefetch`, `check`, `batches`), which Grain's Orbax
  handler saves and restores, so that a checkpoint records the loader's step.

  Args:
    labels: int32 `[N]` training labels (on the host).
    batch_size: the global batch size.
    seed: the run's seed (the data order).
    rows: this process's rows of each global batch, or None for all.
  """

  def __init__(self, labels: np.ndarray, batch_size: int, seed: int,
               rows: Optional[np.ndarray]):
    self._labels, self._batch_size = labels, batch_size
    self._seed, self._rows = seed, rows
    self._steps_per_epoch = len(labels) // batch_size
    self.step = 0  # batches the training loop has taken
    self._origin = "the start of the run"

  def get_state(self) -> bytes:
    return json.dumps(dict(step=self.step, loader="device")).encode()

  def set_state(self, state: bytes) -> None:
    self.step = json.loads(state)["step"]

  def start_prefetch(self) -> None:
    """Called by Grain's handler after `set_state`; nothing to start."""

  def check(self, step: int, path: str) -> list[str]:
    """What makes a state restored from checkpoint `path` of `step` unfit."""
    self._origin = f"checkpoint {path}"
    if self.step != step:
      return [f"the loader state is that of step {self.step}"]
    return []

  def indices(self, step: int) -> np.ndarray:
    """This process's rows of step `step`'s global batch, as int32."""
    idx = data.train_batch_indices(self._seed, step, self._steps_per_epoch,
                                   len(self._labels), self._batch_size)
    if self._rows is not None:
      idx = idx[self._rows]
    return idx.astype(np.int32)

  def batches(self, stop: int, put: Callable) -> Iterator[tuple[Any, Any]]:
    """`(indices, labels)` of steps `[self.step, stop)`, put on the devices
    by `put` as `data.prefetch` does; `self.step` counts the batches taken."""

    def read():
      for step in range(self.step, stop):
        idx = self.indices(step)
        yield idx, self._labels[idx]

    for batch in data.prefetch(read(), put):
      self.step += 1
      yield batch


@dataclasses.dataclass
class DeviceSource(data.Source):
  """A `data.Source` whose training images are put on the devices.

  `train_batches` still yields host images (the in-memory loader's), for
  the step-0 picture; training reads `train_stream`'s indices, and `bind`
  makes the step that gathers them.

  Attributes:
    x_train: the `[N, H, W, C]` training images, put on the devices by
      `bind`.
    y_train: int32 `[N]` training labels.
  """

  x_train: np.ndarray = None
  y_train: np.ndarray = None


def source(ds: data.Dataset,
           val: Optional[tuple[np.ndarray, np.ndarray]] = None
           ) -> DeviceSource:
  """`--loader device` over a dataset loaded into memory; `val`: held-out
  validation `(images, labels)`, evaluated from the host."""
  memory = data.in_memory(ds, val)
  fields = {f.name: getattr(memory, f.name)
            for f in dataclasses.fields(data.Source)}
  fields.update(
      loader="device",
      train_stream=lambda batch_size, seed, num_steps, rows: IndexStream(
          ds.y_train, batch_size, seed, rows))
  return DeviceSource(**fields, x_train=ds.x_train, y_train=ds.y_train)


def put_images(images: np.ndarray, par) -> jax.Array:
  """The training images on every device: one replicated array under jit
  (over every process's devices), one copy per device stacked on a leading
  axis under pmap."""
  if par.kind == "pmap":
    stacked = np.broadcast_to(images, (par.n,) + images.shape)
    return jax.pmap(lambda x: x, axis_name="copy")(stacked)
  if par.processes > 1:
    return jax.make_array_from_process_local_data(par.replicated, images,
                                                  images.shape)
  return jax.device_put(images, par.replicated)


def compile_step(step_fn: Callable, par) -> Callable:
  """`(state, idx, labels, root_key, images) -> (state, metrics)`: the
  trainer's step `step_fn` on the batch `gather(images, idx)`, jitted (or
  pmapped) with the state donated and the images replicated."""

  def gather_step(state, idx, labels, root_key, images):
    return step_fn(state, gather(images, idx), labels, root_key)

  if par.kind == "jit":
    return jax.jit(
        gather_step,
        in_shardings=(par.replicated, par.data, par.data, par.replicated,
                      par.replicated),
        out_shardings=(par.replicated, par.replicated),
        donate_argnums=0)
  # The pmap axis is the mesh's (the trainer's PMAP_AXIS).
  return jax.pmap(gather_step, axis_name=par.mesh.axis_names[0],
                  in_axes=(0, 0, 0, None, 0), donate_argnums=0)


def bind(trainer, src: DeviceSource, par):
  """The trainer with its train step replaced by one that gathers each batch
  from the images put on the devices, called as before:
  `(state, idx, labels, root_key) -> (state, metrics)`."""
  images = put_images(src.x_train, par)
  step = compile_step(trainer.step_fn, par)
  return dataclasses.replace(
      trainer,
      train_step=lambda state, idx, labels, root_key: step(
          state, idx, labels, root_key, images))
