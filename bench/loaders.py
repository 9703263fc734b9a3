"""Trainer throughput with each loader: memory, Grain and device.

The trainer's own pieces (`train.train.build`, `Parallel`, the loaders'
`Source`s and `device_data.bind`) run its training loop for a number of
steps: batches come from the loader (prefetched two ahead, as the trainer
does), each step is dispatched without waiting, and the clock stops when
the last step's state is ready. The first `--loader-warmup` steps (compile
included) are not timed. No evaluation or checkpoint runs.

The data is an image folder: `--loader-data` (say CIFAR-10 as JPEG files),
or by default a synthetic one of random JPEG images written to a temporary
folder. The memory and device loaders read it decoded (once, or from
`--loader-npz`); Grain decodes and crops it in its workers at the images'
own size.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
import time

import jax
import numpy as np

from bench import timing

LOADERS = ("memory", "grain", "device")


def add_args(p) -> None:
  g = p.add_argument_group("loaders (trainer throughput per --loader)")
  g.add_argument("--only-loaders", action="store_true",
                 help="run only the loaders section")
  g.add_argument("--no-loaders", action="store_true",
                 help="skip the loaders section")
  g.add_argument("--loaders", nargs="+", default=list(LOADERS),
                 choices=LOADERS)
  g.add_argument("--loader-data", default=None,
                 help="an image folder (<root>/train/<class>/*.jpg, "
                 "<root>/test/...); default: synthetic JPEGs")
  g.add_argument("--loader-npz", default=None,
                 help="the same data decoded (x_train, y_train, x_test, "
                 "y_test), read by memory and device instead of decoding "
                 "--loader-data")
  g.add_argument("--loader-model", default=None,
                 help="default resnet20 (tiny with --quick)")
  g.add_argument("--loader-width", type=int, default=None)
  g.add_argument("--loader-dtype", default="float32",
                 choices=("float32", "bfloat16"))
  g.add_argument("--loader-batch", type=int, default=None,
                 help="default 128 (16 with --quick)")
  g.add_argument("--loader-steps", type=int, default=None,
                 help="steps per timed repetition (default 10, 2 with "
                 "--quick)")
  g.add_argument("--loader-reps", type=int, default=None,
                 help="timed repetitions (median, min, max of ms/step are "
                 "over these; default 3)")
  g.add_argument("--loader-warmup", type=int, default=3,
                 help="untimed steps first (the first compiles)")
  g.add_argument("--loader-workers", type=int, default=None,
                 help="Grain worker processes (default: CPUs - 1, at most "
                 "8)")
  g.add_argument("--loader-aug", default="cutmix",
                 choices=("none", "cutmix", "mixup", "mix", "cutout"))


def resolve_args(args) -> None:
  if args.loader_model is None:
    args.loader_model = "tiny" if args.quick else "resnet20"
  if args.loader_batch is None:
    args.loader_batch = 16 if args.quick else 128
  if args.loader_steps is None:
    args.loader_steps = 2 if args.quick else 10
  if args.loader_reps is None:
    args.loader_reps = 3
  if args.loader_workers is None:
    args.loader_workers = max(1, min(8, (os.cpu_count() or 2) - 1))


def synthetic_folder(root: str, n_train: int, n_test: int, size: int = 32,
                     classes: int = 10, seed: int = 0) -> str:
  """Random `size`² JPEGs in the image-folder layout; returns `root`."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(seed)
  for split, n in (("train", n_train), ("test", n_test)):
    for i in range(n):
      folder = os.path.join(root, split, f"c{i % classes}")
      os.makedirs(folder, exist_ok=True)
      pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
      Image.fromarray(pixels).save(os.path.join(folder, f"{i:05d}.jpg"),
                                   quality=90)
  return root


def _sources(args, folder: str):
  """`{loader: Source}` over one decoding of the data."""
  from train import data  # pylint: disable=g-import-not-at-top
  from train import device_data  # pylint: disable=g-import-not-at-top

  ds = (data.load_npz(args.loader_npz) if args.loader_npz
        else data.load_imagefolder(folder))
  size = min(ds.image_shape[:2])
  makers = {
      "memory": lambda: data.in_memory(ds),
      "device": lambda: device_data.source(ds),
      "grain": lambda: _grain_source(data.scan_imagefolder(folder), size,
                                     args.loader_workers),
  }
  return {name: makers[name] for name in args.loaders}


def _grain_source(files, size: int, workers: int):
  """Grain over `files` by the recipe the trainer's `--loader grain` picks."""
  from train import grain_data  # pylint: disable=g-import-not-at-top

  recipe = grain_data.choose_recipe(files, None, size, flip=True)
  return grain_data.source(files, recipe, workers)


