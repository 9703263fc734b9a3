"""The training loop: data-parallel steps, evaluation, checkpoints, outputs."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from train import checkpoints
from train import config
from train import data
from train import device_data
from train import distributed
from train import loaders
from train import metrics
from train import models
from train import plots
from train import preemption
from train import steps
from train.config import Config
from train.distributed import PMAP_AXIS
from train.distributed import Parallel

# Settings that may change between a run and its resumption.
_RESUMABLE_FIELDS = ("workdir", "data_dir", "progress", "log_every",
                     "ckpt_every", "ckpt_minutes", "ckpt_keep", "eval_every",
                     "eval_batch_size", "workers", "loader_memory_gb",
                     "tensorboard", "compilation_cache",
                     # The same loss to float rounding.
                     "targets")
# How the processes of a run find each other: not part of the run, so not
# saved in config.json (a resume may use other addresses).
_LAUNCH_FIELDS = ("distributed", "coordinator_address", "num_processes",
                  "process_id")


class TrainError(RuntimeError):
  """A run that cannot start or continue, with a message for the user."""


class Interrupted(TrainError):
  """A run stopped by SIGTERM or SIGINT after saving a checkpoint.

  Attributes:
    signum: the signal (None: one that another process of the run got).
  """

  def __init__(self, message: str, signum: Optional[int]):
    super().__init__(message)
    self.signum = signum


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
    schedule: the learning-rate schedule, a function of the update count.
    grad_accum: steps per update (`--grad-accum`).
    step_fn: `train_step` before jit or pmap (`--loader device` compiles
      its own around it).
  """

  graphdef: Any
  state: Any
  train_step: Any
  eval_step: Any
  augment_fn: Any
  schedule: Any
  grad_accum: int = 1
  step_fn: Any = None

  def lr_at(self, step: int) -> float:
    """The learning rate that global step `step` (1-based) used: that of
    the update it made or accumulated into."""
    return float(self.schedule((step - 1) // self.grad_accum))


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
  # The schedule counts optimiser updates: one per --grad-accum steps.
  k = cfg.grad_accum
  tx, schedule = steps.make_optimizer(cfg, steps_per_epoch / k,
                                      max(total_steps // k, 1))
  if k > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=k)
  graphdef, state = steps.init_state(model, tx)
  # Under jit, pair inside each device's block of the sharded batch; under
  # pmap each device already holds only its own block.
  augment_fn = functools.partial(
      steps.augment, cfg=cfg, num_classes=num_classes, mean=mean, std=std,
      groups=par.n if axis_name is None else 1, axis_name=axis_name)
  relabel = steps.make_relabel(cfg, model, num_classes)
  step_fn = steps.make_train_step(graphdef, tx, augment_fn, axis_name, relabel)
  if cfg.ema_decay:
    state = steps.init_ema(state)
    step_fn = steps.with_ema(step_fn, cfg.ema_decay)
  train_step, eval_step = par.compile(
      step_fn,
      steps.make_eval_step(graphdef, mean, std, axis_name,
                           top5=num_classes >= 100))
  return Trainer(graphdef, state, train_step, eval_step, augment_fn, schedule,
                 k, step_fn)


def _check_workdir_path(workdir: str) -> None:
  """Refuses a --workdir that is a file or lies under one, before any data
  is read."""
  path = os.path.abspath(workdir)
  while not os.path.isdir(path):
    if os.path.exists(path):
      where = ("is a file" if path == os.path.abspath(workdir)
               else f"lies under {path}, which is a file")
      raise TrainError(f"--workdir {workdir} {where}, not a directory; pass "
                       "another --workdir.")
    path = os.path.dirname(path)


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
    # value it stands for, in `BEFORE_ADDED`; the Grain loader always did
    # what is now --crop resized).
    before = dict(config.BEFORE_ADDED,
                  crop="resized" if saved.get("loader") == "grain" else None)
    saved = {k: saved.get(k, before.get(k, getattr(Config, k, None)))
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


def _check_finite(loss: float, step: int, restored: Optional[int]) -> None:
  if not math.isfinite(loss):
    raise TrainError(
        f"training loss is {loss} at step {step}: the run diverged. "
        f"Checkpoints up to step {restored or 0} are kept; lower --lr, add "
        "--grad-clip or --warmup-epochs, then run with a new --workdir.")


def _evaluate(eval_step, par: Parallel, batches, n: int,
              state) -> dict[str, float]:
  """Loss and accuracy (and top-5 accuracy, where the eval step counts it)
  over the `n` samples of `batches`, each counted once."""
  sums = None
  for xb, yb, mask in data.prefetch(batches, par.put_batch):
    out = par.unreplicate(eval_step(state, xb, yb, mask))
    sums = out if sums is None else jax.tree.map(lambda a, b: a + b, sums,
                                                 out)
  sums = jax.device_get(sums)
  # A real check, not an assert: it must hold under `python -O` too.
  if int(sums["count"]) != n:
    raise TrainError(
        f"evaluation counted {int(sums['count'])} samples, expected {n}: "
        "the eval batches lost or repeated some.")
  out = dict(loss=float(sums["loss"]) / n, accuracy=float(sums["correct"]) / n)
  if "correct5" in sums:
    out["top5_accuracy"] = float(sums["correct5"]) / n
  return out


def _line(record: dict[str, Any]) -> str:
  """An epoch's line on the terminal."""
  line = f"epoch {record['epoch']:3d}  train loss {record['train_loss']:.4f}"
  for weights in ("", "ema_"):
    for split in ("val", "test"):
      for key in ("loss", "accuracy", "top5_accuracy"):
        name = f"{weights}{split}_{key}"
        if name in record:
          line += (f"  {name.replace('_', ' ').replace('top5', 'top-5')} "
                   f"{record[name]:.4f}")
  return line


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


def _use_compilation_cache(path: str) -> None:
  """JAX's persistent compilation cache in `path`, for every compiled
  program (JAX's default skips those that compile in under a second)."""
  jax.config.update("jax_compilation_cache_dir", os.path.abspath(path))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


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

  SIGTERM and SIGINT stop the run after the step in progress: it saves a
  checkpoint and raises `Interrupted` (in a multi-process run the processes
  agree every `cfg.log_every` steps on whether any of them got a signal).

  Returns:
    The last epoch's metrics, plus 'state': the final training state on the
    host (one copy, in every process).
  """
  workdir = cfg.default_workdir()
  _check_workdir_path(workdir)
  if cfg.tensorboard:
    try:
      metrics.require_tensorboard()
    except ImportError as e:
      raise TrainError(str(e)) from None
  if cfg.compilation_cache:
    _use_compilation_cache(cfg.compilation_cache)
  distributed.maybe_initialize(cfg)
  main = distributed.is_main()
  if cfg.parallel == "pmap" and jax.process_count() > 1:
    raise TrainError(
        "--parallel pmap runs in one process only; a multi-process run "
        f"({jax.process_count()} processes) needs --parallel jit.")
  src = loaders.open_data(cfg)
  # What the loader fixed is recorded, so that a resumed run (say, with
  # --loader auto and another memory budget) reads its data the same way.
  cfg = dataclasses.replace(cfg, **src.settings)
  height, width, _ = src.image_shape
  cfg = cfg.resolved(cfg.dataset, min(height, width))
  step_cfg = dataclasses.replace(cfg, **src.step_settings)
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
  _check_workdir_config(workdir, cfg, write=main)
  if main:
    for warning in steps.schedule_warnings(
        cfg, steps_per_epoch / cfg.grad_accum,
        max(total_steps // cfg.grad_accum, 1)):
      logging.warning(warning)
    if total_steps % cfg.grad_accum:
      logging.warning(
          "--grad-accum %d does not divide the run's %d steps: the "
          "gradients of the last %d are never applied.", cfg.grad_accum,
          total_steps, total_steps % cfg.grad_accum)

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
  try:
    logs = metrics.Logs(workdir, start_step, write=main,
                        tensorboard=cfg.tensorboard)
  except metrics.MetricsError as e:
    ckpt.close()
    raise TrainError(str(e)) from None

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

  def evaluate(state, split: str) -> dict[str, float]:
    """`<split>_loss`, `<split>_accuracy`, ... of the weights, and with
    --ema-decay `ema_<split>_...` of their moving average."""
    batches, n = ((src.val_batches, src.num_val) if split == "val"
                  else (src.eval_batches, src.num_test))
    rows = par.rows(cfg.eval_batch_size)
    out = {}
    for prefix, weights in (("", state), ("ema_", state.get("ema"))):
      if weights is not None:
        result = _evaluate(t.eval_step, par, batches(cfg.eval_batch_size,
                                                     rows), n, weights)
        out.update({f"{prefix}{split}_{k}": v for k, v in result.items()})
    return out

  # With --val-split the epochs are evaluated on the validation set, and the
  # test set only once, at the end.
  epoch_split = "val" if src.num_val else "test"
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
  # Throughput is timed from the end of the run's first step (which
  # compiles), and leaves out the evaluations.
  tick = tick_step = epoch_tick = epoch_tick_step = None
  window = []  # the losses since the last step record
  record = None
  try:
    with preemption.Signals() as signals:
      for step, (x, y) in enumerate(batches, start=start_step + 1):
        state, out = t.train_step(state, x, y, root_key)
        loss = par.unreplicate(out["loss"])
        epoch_losses.append(loss)
        window.append(loss)
        if tick is None:
          jax.block_until_ready(loss)
          tick = epoch_tick = time.perf_counter()
          tick_step = epoch_tick_step = step
        log_step = step % cfg.log_every == 0 or step == last_step
        if log_step:
          mean_loss = float(jnp.mean(jnp.stack(window)))
          _check_finite(mean_loss, step, last_saved)
          now = time.perf_counter()
          step_record = dict(step=step, loss=mean_loss, lr=t.lr_at(step))
          if step > tick_step:
            step_record["images_per_second"] = (
                (step - tick_step) * cfg.batch_size / (now - tick))
            bar.set_postfix(loss=f"{mean_loss:.4f}", img_per_s=(
                f"{step_record['images_per_second']:.0f}"))
          logs.step(step_record)
          bar.update(step - bar.n)
          tick, tick_step, window = now, step, []
        if step % steps_per_epoch == 0:
          epoch = step // steps_per_epoch
          train_loss = float(jnp.mean(jnp.stack(epoch_losses)))
          _check_finite(train_loss, step, last_saved)
          now = time.perf_counter()
          record = dict(epoch=epoch, step=step, train_loss=train_loss,
                        lr=t.lr_at(step))
          if step > epoch_tick_step:
            record["images_per_second"] = (
                (step - epoch_tick_step) * cfg.batch_size
                / (now - epoch_tick))
          if epoch % cfg.eval_every == 0 or step == total_steps:
            record.update(evaluate(state, epoch_split))
          if step == total_steps and epoch_split == "val":
            record.update(evaluate(state, "test"))
          logs.epoch(record)
          if main:
            bar.write(_line(record))
          epoch_losses = []
          tick = epoch_tick = time.perf_counter()
          tick_step = epoch_tick_step = step
        if par.processes == 1:
          stop = signals.received is not None
        else:  # a collective: only where every process takes it
          stop = log_step and distributed.any_process(
              signals.received is not None)
        if stop or save_policy.should_save(step):
          # Never checkpoint a diverged state.
          _check_finite(float(loss), step, last_saved)
          # Orbax copies the arrays to the host before returning, so the
          # next step may donate their buffers while the files are written.
          ckpt.save(step, par.unreplicate(state), stream,
                    progress=dict(epoch_losses=[float(l)
                                                for l in epoch_losses]))
          save_policy.saved()
          last_saved = step
        if stop:
          raise Interrupted(
              f"stopped by {preemption.name(signals.received)} after step "
              f"{step} of {total_steps}, and saved checkpoint "
              f"{os.path.join(ckpt.directory, str(step))}: run the same "
              f"command to resume from step {step}.", signals.received)
  finally:
    bar.close()
    batches.close()  # stops a loader's worker processes
    ckpt.close()  # waits for the last save
    logs.close()

  if record is None or record["step"] != last_step:
    record = dict(step=last_step, **evaluate(state, "test"))
  elif "test_accuracy" not in record:
    # Stopped early (`stop_after`) on an epoch that --eval-every skips, or
    # on one evaluated on the validation set.
    record.update(evaluate(state, "test"))
  if logs.epochs.records and main:
    plots.save_curves(logs.epochs.records,
                      os.path.join(workdir, "curves.png"))
  if last_step == total_steps and main:
    print(f"Done: step {total_steps}, test accuracy "
          f"{record['test_accuracy']:.4f}. Outputs in {workdir}/.")
  return dict(record, state=jax.device_get(par.unreplicate(state)))
