"""Train-step overhead: one jitted train step with each augmentation vs none.

Uses the trainer's own public pieces (`train.models.create_model`,
`train.config.Config`, `train.steps.augment`, `make_optimizer`, `init_state`,
`make_train_step`), so the step timed is the step `python -m train` runs:
normalise, random crop and flip, `--aug`, forward, soft-target
cross-entropy, backward, SGD. Inputs are a synthetic CIFAR-shaped uint8
batch. `prob` is set to 1 so that the augmentation runs on every step (the
worst case); its mode is the trainer's default unless `--train-mode` says
otherwise. Only ratios to the `--aug none` step are reported.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from bench import timing


def make_step(model_name: str, aug: str, *, batch: int, mode, num_classes=10,
              size=32):
  """A jitted, state-donating `() -> loss` closure for one model and aug."""
  from train import config as config_lib  # pylint: disable=g-import-not-at-top
  from train import models  # pylint: disable=g-import-not-at-top
  from train import steps  # pylint: disable=g-import-not-at-top

  cfg = config_lib.Config(dataset="cifar10", model=model_name, aug=aug,
                          batch_size=batch, prob=1.0, mode=mode)
  cfg = cfg.resolved("cifar10", size)
  model = models.create_model(model_name, num_classes, in_channels=3,
                              image_size=size)
  tx, _ = steps.make_optimizer(cfg, steps_per_epoch=100, total_steps=1000)
  graphdef, state = steps.init_state(model, tx)
  mean = np.full((3,), 120.0, np.float32)
  std = np.full((3,), 60.0, np.float32)
  augment_fn = functools.partial(steps.augment, cfg=cfg,
                                 num_classes=num_classes, mean=mean, std=std)
  step = jax.jit(steps.make_train_step(graphdef, tx, augment_fn),
                 donate_argnums=0)
  return step, state, cfg


class Stepper:
  """Calls a donated step, carrying its state; the step folds in its key."""

  def __init__(self, step, state, images, labels, key):
    self.step, self.state = step, state
    self.images, self.labels, self.key = images, labels, key

  def __call__(self):
    self.state, metrics = self.step(self.state, self.images, self.labels,
                                    self.key)
    return metrics["loss"]


def section(args, log) -> tuple[list, list]:
  """Rows `train` per model: each aug's step time over the `none` step's."""
  num_classes, size, batch = 10, 32, args.train_batch
  rng = np.random.default_rng(0)
  images = jax.device_put(
      rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8))
  labels = jax.device_put(
      rng.integers(0, num_classes, size=batch).astype(np.int32))
  key = jax.random.key(0)
  rows, skipped = [], []
  shape = f"{batch}x{size}x{size}x3"
  for model_name in args.train_models:
    log(f"  train step {model_name} batch {batch} ...")
    steppers, modes = {}, {}
    for aug in ("none",) + tuple(args.train_augs):
      try:
        step, state, cfg = make_step(model_name, aug, batch=batch,
                                     mode=args.train_mode)
      except Exception as e:  # pylint: disable=broad-except
        skipped.append(f"train-step {model_name} {aug}: "
                       f"{type(e).__name__}: {e}")
        continue
      steppers[aug] = Stepper(step, state, images, labels, key)
      modes[aug] = cfg.mode
    if "none" not in steppers:
      continue
    base, timed, failed = timing.interleaved(
        steppers.pop("none"), steppers, reps=args.reps,
        target_s=args.target_ms / 1e3, max_inner=100)
    rows.append(timing.row(
        "train", f"{model_name} step, aug none", "-", "uint8", shape,
        base.summary(), "the denominator: crop+flip, fwd, bwd, SGD"))
    for aug, t in timed.items():
      rows.append(timing.row(
          "train", f"{model_name} step, aug {aug}", modes[aug], "uint8",
          shape, t.summary(), "x copy here = step time / aug-none step time"))
    skipped += [f"train-step {model_name} {k}: {v}" for k, v in failed.items()]
  return rows, skipped
