"""The Grain loader for image folders: order, sharding, eval and resume, on
a small generated folder of JPEGs and PNGs of mixed sizes."""

import dataclasses
import functools
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
import zipfile

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from PIL import Image

from train import config
from train import data
from train import distributed
from train import grain_data
from train import loaders
from train import train

# Every test here builds a Grain pipeline over JPEG files, most with worker
# or training processes.
pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 12
# Mixed sizes: the ImageNet-style recipe, to SIZE x SIZE.
RECIPE = grain_data.Recipe("resized", SIZE, SIZE, flip=True)


def make_folder(root, n_train=10, n_test=5, classes=3, seed=0):
  """Solid-colour images of random sizes: image k has red 4 * (k % 60) and
  green 4 * (k // 60), which survive any crop, resize or JPEG round trip."""
  rng = np.random.default_rng(seed)
  k = 0
  for split, n in (("train", n_train), ("test", n_test)):
    for c in range(classes):
      os.makedirs(os.path.join(root, split, f"c{c}"), exist_ok=True)
      for i in range(n):
        h, w = rng.integers(10, 40, 2)
        image = np.full((h, w, 3), 100, np.uint8)
        image[..., 0], image[..., 1] = 4 * (k % 60), 4 * (k // 60)
        ext = "png" if k % 2 else "jpg"
        Image.fromarray(image).save(
            os.path.join(root, split, f"c{c}", f"{i:03d}.{ext}"))
        k += 1
  return data.scan_imagefolder(root)


def image_ids(images):
  """The id of each solid-colour image of a batch, from its centre pixel."""
  centre = images[:, images.shape[1] // 2, images.shape[2] // 2].astype(int)
  return np.round(centre[:, 0] / 4).astype(int) + 60 * np.round(
      centre[:, 1] / 4).astype(int)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  return make_folder(str(tmp_path_factory.mktemp("folder")))


def _fake_two_processes_rows(batch):
  sharding = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), P("data"))
  return [distributed.local_rows(sharding, batch, p,
                                 process_of=lambda d: d.id // 4)
          for p in (0, 1)]


def test_each_image_once_per_epoch_across_processes(files):
  batch, seed = 8, 3
  n = len(files.train_paths)  # 30: 3 steps per epoch, 6 images left out
  steps_per_epoch = n // batch
  rows = _fake_two_processes_rows(batch)
  per_process = [list(grain_data.train_batches(
      files, RECIPE, batch, seed, 0, 2 * steps_per_epoch, rows=r,
      workers=0)) for r in rows]
  for step in range(2 * steps_per_epoch):
    (x0, y0), (x1, y1) = per_process[0][step], per_process[1][step]
    assert x0.shape == (batch // 2, SIZE, SIZE, 3) and x0.dtype == np.uint8
    ids = image_ids(np.concatenate([x0, x1]))
    # The global batch is the in-memory loader's: same order.
    np.testing.assert_array_equal(ids, data.train_batch_indices(
        seed, step, steps_per_epoch, n, batch))
    np.testing.assert_array_equal(np.concatenate([y0, y1]),
                                  files.train_labels[ids])
  for epoch in (0, 1):
    seen = np.concatenate([image_ids(np.concatenate([x for x, _ in p[
        epoch * steps_per_epoch:(epoch + 1) * steps_per_epoch]]))
                           for p in per_process])
    assert len(seen) == len(set(seen)) == steps_per_epoch * batch


def test_eval_counts_each_test_image_once(files):
  batch = 8  # 15 test images: the second global batch is padded
  seen = []
  for r in _fake_two_processes_rows(batch):
    for x, y, mask in grain_data.eval_batches(
        files.test_paths, files.test_labels, RECIPE, batch, rows=r,
        workers=0):
      assert x.shape == (batch // 2, SIZE, SIZE, 3)
      assert not x[~mask].any()
      ids = image_ids(x[mask]) - len(files.train_paths)
      np.testing.assert_array_equal(y[mask], files.test_labels[ids])
      seen.append(ids)
  np.testing.assert_array_equal(np.sort(np.concatenate(seen)),
                                np.arange(len(files.test_paths)))


def test_a_stream_resumes_from_its_saved_state_only(files):
  make = functools.partial(grain_data.train_stream, files, RECIPE, 8, 0,
                           7, workers=0)
  stream, straight = make(), []
  for batch in stream.batches(7, lambda x: x):
    straight.append(batch)
    if stream.step == 4:  # two batches beyond it are already read
      state = stream.get_state()
  # The step-0 augmentation grid reads the same batches without a stream.
  for a, b in zip(straight[:2], grain_data.train_batches(files, RECIPE, 8,
                                                         0, 0, 2, workers=0)):
    jax.tree.map(np.testing.assert_array_equal, a, b)
  resumed = make()
  resumed.set_state(state)
  assert resumed.check(4, "ckpt/4") == []
  batches = list(resumed.batches(7, lambda x: x))
  assert len(batches) == 3 and resumed.step == 7
  jax.tree.map(np.testing.assert_array_equal, batches, straight[4:])
  # Crops differ between steps (not one fixed crop per image).
  assert not np.array_equal(straight[0][0], straight[3][0])

  # A state of another step, or of another worker count, is refused.
  other = make(workers=2)
  other.set_state(state)
  problems = other.check(5, "ckpt/5")
  assert problems[0] == "the loader state is that of step 4"
  assert "1 process(es) with --workers 0" in problems[1]
  # A Grain state that continues elsewhere stops at the first batch.
  saved = json.loads(state)
  assert saved["iterator"] == {"next_index": 4}  # Grain's own state
  wrong = make()
  wrong.set_state(json.dumps(dict(saved, iterator={"next_index": 5}))
                  .encode())
  assert wrong.check(4, "ckpt/4") == []
  with pytest.raises(data.DataError,
                     match="restored from checkpoint ckpt/4 continues at "
                     "step 5, not 4"):
    next(wrong.batches(7, lambda x: x))


def test_worker_processes_give_the_same_batches(files):
  run = functools.partial(grain_data.train_batches, files, RECIPE, 8, 0,
                          0, 3)
  for (a, b), (c, d) in zip(run(workers=0), run(workers=2)):
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(b, d)


def test_auto_loader_picks_grain_above_the_memory_budget(files, tmp_path):
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      files.train_paths[0])))
  cfg = config.Config(dataset="imagefolder", data_dir=root, image_size=SIZE,
                      workers=0)
  # Mixed sizes: the in-memory loader refuses them, and says what to use.
  with pytest.raises(data.DataError, match="--loader grain"):
    loaders.open_data(cfg)
  src = loaders.open_data(config.Config(**dict(
      vars(cfg), loader_memory_gb=1e-6)))
  assert src.loader == "grain" and src.image_shape == (SIZE, SIZE, 3)
  assert src.num_train == 30 and src.num_test == 15 and src.num_classes == 3
  assert src.mean.shape == (3,) and abs(src.mean[2] - 100) < 1



