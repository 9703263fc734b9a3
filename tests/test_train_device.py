"""`--loader device`: the in-memory loader's batches, gathered on the
devices inside the step; exact resumes; jit == pmap."""

import dataclasses
import os
import shutil

import jax
import numpy as np
import pytest

from train import config
from train import data
from train import device_data
from train import train

BATCH = 64
STEPS_PER_EPOCH = 1438 // BATCH  # digits' 1,438 training images
RUN = dict(model="tiny", width=4, epochs=2, batch_size=BATCH, progress=False,
           warmup_epochs=0)


def test_device_batches_are_the_in_memory_loaders():
  ds = data.load_digits()
  par = train.Parallel("jit")  # the 8 simulated devices
  src = device_data.source(ds)
  assert src.loader == "device" and src.num_train == len(ds.x_train)
  images = device_data.put_images(ds.x_train, par)
  assert images.sharding.is_fully_replicated
  gather = jax.jit(device_data.gather, out_shardings=par.data)
  stop = STEPS_PER_EPOCH + 3  # across an epoch boundary
  stream = src.train_stream(BATCH, 7, stop, None)
  memory = data.train_batches(ds, BATCH, 7, 0, stop)
  n = 0
  for (idx, labels), (x, y) in zip(stream.batches(stop, par.put_batch),
                                   memory):
    batch = gather(images, idx)
    assert batch.sharding == par.data and batch.dtype == np.uint8
    np.testing.assert_array_equal(batch, x)
    np.testing.assert_array_equal(labels, y)
    n += 1
  assert n == stop and stream.step == stop
  # A stream restored at step s yields step s's batch next.
  restored = src.train_stream(BATCH, 7, stop, None)
  restored.set_state(stream.get_state().replace(
      f'"step": {stop}'.encode(), b'"step": 5'))
  assert restored.check(5, "ckpt") == []
  assert restored.check(6, "ckpt") == ["the loader state is that of step 5"]
  idx, _ = next(restored.batches(stop, np.asarray))
  np.testing.assert_array_equal(
      idx, data.train_batch_indices(7, 5, STEPS_PER_EPOCH, len(ds.x_train),
                                    BATCH))


def _equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a["state"], b["state"])


@pytest.mark.slow
def test_device_trains_as_memory_and_resumes_exactly(tmp_path, fast_compile):
  stop = STEPS_PER_EPOCH + 4  # mid-epoch 2
  ckpt = dict(ckpt_every=6, ckpt_minutes=0, ckpt_keep=10)
  memory = train.train_and_evaluate(config.Config(
      workdir=str(tmp_path / "memory"), loader="memory", **ckpt, **RUN),
      stop_after=stop)
  cfg = config.Config(workdir=str(tmp_path / "device"), loader="device",
                      **ckpt, **RUN)
  device = train.train_and_evaluate(cfg, stop_after=stop)
  assert device["step"] == stop
  # The same pixels in the same order, and the same draws: the same state.
  _equal(memory, device)
  assert device["test_accuracy"] == memory["test_accuracy"]
  # The checkpoints hold the loader's step.
  with open(tmp_path / "device" / "checkpoints" / "12" / "loader" /
            "process_0-of-1.json") as f:
    assert '"step": 12' in f.read()
  # Stopped at step 12 (the later checkpoints lost), resumed to `stop`.
  resumed_dir = tmp_path / "resumed"
  shutil.copytree(cfg.workdir, resumed_dir)
  for step in os.listdir(resumed_dir / "checkpoints"):
    if int(step) > 12:
      shutil.rmtree(resumed_dir / "checkpoints" / step)
  resumed = train.train_and_evaluate(
      dataclasses.replace(cfg, workdir=str(resumed_dir)), stop_after=stop)
  assert resumed["step"] == stop
  _equal(device, resumed)


@pytest.mark.slow
def test_device_loader_jit_equals_pmap(tmp_path, fast_compile):
  # No draws (as in test_train_steps' jit == pmap test): both must compute
  # the same global-batch steps from the same gathered batches.
  same = dict(loader="device", aug="none", crop_pad=0, flip=False,
              ckpt_minutes=0)
  out = {}
  for parallel in ("jit", "pmap"):
    out[parallel] = train.train_and_evaluate(config.Config(
        workdir=str(tmp_path / parallel), parallel=parallel, **same, **RUN),
        stop_after=3)
  for name in ("params", "batch_stats", "opt_state"):
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
        out["jit"]["state"][name], out["pmap"]["state"][name])
  assert out["jit"]["state"]["step"] == out["pmap"]["state"]["step"] == 3
  # pmap's per-device copies gather each device's block of the batch.
  ds = data.load_digits()
  par = train.Parallel("pmap")
  images = device_data.put_images(ds.x_train, par)
  assert images.shape == (8,) + ds.x_train.shape
  idx = data.train_batch_indices(0, 0, STEPS_PER_EPOCH, len(ds.x_train),
                                 BATCH)
  blocks = jax.pmap(device_data.gather)(images, par.put_batch(idx))
  np.testing.assert_array_equal(
      np.asarray(blocks).reshape((BATCH,) + ds.x_train.shape[1:]),
      ds.x_train[idx])