def time_loader(args, src, log) -> dict:
  """Steps per second of the trainer's loop over `src`."""
  from train import config as config_lib  # pylint: disable=g-import-not-at-top
  from train import data  # pylint: disable=g-import-not-at-top
  from train import device_data  # pylint: disable=g-import-not-at-top
  from train import train  # pylint: disable=g-import-not-at-top

  batch = args.loader_batch
  cfg = config_lib.Config(
      dataset="imagefolder", loader=src.loader, model=args.loader_model,
      width=args.loader_width, dtype=args.loader_dtype, batch_size=batch,
      aug=args.loader_aug, prob=1.0, progress=False)
  # As train_and_evaluate: what the loader fixed, then the step's share.
  cfg = dataclasses.replace(cfg, **src.settings)
  cfg = cfg.resolved("imagefolder", min(src.image_shape[:2]))
  cfg = dataclasses.replace(cfg, **src.step_settings)
  par = train.Parallel("jit")
  if batch % par.n:
    raise ValueError(f"--loader-batch {batch} is not divisible by the "
                     f"{par.n} devices")
  steps_per_epoch = src.num_train // batch
  if not steps_per_epoch:
    raise ValueError(f"--loader-batch {batch} is larger than the "
                     f"{src.num_train} training images")
  reps = args.loader_reps
  total = args.loader_warmup + reps * args.loader_steps
  t = train.build(cfg, par, src.num_classes, src.image_shape, src.mean,
                  src.std, steps_per_epoch, max(total, 2))
  if src.loader == "device":
    t = device_data.bind(t, src, par)
  state = par.put_state(t.state)
  root_key = jax.random.key(0)
  if src.train_stream:
    batches = src.train_stream(batch, 0, total, None).batches(
        total, par.put_batch)
  else:
    batches = data.prefetch(src.train_batches(batch, 0, 0, total, None),
                            par.put_batch)
  # Blocks only where a repetition ends, so the loader's host work overlaps
  # the steps as in the trainer.
  ends = {args.loader_warmup + r * args.loader_steps for r in range(reps + 1)}
  start = time.perf_counter()
  marks = []
  for step, (x, y) in enumerate(batches):
    if step in ends:
      jax.block_until_ready(state)
      marks.append(time.perf_counter())
    state, out = t.train_step(state, x, y, root_key)
    if step == 0:
      jax.block_until_ready(out)
      first = time.perf_counter() - start
  jax.block_until_ready(state)
  marks.append(time.perf_counter())
  per_step = [(b - a) / args.loader_steps * 1e3
              for a, b in zip(marks, marks[1:])]
  log(f"  loader {src.loader}: {statistics.median(per_step):.1f} ms/step")
  return dict(median_ms=statistics.median(per_step), min_ms=min(per_step),
              max_ms=max(per_step), reps=reps, compile_ms=first * 1e3)


def section(args, log) -> tuple[list, list]:
  """Rows `loaders`: ms per step and img/s per loader."""
  with tempfile.TemporaryDirectory() as tmp:
    folder = args.loader_data or synthetic_folder(
        tmp, n_train=4 * args.loader_batch if args.quick else 2048,
        n_test=args.loader_batch)
    try:
      sources = _sources(args, folder)
    except Exception as e:  # pylint: disable=broad-except
      return [], [f"loaders: {type(e).__name__}: {e}"]
    rows, skipped = [], []
    for name, make in sources.items():
      try:
        src = make()
        result = time_loader(args, src, log)
      except Exception as e:  # pylint: disable=broad-except
        skipped.append(f"loader {name}: {type(e).__name__}: "
                       f"{str(e).splitlines()[0][:200]}")
        continue
      img_s = args.loader_batch / result["median_ms"] * 1e3
      note = (f"{img_s:,.0f} img/s; {args.loader_model}, "
              f"{args.loader_dtype}, --aug {args.loader_aug}, "
              f"{src.num_train} images"
              + (f", {args.loader_workers} Grain workers"
                 if name == "grain" else ""))
      rows.append(timing.row(
          "loaders", f"train step, --loader {name}", "-", "uint8",
          f"{args.loader_batch}x" + "x".join(map(str, src.image_shape)),
          dict(result, img_s=img_s), note))
  # x copy here: step time over the memory loader's.
  memory = [r for r in rows if r["name"].endswith("memory")]
  for r in rows:
    r["ratio"] = (r["median_ms"] / memory[0]["median_ms"] if memory
                  else None)
  return rows, skipped
