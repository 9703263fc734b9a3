"""Checkpoints: what is skipped, what stops a run, and when they are saved."""

import dataclasses
import json
import os

import jax
import numpy as np
import optax
import pytest

from train import checkpoints
from train import config
from train import train


def _save(directory, step, state):
  ckpt = checkpoints.Checkpointer(str(directory))
  ckpt.save(step, state)
  ckpt.close()


def test_a_checkpoint_of_another_structure_stops_naming_what_differs(
    tmp_path):
  _save(tmp_path, 5, {"w": np.zeros(3), "b": np.zeros(2), "step": np.int32(5)})
  target = {"w": np.zeros(4), "c": np.zeros(2), "step": np.int32(0)}
  with pytest.raises(checkpoints.CheckpointError) as e:
    checkpoints.Checkpointer(str(tmp_path)).restore_latest(target)
  message = str(e.value)
  assert os.path.join(str(tmp_path), "5") in message
  assert "not in the checkpoint: c" in message
  assert "not in this run's state: b" in message
  assert "w: saved (3,) float64, expected (4,) float64" in message



@pytest.mark.slow
def test_a_mismatched_checkpoint_keeps_the_run_and_its_metrics(tmp_path,
                                                               fast_compile):
  """A run whose state no longer fits its checkpoint (say, after an optax
  upgrade) must stop, not start again from step 0 and empty its metrics."""
  cfg = config.Config(workdir=str(tmp_path), model="tiny", epochs=1,
                      batch_size=256, progress=False)
  _save(tmp_path / "checkpoints", 3, {"params": {"w": np.zeros(2)},
                                      "step": np.int32(3)})
  metrics = tmp_path / "metrics.jsonl"
  metrics.write_text(json.dumps({"epoch": 1, "step": 3}) + "\n")
  with pytest.raises(train.TrainError, match=r"checkpoints/3 does not fit"):
    train.train_and_evaluate(cfg)
  assert metrics.read_text() == json.dumps({"epoch": 1, "step": 3}) + "\n"
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3"]


def test_save_policy_every_n_steps_or_minutes_whichever_is_rarer():
  now = [0.0]
  policy = checkpoints.SavePolicy(every=10, minutes=1, last_step=95,
                                  clock=lambda: now[0], agree=lambda d: d)
  saved = []
  for step in range(1, 96):
    now[0] += 3.0  # 3 s a step: 10 steps are 30 s, less than a minute
    if policy.should_save(step):
      policy.saved()
      saved.append(step)
  assert saved == [20, 40, 60, 80, 95]
  # Slow steps: every 10 steps; 0 minutes: every 10 steps as well.
  for seconds, minutes in ((10.0, 1), (0.0, 0)):
    now[0] = 0.0
    policy = checkpoints.SavePolicy(every=10, minutes=minutes, last_step=95,
                                    clock=lambda: now[0], agree=lambda d: d)
    saved = []
    for step in range(1, 96):
      now[0] += seconds
      if policy.should_save(step):
        policy.saved()
        saved.append(step)
    assert saved == [10, 20, 30, 40, 50, 60, 70, 80, 90, 95]


def test_default_checkpoints_are_per_epoch_at_most_every_10_minutes():
  cfg = config.parse_args([])
  assert cfg.ckpt_every is None and cfg.ckpt_minutes == 10 and cfg.ckpt_keep == 2


def test_an_optax_state_round_trips(tmp_path):
  # Named-tuple fields (optax) are stored as dict keys: not a mismatch.
  tx = optax.sgd(0.1, momentum=0.9)
  state = {"params": {"w": np.ones(3, np.float32)}, "step": np.int32(2)}
  state["opt_state"] = tx.init(state["params"])
  _save(tmp_path, 2, state)
  step, restored, _ = checkpoints.Checkpointer(str(tmp_path)).restore_latest(
      jax.tree.map(np.zeros_like, state))
  assert step == 2
  assert jax.tree.structure(restored) == jax.tree.structure(state)


def test_a_run_saved_before_a_setting_existed_still_resumes(tmp_path):
  cfg = config.Config(workdir=str(tmp_path))
  train._check_workdir_config(str(tmp_path), cfg)  # pylint: disable=protected-access
  saved = json.loads((tmp_path / "config.json").read_text())
  del saved["loader"], saved["image_size"]  # as written by an older trainer
  (tmp_path / "config.json").write_text(json.dumps(saved))
  train._check_workdir_config(str(tmp_path), cfg)  # pylint: disable=protected-access
  changed = config.Config(workdir=str(tmp_path), image_size=64)
  with pytest.raises(train.TrainError, match="image_size: 224 -> 64"):
    train._check_workdir_config(str(tmp_path), changed)  # pylint: disable=protected-access


def test_runs_saved_before_the_new_settings_still_resume(tmp_path):
  """A config.json written before --crop, --ema-decay, --val-split, ...
  existed: those settings had their defaults, and Grain always did what is
  now --crop resized."""
  new = ("crop", "val_split", "grad_accum", "ema_decay", "tensorboard",
         "compilation_cache")
  check = train._check_workdir_config  # pylint: disable=protected-access
  for loader, crop in (("memory", None), ("grain", "resized")):
    cfg = config.Config(dataset="imagefolder", data_dir="d", loader=loader,
                        crop=crop)
    old = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in new}
    workdir = tmp_path / loader
    workdir.mkdir()
    (workdir / "config.json").write_text(json.dumps(old))
    check(str(workdir), cfg, write=False)  # the same run
    for changed in (dict(crop="pad"), dict(ema_decay=0.999)):
      with pytest.raises(train.TrainError, match=f"{next(iter(changed))}: "):
        check(str(workdir), dataclasses.replace(cfg, **changed), write=False)
