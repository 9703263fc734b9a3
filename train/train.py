"""The training loop: data-parallel steps, evaluation, checkpoints, outputs."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import time
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from train import checkpoints
from train import config
from train import data
from train import device_data
from train import distributed
from train import grain_data
from train import models
from train import plots
from train import steps
from train.config import Config

PMAP_AXIS = "batch"
# Settings that may change between a run and its resumption.
_RESUMABLE_FIELDS = ("workdir", "data_dir", "progress", "log_every",
                     "ckpt_every", "ckpt_minutes", "ckpt_keep", "eval_every",
                     "eval_batch_size", "workers", "loader_memory_gb",
                     # The same loss to float rounding.
                     "targets")
# How the processes of a run find each other: not part of the run, so not
# saved in config.json (a resume may use other addresses).
_LAUNCH_FIELDS = ("distributed", "coordinator_address", "num_processes",
                  "process_id")


class TrainError(RuntimeError):
  """A run that cannot start or continue, with a message for the user."""


class Parallel:
  """Placement of state and batches for `--parallel jit` or `pmap`."""

  def __init__(self, kind: str):
    self.kind = kind
    if kind == "pmap" and jax.process_count() > 1:
      raise TrainError(
          "--parallel pmap runs in one process only; a multi-process run "
          f"({jax.process_count()} processes) needs --parallel jit.")
    # Every device of every process: under jax.distributed the mesh spans
    # all hosts, and each step is one global program.
    self.n = jax.device_count()
    self.processes = jax.process_count()
    axis = "data" if kind == "jit" else PMAP_AXIS
    # Auto axes: XLA propagates the batch sharding through the step. (The
    # default Explicit axes would make every op's sharding part of its type.)
    self.mesh = jax.make_mesh((self.n,), (axis,),
                              axis_types=(jax.sharding.AxisType.Auto,))
    self.data = NamedSharding(self.mesh, P(axis))
    self.replicated = NamedSharding(self.mesh, P())

  def rows(self, batch_size: int) -> Optional[np.ndarray]:
    """The rows of each global batch this process loads (None: all of them,
    in a single-process run)."""
    if self.processes == 1:
      return None
    return distributed.local_rows(self.data, batch_size)

  def put_batch(self, x: np.ndarray) -> jax.Array:
    """Splits a batch over the devices (asynchronously).

    In a single-process run `x` is the global batch. In a multi-process run it
    is this process's rows of it (`rows`), and the global array is assembled
    from every process's share without any process holding all of it.
    """
    if self.kind == "pmap":
      x = x.reshape((self.n, -1) + x.shape[1:])
    if self.processes > 1:
      return jax.make_array_from_process_local_data(self.data, x)
    return jax.device_put(x, self.data)

  def local_rows_of(self, x: jax.Array) -> np.ndarray:
    """This process's rows of a batch-sharded array, as NumPy (all of it in a
    single-process run)."""
    if self.processes == 1:
      return np.asarray(x)
    shards = {s.index[0].start or 0: s.data for s in x.addressable_shards}
    return np.concatenate([np.asarray(shards[k]) for k in sorted(shards)])

  def put_state(self, state):
    """Replicates a host state: one sharded copy (jit) or one per device."""
    if self.kind == "jit" and self.processes > 1:
      # Every process holds the same state (same seed, or the same
      # checkpoint); each puts its copy on its own devices.
      def put(x):
        if isinstance(x, jax.Array) and x.sharding == self.replicated:
          return x
        x = np.asarray(jax.device_get(x))
        return jax.make_array_from_process_local_data(self.replicated, x,
                                                      x.shape)
      return jax.tree.map(put, state)
    if self.kind == "jit":
      return jax.device_put(state, self.replicated)
    stack = lambda x: np.broadcast_to(x, (self.n,) + np.shape(x))
    return jax.device_put(jax.tree.map(stack, jax.device_get(state)), self.data)

  def unreplicate(self, tree):
    """One copy of replicated values (pmap keeps one per device)."""
    return tree if self.kind == "jit" else jax.tree.map(lambda x: x[0], tree)

  def compile(self, train_step, eval_step):
    """Jitted (or pmapped) train and eval steps; the state is donated."""
    if self.kind == "jit":
      train = jax.jit(
          train_step,
          in_shardings=(self.replicated, self.data, self.data, self.replicated),
          out_shardings=(self.replicated, self.replicated),
          donate_argnums=0,
      )
      evaluate = jax.jit(
          eval_step,
          in_shardings=(self.replicated, self.data, self.data, self.data),
          out_shardings=self.replicated,
      )
      return train, evaluate
    train = jax.pmap(train_step, axis_name=PMAP_AXIS, in_axes=(0, 0, 0, None),
                     donate_argnums=0)
    evaluate = jax.pmap(eval_step, axis_name=PMAP_AXIS)
    return train, evaluate


@dataclasses.dataclass
class Trainer:
  """What a run needs besides data: the compiled steps and initial state.

  Attributes:
    graphdef: the model's static graph.
    state: the initial state on the host (one copy).
    train_step: `(state, images, labels, root_key) -> (state, metrics)`,
      jitted or pmapped, with the state donated.
    eval_step: `(state, images, labels, mask) -> sums`, likewise.
    augment_fn: `(key, images, labels) -> (images, targets)` as used inside
      `train_step`.
    schedule: the learning-rate schedule.
    step_fn: `train_step` before jit or pmap (`--loader device` compiles
      its own around it).
  """

  graphdef: Any
  state: Any
  train_step: Any
  eval_step: Any
  augment_fn: Any
  schedule: Any
  step_fn: Any = None


def build(
    cfg: Config,
    par: Parallel,
    num_classes: int,
    image_shape: tuple[int, int, int],
    mean: np.ndarray,
    std: np.ndarray,
    steps_per_epoch: int,
    total_steps: int,
) -> Trainer:
  """Creates the model, optimiser and steps for a resolved `cfg`."""
  height, width, channels = image_shape
  axis_name = PMAP_AXIS if cfg.parallel == "pmap" else None
  model = models.create_model(
      cfg.model, num_classes, in_channels=channels,
      image_size=min(height, width), width=cfg.width, axis_name=axis_name,
      dtype=cfg.dtype, seed=cfg.seed)
  tx, schedule = steps.make_optimizer(cfg, steps_per_epoch, total_steps)
  graphdef, state = steps.init_state(model, tx)
  # Under jit, pair inside each device's block of the sharded batch; under
  # pmap each device already holds only its own block.
  augment_fn = functools.partial(
      steps.augment, cfg=cfg, num_classes=num_classes, mean=mean, std=std,
      groups=par.n if axis_name is None else 1, axis_name=axis_name)
  relabel = steps.make_relabel(cfg, model, num_classes)
  step_fn = steps.make_train_step(graphdef, tx, augment_fn, axis_name, relabel)
  train_step, eval_step = par.compile(
      step_fn, steps.make_eval_step(graphdef, mean, std, axis_name))
  return Trainer(graphdef, state, train_step, eval_step, augment_fn, schedule,
                 step_fn)


def _check_workdir_config(workdir: str, cfg: Config, write: bool = True
                          ) -> None:
  """Refuses to resume a run whose settings differ (other than logging).

  Every process checks; only the one with `write` (process 0) writes, by an
  atomic rename, so the others never read a half-written file.
  """
  path = os.path.join(workdir, "config.json")
  current = {k: v for k, v in dataclasses.asdict(cfg).items()
             if k not in _LAUNCH_FIELDS}
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    # A setting added since the run was saved had its default then (or the
    # value it stands for, in `BEFORE_ADDED`).
    saved = {k: saved.get(k, config.BEFORE_ADDED.get(k, getattr(Config, k,
                                                                None)))
             for k in current}
    diff = [k for k in current if k not in _RESUMABLE_FIELDS
            and saved[k] != current[k]]
    if diff:
      changes = ", ".join(f"{k}: {saved[k]!r} -> {current[k]!r}"
                          for k in diff)
      raise TrainError(
          f"{workdir} holds a run with other settings ({changes}); resuming it "
          "would mix two runs. Use another --workdir, or delete this one.")
  os.makedirs(workdir, exist_ok=True)
  if write:
    with open(path + ".tmp", "w") as f:
      json.dump(current, f, indent=2)
    os.replace(path + ".tmp", path)


class _Metrics:
  """Per-epoch records in `metrics.jsonl`, kept consistent with checkpoints."""

  def __init__(self, path: str, restored_step: int, write: bool = True):
    self.path = path
    self.write = write  # False on processes other than 0: memory only.
    self.records = []
    if not write:
      return
    if restored_step and os.path.exists(path):
      with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
      # Records after the restored checkpoint will be recomputed.
      self.records = [r for r in records if r["step"] <= restored_step]
    with open(path, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in self.records)

  def append(self, record: dict) -> None:
    self.records.append(record)
    if not self.write:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")


def _check_finite(loss: float, step: int, restored: Optional[int]) -> None:
  if not math.isfinite(loss):
    raise TrainError(
        f"training loss is {loss} at step {step}: the run diverged. "
        f"Checkpoints up to step {restored or 0} are kept; lower --lr, add "
        "--grad-clip or --warmup-epochs, then run with a new --workdir.")


def _evaluate(eval_step, par: Parallel, src: data.Source, batch_size: int,
              state) -> tuple[float, float]:
  """Test loss and accuracy over every test sample, each counted once."""
  sums = {"loss": 0.0, "correct": 0, "count": 0}
  batches = src.eval_batches(batch_size, par.rows(batch_size))
  for xb, yb, mask in data.prefetch(batches, par.put_batch):
    out = par.unreplicate(eval_step(state, xb, yb, mask))
    sums = jax.tree.map(lambda a, b: a + b, sums, out)
  sums = jax.device_get(sums)
  n = src.num_test
  # A real check, not an assert: it must hold under `python -O` too.
  if int(sums["count"]) != n:
    raise TrainError(
        f"evaluation counted {int(sums['count'])} test samples, expected "
        f"{n}: the eval batches lost or repeated some.")
  return float(sums["loss"]) / n, float(sums["correct"]) / n


def _restored_epoch_losses(progress: Optional[dict[str, Any]], step: int,
                           steps_per_epoch: int) -> list[jax.Array]:
  """The losses of the resumed epoch's steps before `step`, from a checkpoint.

  Kept so that a mid-epoch resume reports the whole epoch's mean train loss,
  bit for bit as an uninterrupted run does (float32 survives JSON exactly).
  """
  done = step % steps_per_epoch
  losses = (progress or {}).get("epoch_losses")
  if losses is not None and len(losses) == done:
    return [jnp.asarray(l, jnp.float32) for l in losses]
  if done:
    logging.warning(
        "the checkpoint at step %d holds no losses of its epoch's first %d "
        "steps (an older trainer wrote it): that epoch's train loss is the "
        "mean of its remaining steps only.", step, done)
  return []


def open_data(cfg: Config) -> data.Source:
  """The dataset through the loader `cfg.loader` asks for (see `--loader`)."""
  if cfg.loader == "device":
    return device_data.source(data.load(cfg.dataset, cfg.data_dir))
  if cfg.dataset != "imagefolder" or cfg.loader == "memory":
    return data.in_memory(data.load(cfg.dataset, cfg.data_dir))
  if not os.path.isdir(cfg.data_dir or ""):
    data.load(cfg.dataset, cfg.data_dir)  # raises, naming the layout
  files = data.scan_imagefolder(cfg.data_dir)
  if (cfg.loader == "auto"
      and grain_data.decoded_bytes(files) <= cfg.loader_memory_gb * 2**30):
    return data.in_memory(data.load(cfg.dataset, cfg.data_dir))
  return grain_data.source(files, cfg.image_size,
                           flip=cfg.flip is not False, workers=cfg.workers)


def train_and_evaluate(
    cfg: Config, stop_after: Optional[int] = None
) -> dict[str, Any]:
  """Trains, evaluating every `cfg.eval_every` epochs and at the end; resumes
  from `cfg.workdir` if possible.

  Args:
    cfg: the configuration (dataset-dependent defaults may be None).
    stop_after: stop (with a checkpoint) once this global step is done, as
      if interrupted; the schedule still spans all `cfg.epochs`.

  In a multi-process run (see `distributed.maybe_initialize`), every process
  calls this with the same `cfg`; each loads only its share of every batch,
  and only process 0 prints and writes files other than checkpoints.

  Returns:
    The last epoch's metrics, plus 'state': the final training state on the
    host (one copy, in every process).
  """
  distributed.maybe_initialize(cfg)
  main = distributed.is_main()
  src = open_data(cfg)
  if src.loader == "grain":
    # Recorded, so that resuming with --loader auto (and another memory
    # budget) cannot switch loaders. Grain crops in its workers.
    cfg = dataclasses.replace(cfg, loader="grain", crop_pad=0)
  height, width, _ = src.image_shape
  cfg = cfg.resolved(cfg.dataset, min(height, width))
  # Grain also flips in its workers; the step must not flip again.
  step_cfg = (dataclasses.replace(cfg, flip=False) if src.loader == "grain"
              else cfg)
  par = Parallel(cfg.parallel)
  for name in ("batch_size", "eval_batch_size"):
    if getattr(cfg, name) % par.n:
      raise TrainError(
          f"--{name.replace('_', '-')} {getattr(cfg, name)} is not divisible "
          f"by the {par.n} devices; each device takes an equal share.")
  steps_per_epoch = src.num_train // cfg.batch_size
  if steps_per_epoch == 0:
    raise TrainError(f"--batch-size {cfg.batch_size} is larger than the "
                     f"{src.num_train} training images.")
  total_steps = cfg.epochs * steps_per_epoch
  last_step = min(total_steps, stop_after or total_steps)
  workdir = cfg.default_workdir()
  _check_workdir_config(workdir, cfg, write=main)

  t = build(step_cfg, par, src.num_classes, src.image_shape, src.mean, src.std,
            steps_per_epoch, total_steps)
  if src.loader == "device":
    # Each step gathers its batch from the images on the devices.
    t = device_data.bind(t, src, par)
  state = t.state

  ckpt = checkpoints.Checkpointer(os.path.join(workdir, "checkpoints"),
                                 max_to_keep=cfg.ckpt_keep)
  save_policy = checkpoints.SavePolicy(cfg.ckpt_every or steps_per_epoch,
                                       cfg.ckpt_minutes, last_step)
  sharding = (par.replicated if cfg.parallel == "jit"
              else jax.sharding.SingleDeviceSharding(jax.devices()[0]))
  target = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
      state)
  train_rows = par.rows(cfg.batch_size)
  # Grain: one iterator over the whole run, whose state every checkpoint
  # holds. In memory: the step is the whole loader state.
  stream = (src.train_stream(cfg.batch_size, cfg.seed, total_steps,
                             train_rows) if src.train_stream else None)
  try:
    restored = ckpt.restore_latest(target, stream)
  except checkpoints.CheckpointError as e:
    ckpt.close()
    raise TrainError(str(e)) from e
  start_step, epoch_losses = 0, []
  if restored is not None:
    start_step, state, progress = restored
    epoch_losses = _restored_epoch_losses(progress, start_step,
                                          steps_per_epoch)
    if main:
      print(f"Resuming from step {start_step} of {total_steps} in {workdir}.")
  state = par.put_state(state)
  metrics_log = _Metrics(os.path.join(workdir, "metrics.jsonl"), start_step,
                         write=main)

  root_key = jax.random.key(cfg.seed)
  if cfg.parallel == "jit":
    # Replicated over every process's devices, as a multi-process jit needs.
    root_key = jax.jit(lambda: jax.random.key(cfg.seed),
                       out_shardings=par.replicated)()

  if start_step == 0:
    # Step 0's batch and key, augmented as the jit step does (under pmap each
    # device draws its own boxes, so the picture is representative only).
    x0, y0 = next(iter(src.train_batches(cfg.batch_size, cfg.seed, 0, 1,
                                         train_rows)))
    grid_fn = functools.partial(t.augment_fn, groups=par.n, axis_name=None,
                                targets="dense")
    key0 = jax.random.fold_in(root_key, 0)
    if cfg.parallel == "jit":
      # The global batch, as the train step sees it; process 0 draws its
      # own rows (all of them in a single-process run).
      images, targets = jax.jit(grid_fn, out_shardings=par.data)(
          key0, par.put_batch(x0), par.put_batch(y0))
      images, targets = par.local_rows_of(images), par.local_rows_of(targets)
    else:
      images, targets = jax.jit(grid_fn)(key0, x0, y0)
    if main:
      plots.save_batch_grid(
          np.asarray(images) * src.std + src.mean, np.asarray(targets),
          src.class_names, os.path.join(workdir, "augmented_batch.png"))

  evaluate = functools.partial(_evaluate, t.eval_step, par, src,
                               cfg.eval_batch_size)

  if stream is None:
    batches = data.prefetch(
        src.train_batches(cfg.batch_size, cfg.seed, start_step, last_step,
                          train_rows),
        par.put_batch)
  else:
    batches = stream.batches(last_step, par.put_batch)
  bar = tqdm.tqdm(total=total_steps, initial=start_step, unit="step",
                  disable=not (cfg.progress and main), dynamic_ncols=True)
  last_saved = start_step or None
  tick, tick_step = time.perf_counter(), start_step
  record = None
  try:
    for step, (x, y) in enumerate(batches, start=start_step + 1):
      state, out = t.train_step(state, x, y, root_key)
      epoch_losses.append(par.unreplicate(out["loss"]))
      if step % cfg.log_every == 0 or step == last_step:
        loss = float(epoch_losses[-1])
        _check_finite(loss, step, last_saved)
        now = time.perf_counter()
        rate = (step - tick_step) * cfg.batch_size / (now - tick)
        bar.set_postfix(loss=f"{loss:.4f}", img_per_s=f"{rate:.0f}")
        bar.update(step - tick_step)
        tick, tick_step = now, step
      if step % steps_per_epoch == 0:
        epoch = step // steps_per_epoch
        train_loss = float(jnp.mean(jnp.stack(epoch_losses)))
        _check_finite(train_loss, step, last_saved)
        record = dict(epoch=epoch, step=step, train_loss=train_loss,
                      lr=float(t.schedule(step)))
        line = f"epoch {epoch:3d}  train loss {train_loss:.4f}"
        if epoch % cfg.eval_every == 0 or step == total_steps:
          test_loss, test_acc = evaluate(state)
          record.update(test_loss=test_loss, test_accuracy=test_acc)
          line += (f"  test loss {test_loss:.4f}  test accuracy "
                   f"{test_acc:.4f}")
        metrics_log.append(record)
        if main:
          bar.write(line)
        epoch_losses = []
      if save_policy.should_save(step):
        # Never checkpoint a diverged state.
        _check_finite(float(par.unreplicate(out["loss"])), step, last_saved)
        # Orbax copies the arrays to the host before returning, so the next
        # step may donate their buffers while the files are written.
        ckpt.save(step, par.unreplicate(state), stream,
                  progress=dict(epoch_losses=[float(l) for l in epoch_losses]))
        save_policy.saved()
        last_saved = step
  finally:
    bar.close()
    ckpt.close()

  if record is None or record["step"] != last_step:
    test_loss, test_acc = evaluate(state)
    record = dict(step=last_step, test_loss=test_loss, test_accuracy=test_acc)
  elif "test_accuracy" not in record:
    # Stopped early (`stop_after`) on an epoch that --eval-every skips.
    test_loss, test_acc = evaluate(state)
    record = dict(record, test_loss=test_loss, test_accuracy=test_acc)
  if metrics_log.records and main:
    plots.save_curves(metrics_log.records,
                      os.path.join(workdir, "curves.png"))
  if last_step == total_steps and main:
    print(f"Done: step {total_steps}, test accuracy "
          f"{record['test_accuracy']:.4f}. Outputs in {workdir}/.")
  return dict(record, state=jax.device_get(par.unreplicate(state)))