def test_a_grain_checkpoint_holds_the_loader_state(files, tmp_path,
                                                   fast_compile):
  """What a Grain run saves, and how a wrong loader state stops a resume.
  (A resumed run equals an uninterrupted one: the kill -9 test below.)"""
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      files.train_paths[0])))
  cfg = config.Config(dataset="imagefolder", data_dir=root, loader="grain",
                      image_size=SIZE, workers=0, model="tiny", epochs=2,
                      batch_size=8, eval_batch_size=8, progress=False,
                      workdir=str(tmp_path / "run"))
  assert train.train_and_evaluate(cfg, stop_after=4)["step"] == 4
  with open(os.path.join(cfg.workdir, "config.json")) as f:
    saved = json.load(f)
  # Crops and flips happen in the workers, not again in the step.
  assert (saved["loader"], saved["crop_pad"], saved["flip"]) == ("grain", 0,
                                                                 True)
  # One checkpoint per epoch at most every 10 minutes (the default): the
  # end of epoch 1 (step 3) is skipped, the stop is saved.
  assert os.listdir(os.path.join(cfg.workdir, "checkpoints")) == ["4"]
  # The checkpoint holds Grain's iterator state, as Grain's handler writes it.
  loader = os.path.join(cfg.workdir, "checkpoints", "4", "loader",
                        "process_0-of-1.json")
  with open(loader) as f:
    saved = json.load(f)
  assert saved == dict(step=4, processes=1, workers=0,
                       iterator={"next_index": 4})

  # A loader state that does not fit stops the run, naming the checkpoint:
  # one of another step, and one whose Grain state continues elsewhere (as
  # would a run that ignored the saved state and read from step 0).
  for bad, error, match in (
      (dict(saved, step=3), train.TrainError, "that of step 3"),
      (dict(saved, iterator=None), data.DataError, "at step 0, not 4")):
    broken = tmp_path / f"broken{bad['step']}"
    shutil.copytree(cfg.workdir, broken)
    with open(broken / os.path.relpath(loader, cfg.workdir), "w") as f:
      json.dump(bad, f)
    with pytest.raises(error, match=match) as e:
      train.train_and_evaluate(dataclasses.replace(cfg, workdir=str(broken)))
    assert os.path.join(str(broken), "checkpoints", "4") in str(e.value)


