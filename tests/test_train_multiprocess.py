"""Multi-process training with jax.distributed: 2 processes x 4 CPU devices
on 127.0.0.1 against 1 process x 8 devices.

The slicing tests are pure and fast (this process's 8 devices, split into two
pretend processes). The end-to-end test launches two processes, one set up by
flags and one by environment variables, compares their run bit for bit with a
single-process 8-device run of the same config, and resumes its mid-epoch
checkpoint in this process. (Two processes killed and resumed: the kill -9
test in test_train_grain.)
"""

import contextlib
import dataclasses
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from train import config
from train import data
from train import distributed
from train import steps
from train import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 1438 digits // 480 = 2 steps per epoch, 4 steps in all; three eval batches
# of 128, the last one padded. Per-sample CutMix/MixUp draws, crops and flips.
RUN_ARGS = ["--model", "tiny", "--epochs", "2", "--batch-size", "480",
            "--eval-batch-size", "128", "--warmup-epochs", "0",
            "--ckpt-every", "3", "--ckpt-minutes", "0", "--aug", "mix",
            "--mode", "elem",
            "--prob", "1.0", "--flip", "--no-progress"]
RESUME_AT = 3  # a checkpoint mid-epoch 2
AUG_STEP = 1  # the step whose augmented batch the workers save

# Each of the two processes saves its process-local rows of step AUG_STEP's
# augmented batch, then trains.
_WORKER = """
import dataclasses, functools, sys
import jax, numpy as np
from train import config, data, distributed, steps, train
cfg = config.parse_args(sys.argv[2:])
distributed.maybe_initialize(cfg)
assert jax.process_count() == 2 and jax.device_count() == 8
ds = data.load("digits")
rcfg = cfg.resolved("digits", 8)
par = train.Parallel("jit")
rows = par.rows(cfg.batch_size)
x, y = next(data.train_batches(ds, cfg.batch_size, cfg.seed, {step},
                               {step} + 1, rows=rows))
aug = jax.jit(functools.partial(
    steps.augment, cfg=rcfg, num_classes=10, mean=ds.mean, std=ds.std,
    groups=par.n, targets="dense"), out_shardings=par.data)
key = jax.jit(lambda: jax.random.fold_in(jax.random.key(cfg.seed), {step}),
              out_shardings=par.replicated)()
images, targets = aug(key, par.put_batch(x), par.put_batch(y))
np.savez(sys.argv[1], rows=rows, images=par.local_rows_of(images),
         targets=par.local_rows_of(targets))
train.train_and_evaluate(cfg)
""".format(step=AUG_STEP)


# ---------------------------------------------------------------------------
# The data split (fast, in this process's 8 devices)


def _fake_two_processes(mesh_devices):
  """A batch sharding over 8 devices, as if devices 0-3 and 4-7 were two
  processes (in the mesh's own, possibly shuffled, order)."""
  sharding = NamedSharding(Mesh(np.array(mesh_devices), ("data",)), P("data"))
  rows = functools.partial(distributed.local_rows, sharding,
                           process_of=lambda d: d.id // 4)
  return sharding, rows


@pytest.mark.parametrize("order", ["sorted", "shuffled"])
def test_process_rows_partition_the_global_batch(order):
  devices = list(jax.devices())
  if order == "shuffled":
    devices = [devices[i] for i in (5, 0, 7, 2, 4, 1, 6, 3)]
  sharding, rows = _fake_two_processes(devices)
  for batch in (8, 16, 480):
    parts = [rows(batch, p) for p in (0, 1)]
    assert all(len(r) == batch // 2 for r in parts)
    # No duplicates, no gaps.
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)),
                                  np.arange(batch))
    # Each process's rows are exactly what its devices hold.
    for p, r in enumerate(parts):
      held = set()
      for d, index in sharding.devices_indices_map((batch,)).items():
        if d.id // 4 == p:
          held.update(range(batch)[index[0]])
      assert held == set(r.tolist())


def test_process_slices_of_train_batches_are_the_global_batch():
  ds = data.load_digits()
  _, rows = _fake_two_processes(jax.devices())
  batch, seed = 48, 3
  steps_per_epoch = len(ds.x_train) // batch
  for start in (0, steps_per_epoch - 1, steps_per_epoch + 2):  # 2 epochs
    global_x, global_y = next(data.train_batches(ds, batch, seed, start,
                                                 start + 1))
    idx = data.train_batch_indices(seed, start, steps_per_epoch,
                                   len(ds.x_train), batch)
    np.testing.assert_array_equal(global_y, ds.y_train[idx])
    local = [next(data.train_batches(ds, batch, seed, start, start + 1,
                                     rows=rows(batch, p))) for p in (0, 1)]
    # Row-major devices: process 0 holds the first half, process 1 the rest.
    np.testing.assert_array_equal(
        np.concatenate([x for x, _ in local]), global_x)
    np.testing.assert_array_equal(
        np.concatenate([y for _, y in local]), global_y)
  # Another seed or epoch: another order.
  other = data.train_batch_indices(seed + 1, 0, steps_per_epoch,
                                   len(ds.x_train), batch)
  assert not np.array_equal(other, data.train_batch_indices(
      seed, 0, steps_per_epoch, len(ds.x_train), batch))