# Each of 2 processes x 4 devices reads its rows with Grain worker processes
# (straight from step 0, and resumed from RESUME_AT) and saves what it saw.
_WORKER = """
import sys
import jax, numpy as np
from train import config, data, distributed, grain_data, train
cfg = config.parse_args(sys.argv[3:])
distributed.maybe_initialize(cfg)
assert jax.process_count() == 2 and jax.device_count() == 8
files = data.scan_imagefolder(sys.argv[2])
par = train.Parallel("jit")
rows = par.rows(8)
recipe = grain_data.Recipe("resized", 12, 12, flip=True)
run = lambda start: [x for x, _ in grain_data.train_batches(
    files, recipe, 8, 0, start, 6, rows=rows, workers=1)]
evals = [(x, y, m) for x, y, m in grain_data.eval_batches(
    files.test_paths, files.test_labels, recipe, 8, rows=rows, workers=1)]
np.savez(sys.argv[1], rows=rows, straight=np.stack(run(0)),
         resumed=np.stack(run({resume_at})),
         eval_x=np.concatenate([x for x, _, _ in evals]),
         eval_mask=np.concatenate([m for _, _, m in evals]))
"""
RESUME_AT = 4


def test_two_processes_read_disjoint_shards_with_grain_workers(files,
                                                               tmp_path):
  from test_train_multiprocess import _child_env, _free_port, _launch  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      files.train_paths[0])))
  port = _free_port()
  script = _WORKER.format(resume_at=RESUME_AT)
  cmds = [[sys.executable, "-c", script, str(tmp_path / f"p{p}.npz"), root,
           "--coordinator-address", f"127.0.0.1:{port}",
           "--num-processes", "2", "--process-id", str(p)] for p in (0, 1)]
  _launch(cmds, [_child_env(tmp_path)] * 2,
          [tmp_path / f"p{p}.log" for p in (0, 1)], timeout=180)
  parts = [np.load(tmp_path / f"p{p}.npz") for p in (0, 1)]
  np.testing.assert_array_equal(
      np.concatenate([p["rows"] for p in parts]), np.arange(8))
  n = len(files.train_paths)
  for step in range(6):
    ids = image_ids(np.concatenate([p["straight"][step] for p in parts]))
    np.testing.assert_array_equal(
        ids, data.train_batch_indices(0, step, n // 8, n, 8))
  for epoch in (0, 1):  # each image at most once, 24 of 30 per epoch
    ids = image_ids(np.concatenate(
        [p["straight"][3 * epoch:3 * epoch + 3].reshape(-1, 12, 12, 3)
         for p in parts]))
    assert len(set(ids)) == len(ids) == 24
  for p in parts:  # a resumed reader continues with the same batches
    np.testing.assert_array_equal(p["resumed"], p["straight"][RESUME_AT:])
  seen = np.concatenate([image_ids(p["eval_x"][p["eval_mask"]])
                         for p in parts])
  np.testing.assert_array_equal(np.sort(seen) - n,
                                np.arange(len(files.test_paths)))


def test_two_processes_killed_with_sigkill_resume_the_same_run(files,
                                                                tmp_path):
  """kill -9 of a 2 x 4 Grain run, then the same command: it resumes from
  its last checkpoint and the loader state in it, and ends bit for bit where
  an uninterrupted 2 x 4 run does."""
  from test_train_multiprocess import _child_env, _free_port, _launch, _restore  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      files.train_paths[0])))
  # 3 steps per epoch, a checkpoint each; one evaluation, at the end (each
  # evaluation starts a Grain worker). The final evaluation alone outlasts
  # the polling interval, so the kill comes before the end.
  total = 12
  args = ["--dataset", "imagefolder", "--data-dir", root, "--loader", "grain",
          "--image-size", str(SIZE), "--workers", "1", "--model", "tiny",
          "--width", "4", "--epochs", "4", "--batch-size", "8",
          "--eval-batch-size", "8", "--eval-every", "4", "--ckpt-every", "3",
          "--ckpt-minutes", "0", "--no-progress"]

  def launch(tag, names, **kwargs):
    cmds, envs, logs = [], [], []
    for name in names:
      port = _free_port()
      for p in (0, 1):
        cmds.append([sys.executable, "-m", "train", *args,
                     "--workdir", str(tmp_path / name)])
        envs.append(_child_env(
            tmp_path, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
            JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(p)))
        logs.append(tmp_path / f"{tag}-{name}{p}.log")
    start = time.time()
    outputs = _launch(cmds, envs, logs, timeout=240, **kwargs)
    print(f"{tag} launch: {time.time() - start:.0f} s")
    return outputs

  ckpts = tmp_path / "killed" / "checkpoints"
  saved = lambda: [int(d) for d in os.listdir(ckpts) if d.isdigit()] if (
      ckpts.exists()) else []
  launch("first", ["killed"], kill_when=lambda: bool(saved()))
  at_kill = max(saved())
  assert at_kill < total
  # The rerun (with the killed run's compiled steps from the cache) and the
  # uninterrupted reference.
  resumed, _, straight, _ = launch("second", ["killed", "straight"])
  start = int(resumed.split("Resuming from step ")[1].split()[0])
  # At most one checkpoint interval is lost.
  assert at_kill <= start < total and start % 3 == 0
  assert f"Done: step {total}" in resumed and f"Done: step {total}" in straight
  jax.tree.map(np.testing.assert_array_equal,
               _restore(str(tmp_path / "killed"), total),
               _restore(str(tmp_path / "straight"), total))
  # Grain's state is per process: another process count is refused.
  with pytest.raises(train.TrainError, match="loader state of process_0-of-2"
                     ".json, process_1-of-2.json, not process_0-of-1.json"):
    train.train_and_evaluate(config.parse_args(
        args + ["--workdir", str(tmp_path / "straight")]))


def _real_cifar(root, per_class, classes=2):
  """`per_class` train and 2 test JPEGs of each of the first `classes`
  CIFAR-10 classes, from the real zip."""
  from test_train_data import CIFAR_ZIP  # pylint: disable=g-import-not-at-top
  if not os.path.exists(CIFAR_ZIP):
    pytest.skip(f"real CIFAR-10 JPEG zip not found at {CIFAR_ZIP}")
  wanted = {"train": per_class, "test": 2}
  with zipfile.ZipFile(CIFAR_ZIP) as z:
    names = sorted(n for n in z.namelist() if n.endswith(".jpg"))
    taken = {}
    for name in names:  # cifar10/<split>/<class>/NNNN.jpg
      _, split, label, _ = name.split("/")
      key = (split, label)
      if (len({c for s, c in taken if s == split} | {label}) <= classes
          and taken.get(key, 0) < wanted[split]):
        taken[key] = taken.get(key, 0) + 1
        z.extract(name, root)
  return os.path.join(root, "cifar10")


def test_damaged_jpegs_stop_grain_with_one_line_naming_the_file(tmp_path):
  root = _real_cifar(tmp_path, per_class=8)
  files = data.scan_imagefolder(root)
  recipe = grain_data.Recipe("pad", 32, 32)
  # Truncated: the header survives, the image data is cut, so PIL fails
  # only when it decodes, in a worker process, after training has started.
  truncated = files.train_paths[5]
  with open(truncated, "rb") as f:
    raw = f.read()
  with open(truncated, "wb") as f:
    f.write(raw[:len(raw) // 2])
  stream = grain_data.train_stream(files, recipe, 8, 0, 4, workers=1)
  with pytest.raises(data.DataError) as e:
    for _ in stream.batches(4, lambda x: x):
      pass
  message = str(e.value)
  assert message.startswith(f"{truncated} cannot be decoded"), message
  assert "Replace it" in message and "\n" not in message
  # The worker is stopped, not left for the garbage collector.
  assert multiprocessing.active_children() == []
  # Corrupt (not a JPEG at all), in the sample the statistics are read
  # from: the run stops before training, naming the file.
  corrupt = files.train_paths[2]
  with open(corrupt, "wb") as f:
    f.write(b"\xff\xd8 this is not image data " * 20)
  cfg = config.Config(dataset="imagefolder", data_dir=root, loader="grain",
                      workers=0)
  with pytest.raises(data.DataError, match=f"^{corrupt} cannot be decoded"):
    loaders.open_data(cfg)


def _png_folder(root, side=16):
  """PNGs (lossless, so both loaders decode the same pixels) of one size."""
  rng = np.random.default_rng(0)
  for split, n in (("train", 12), ("test", 5)):
    for c in ("a", "b"):
      os.makedirs(os.path.join(root, split, c))
      for i in range(n):
        Image.fromarray(rng.integers(0, 256, (side, side, 3), np.uint8)).save(
            os.path.join(root, split, c, f"{i}.png"))
  return str(root)


def test_small_images_keep_their_size_and_the_in_memory_recipe(files,
                                                               tmp_path,
                                                               caplog):
  root = _png_folder(tmp_path / "small")
  # The default --image-size 224 must not upscale 16-px images.
  cfg = config.Config(dataset="imagefolder", data_dir=root, loader="grain",
                      workers=0)
  src = loaders.open_data(cfg)
  assert src.image_shape == (16, 16, 3)
  assert src.settings == dict(loader="grain", crop="pad")
  assert src.step_settings == {}  # the step pads, crops and flips
  memory = loaders.open_data(dataclasses.replace(cfg, loader="memory"))
  for a, b in zip(src.train_batches(8, 3, 0, 4, None),
                  memory.train_batches(8, 3, 0, 4, None)):
    jax.tree.map(np.testing.assert_array_equal, a, b)
  for a, b in zip(src.eval_batches(8, None), memory.eval_batches(8, None)):
    jax.tree.map(np.testing.assert_array_equal, a, b)
  np.testing.assert_allclose(src.mean, memory.mean, rtol=1e-5)
  assert "resizes the images UP" not in caplog.text
  # Resizing up only when asked for, and then with a warning.
  resized = loaders.open_data(dataclasses.replace(cfg, crop="resized",
                                                  image_size=24))
  assert resized.image_shape == (24, 24, 3)
  assert resized.step_settings == dict(crop_pad=0, flip=False)
  assert "--image-size 24 resizes the images UP" in caplog.text
  # Images of several sizes cannot be padded as they are.
  mixed = os.path.dirname(os.path.dirname(os.path.dirname(
      files.train_paths[0])))
  with pytest.raises(data.DataError, match="--crop pad reads images of one "
                     "size, but the training images have sizes"):
    loaders.open_data(dataclasses.replace(cfg, data_dir=mixed, crop="pad"))


# Grain workers reading batches: to the end, stopped early, and for eval,
# then a normal exit (mode "clean"); or reading while the test kills this
# process with SIGKILL (mode "orphan").
_READER = """
import multiprocessing, sys, time
from train import data, grain_data

def main():
  files = data.scan_imagefolder(sys.argv[1])
  recipe = grain_data.Recipe("resized", 12, 12, flip=True)
  if sys.argv[2] == "clean":
    for _ in grain_data.train_batches(files, recipe, 8, 0, 0, 6, workers=2):
      pass
    stream = grain_data.train_stream(files, recipe, 8, 0, 6, workers=2)
    for i, _ in enumerate(stream.batches(6, lambda x: x)):
      if i == 2:
        break  # as an error or a signal stops a run
    for _ in grain_data.eval_batches(files.test_paths, files.test_labels,
                                     recipe, 8, workers=2):
      pass
    print("done", multiprocessing.active_children(), flush=True)
  else:
    batches = grain_data.train_batches(files, recipe, 8, 0, 0, 10**6,
                                       workers=2)
    next(batches)
    print(" ".join(str(p.pid) for p in multiprocessing.active_children()),
          flush=True)
    time.sleep(600)

if __name__ == "__main__":
  main()
"""


def _alive(pid):
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # not a zombie
  except FileNotFoundError:
    return False


@pytest.mark.slow
def test_grain_workers_free_their_memory_and_die_with_their_parent(files):
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      files.train_paths[0])))
  clean = subprocess.run([sys.executable, "-c", _READER, root, "clean"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
  assert clean.returncode == 0, clean.stderr[-3000:]
  assert clean.stdout.strip() == "done []"
  assert "leaked" not in clean.stderr and "Traceback" not in clean.stderr, (
      clean.stderr[-3000:])

  proc = subprocess.Popen([sys.executable, "-c", _READER, root, "orphan"],
                          cwd=REPO, stdout=subprocess.PIPE, text=True)
  try:
    workers = [int(p) for p in proc.stdout.readline().split()]
  finally:
    proc.kill()
    proc.wait()
  assert len(workers) == 2
  deadline = time.time() + 20
  while time.time() < deadline and any(_alive(p) for p in workers):
    time.sleep(0.2)
  assert not any(_alive(p) for p in workers), "workers outlived their parent"