def test_process_slices_of_eval_batches_count_each_sample_once():
  n, batch = 359, 128  # the digits test split: the last batch is padded
  x = np.arange(n).reshape(n, 1, 1, 1)
  y = np.arange(n)
  _, rows = _fake_two_processes(jax.devices())
  seen = []
  for p in (0, 1):
    for xb, yb, mask in data.eval_batches(x, y, batch, rows=rows(batch, p)):
      assert len(xb) == len(yb) == len(mask) == batch // 2
      assert not xb[~mask].any() and not yb[~mask].any()  # zero padding
      seen.append(yb[mask])
  np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(n))


def test_when_a_run_joins_jax_distributed(monkeypatch):
  for name in list(distributed.ENV.values()) + [
      "SLURM_STEP_NODELIST", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE",
      "OMPI_MCA_orte_hnp_uri"]:
    monkeypatch.delenv(name, raising=False)
  cfg = config.Config()
  assert not distributed.wanted(cfg)  # a plain single-process run
  assert distributed.wanted(dataclasses.replace(cfg, distributed=True))
  explicit = dataclasses.replace(cfg, coordinator_address="127.0.0.1:1",
                                 num_processes=2, process_id=1)
  assert distributed.wanted(explicit)
  assert not distributed.wanted(dataclasses.replace(explicit,
                                                    distributed=False))
  assert not distributed.wanted(dataclasses.replace(cfg, num_processes=1))
  monkeypatch.setenv("SLURM_STEP_NODELIST", "node[1-2]")
  monkeypatch.setenv("SLURM_NTASKS", "1")
  assert not distributed.wanted(cfg)  # one task: nothing to join
  monkeypatch.setenv("SLURM_NTASKS", "2")
  assert distributed.wanted(cfg)
  # Environment variables stand in for the flags; flags win.
  monkeypatch.setenv("JAX_PROCESS_ID", "3")
  monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
  assert distributed.launch_settings(cfg) == dict(
      coordinator_address=None, num_processes=4, process_id=3)
  assert distributed.launch_settings(explicit) == dict(
      coordinator_address="127.0.0.1:1", num_processes=2, process_id=1)


# ---------------------------------------------------------------------------
# Two real processes


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _child_env(tmp_path, **extra):
  env = {k: v for k, v in os.environ.items()
         if k not in distributed.ENV.values()}
  env.update(
      # Replaces this process's 8-device flag.
      XLA_FLAGS="--xla_force_host_platform_device_count=4",
      JAX_PLATFORMS="cpu",
      # Faster compiles; the in-process check below uses the same setting.
      JAX_DISABLE_MOST_OPTIMIZATIONS="1",
      # A later launch reuses an earlier one's compiled steps.
      JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  env.update(extra)
  return env


def _launch(cmds, envs, logs, timeout, kill_when=None):
  """Runs the processes; kills all of them on a timeout or any failure.

  With `kill_when`, a condition polled while they run: once it holds, every
  process (with its children, Grain's workers) gets SIGKILL, as from
  `kill -9`, and each must still have been running then.
  """
  procs = []
  killed = False
  try:
    for cmd, env, log in zip(cmds, envs, logs):
      with open(log, "w") as out:
        procs.append(subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True))
    deadline = time.time() + timeout
    while time.time() < deadline:
      codes = [p.poll() for p in procs]
      if any(c not in (None, 0) for c in codes) or all(c == 0 for c in codes):
        break
      if kill_when is not None and kill_when():
        killed = True
        break
      time.sleep(0.05 if kill_when else 0.2)
  finally:
    for p in procs:
      if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
          os.killpg(p.pid, signal.SIGKILL)
      p.wait()
  outputs = [open(log).read() for log in logs]
  for p, out in zip(procs, outputs):
    expected = -signal.SIGKILL if killed else 0
    assert p.returncode == expected, (
        f"exit {p.returncode} (-9: timed out or killed)\n" + out[-3000:])
  return outputs


def _restore(workdir, step):
  """A checkpoint of a run, restored onto this process's first device."""
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  with ocp.CheckpointManager(
      os.path.join(workdir, "checkpoints"),
      item_handlers=ocp.StandardCheckpointHandler()) as manager:
    target = jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
        manager.item_metadata(step))
    return jax.device_get(
        manager.restore(step, args=ocp.args.StandardRestore(target)))


def _records(workdir):
  """A run's epoch records, less their timings (which no two runs share)."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [{k: v for k, v in json.loads(line).items()
             if k != "images_per_second"} for line in f]


@pytest.mark.slow
def test_two_processes_match_one_process_and_resume(tmp_path):
  """2 processes x 4 devices = 1 process x 8 devices, bit for bit.

  The reference is a single-process 8-device run of the same config, also
  started with jax.distributed (one process), so that its cross-device sums
  use the same collective implementation (gloo) as the 2-process run. A plain
  single-process run sums with XLA's in-process collective in another order:
  measured on digits, its parameters then differ from these by ~1e-7 (1 ulp
  of the largest entries) after a few steps, with identical data and draws.
  """
  assert jax.device_count() == 8 and jax.process_count() == 1
  workdir, ref_dir = str(tmp_path / "two"), str(tmp_path / "one")

  # Two processes, one set up by flags and one by environment variables
  # (flags win, so either works), and alongside, the 1 x 8 reference.
  port, ref_port = _free_port(), _free_port()
  cmds = [[sys.executable, "-c", _WORKER, str(tmp_path / f"aug{p}.npz")]
          + RUN_ARGS + ["--workdir", workdir] for p in (0, 1)]
  cmds[0] += ["--coordinator-address", f"127.0.0.1:{port}",
              "--num-processes", "2", "--process-id", "0"]
  cmds.append([sys.executable, "-m", "train"] + RUN_ARGS + [
      "--workdir", ref_dir, "--distributed",
      "--coordinator-address", f"127.0.0.1:{ref_port}",
      "--num-processes", "1", "--process-id", "0"])
  envs = [_child_env(tmp_path), _child_env(
      tmp_path, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
      JAX_NUM_PROCESSES="2", JAX_PROCESS_ID="1"), _child_env(
          tmp_path, XLA_FLAGS="--xla_force_host_platform_device_count=8",
          JAX_COMPILATION_CACHE_DIR=str(tmp_path / "ref_cache"))]
  start = time.time()
  logs = _launch(cmds, envs, [tmp_path / f"run{p}.log" for p in (0, 1, 2)],
                 timeout=240)
  print(f"launch: {time.time() - start:.0f} s")
  # Only process 0 prints.
  assert "epoch   1" in logs[0] and "epoch   1" not in logs[1]
  assert "Done: step 4" in logs[0] and "Done" not in logs[1]
  assert "Done: step 4" in logs[2]

  # The augmented global batch of a step equals this process's (plain,
  # 8-device) augmentation bit for bit, and the processes' rows are exactly
  # the global batch.
  ds = data.load_digits()
  cfg = config.parse_args(RUN_ARGS).resolved("digits", 8)
  x, y = next(data.train_batches(ds, cfg.batch_size, cfg.seed, AUG_STEP,
                                 AUG_STEP + 1))
  key = jax.random.fold_in(jax.random.key(cfg.seed), AUG_STEP)
  jax.config.update("jax_disable_most_optimizations", True)  # as the children
  try:
    images, targets = jax.jit(functools.partial(
        steps.augment, cfg=cfg, num_classes=10, mean=ds.mean, std=ds.std,
        groups=8, targets="dense"))(key, x, y)
  finally:
    jax.config.update("jax_disable_most_optimizations", False)
    jax.clear_caches()  # as the fast_compile fixture does, for the same reason
  parts = [np.load(tmp_path / f"aug{p}.npz") for p in (0, 1)]
  rows = np.concatenate([part["rows"] for part in parts])
  np.testing.assert_array_equal(rows, np.arange(cfg.batch_size))
  np.testing.assert_array_equal(
      np.concatenate([part["images"] for part in parts]), images)
  np.testing.assert_array_equal(
      np.concatenate([part["targets"] for part in parts]), targets)

  # The trajectory (process 0's metrics.jsonl): per-epoch train loss, and
  # test loss and accuracy over all 359 test samples (each counted once, or
  # the run's own check fails), bit for bit.
  two, one = _records(workdir), _records(ref_dir)
  assert [r["epoch"] for r in two] == [1, 2]
  assert two == one

  # The final state, from each run's last checkpoint.
  state, ref = _restore(workdir, 4), _restore(ref_dir, 4)
  assert jax.tree.structure(state) == jax.tree.structure(ref)
  jax.tree.map(np.testing.assert_array_equal, state, ref)

  # Another process count: the 2 x 4 checkpoint of step 3 (the later one
  # removed), resumed by a plain 1 x 8 run in this process (XLA's in-process
  # collectives), ends within float32 rounding of the 2 x 4 run.
  resume_cfg = dataclasses.replace(config.parse_args(RUN_ARGS),
                                   workdir=str(tmp_path / "one_resumes_two"))
  shutil.copytree(workdir, resume_cfg.workdir)
  shutil.rmtree(os.path.join(resume_cfg.workdir, "checkpoints", "4"))
  assert os.listdir(os.path.join(resume_cfg.workdir, "checkpoints")) == [
      str(RESUME_AT)]
  jax.config.update("jax_disable_most_optimizations", True)  # as the children
  try:
    resumed = train.train_and_evaluate(resume_cfg)
  finally:
    jax.config.update("jax_disable_most_optimizations", False)
    jax.clear_caches()  # as the fast_compile fixture does, for the same reason
  assert resumed["step"] == 4
  worst = max(float(np.max(np.abs(np.asarray(a, np.float64) - b)))
              for a, b in zip(jax.tree.leaves(resumed["state"]),
                              jax.tree.leaves(state)))
  print(f"1 x 8 resume of 2 x 4: max |difference| {worst:.2e}")
  assert worst <= 1.2e-7
