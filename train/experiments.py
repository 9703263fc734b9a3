"""`python -m train.experiments`: baseline vs CutMix vs MixUp vs Cutout.

Trains the same model with the same schedule once per (method, seed) with
the trainer (`train.train_and_evaluate`), then evaluates every final model
on the clean test set and on occluded copies of it (a centre box and random
boxes covering 25% and 50% of the image, zero-filled), and writes a table
(Markdown and JSON, mean ± std over seeds) and a plot.

Data: the CIFAR-10 JPEGs (`cifar10/{train,test}/<class>/NNNN.jpg` in a zip)
are extracted into `--cache-dir`, read once with the trainer's `imagefolder`
loader and cached there as an .npz, which the runs then read (`--dataset
npz`). Nothing is written into the repository except `--out`.

Resumable: each run writes `<out>/runs/<method>-s<seed>.json` when it is
done, and is skipped on a rerun with the same settings; an interrupted run
resumes from its checkpoints in `<cache-dir>/runs/`. The summary merges
whatever runs exist and says how many seeds each method has.

Per-method settings are each method's published CIFAR recipe: CutMix α = 1
with prob 0.5 (the official CIFAR code), MixUp α = 1 with prob 1 (Zhang et
al.), Cutout of a 16×16 box (half the side) with prob 1 (DeVries & Taylor);
`--prob` overrides the probability for all three. TransMix (`transmix`, a
ViT only) is the MixUp/CutMix switch with TransMix's labels from the
attention, prob 1 as DeiT.

Options left out take the model family's recipe: for ResNets this study's
settings (width 8, SGD lr 0.1, weight decay 5e-4, 1 warm-up epoch), for ViTs
the trainer's DeiT recipe (AdamW, lr 5e-4 x batch / 512, weight decay 0.05,
5 warm-up epochs, label smoothing 0.1, the preset's width).
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import time
import zipfile
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from train import data
from train import models
from train import occlusion
from train import stats
from train import steps
from train import train as trainer
from train.config import Config

METHODS = ("none", "cutmix", "mixup", "cutout", "mix", "transmix")
LABELS = {"none": "baseline", "cutmix": "CutMix", "mixup": "MixUp",
          "cutout": "Cutout", "mix": "MixUp/CutMix switch",
          "transmix": "TransMix"}
# Each method's published CIFAR setting of the chance to apply it (`mix`:
# timm's Mixup default, as DeiT uses it).
DEFAULT_PROB = {"none": 0.5, "cutmix": 0.5, "mixup": 1.0, "cutout": 1.0,
                "mix": 1.0, "transmix": 1.0}
# The ResNet study's settings for the options left out; a ViT leaves them to
# the trainer's recipe (`config.RECIPES`).
RESNET_DEFAULTS = dict(width=8, lr=0.1, weight_decay=5e-4, warmup_epochs=1.0)
FRACTIONS = (0.25, 0.5)
# The evaluation conditions, in table order.
CONDITIONS = ("clean",) + tuple(
    f"{kind}{round(f * 100)}" for kind in occlusion.KINDS for f in FRACTIONS)
CONDITION_TITLES = {"pool": "pool", "clean": "clean", "centre25": "centre 25%",
                    "centre50": "centre 50%", "random25": "random 25%",
                    "random50": "random 50%"}
DEFAULT_ZIP = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "shared", "data", "cifar10-jpg.zip")
# The training settings that must agree between runs for them to be compared.
_RUN_KEYS = ("model", "width", "epochs", "batch_size", "lr", "weight_decay",
             "schedule", "warmup_epochs", "alpha", "prob", "mode",
             "cutout_size", "label_smoothing", "mixup_alpha", "switch_prob")


def make_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog="python -m train.experiments",
      description=__doc__.split("\n\n")[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  p.add_argument("--methods", default=",".join(METHODS),
                 help=f"comma-separated, from {METHODS} (none = baseline)")
  p.add_argument("--seeds", default="0,1",
                 help="comma-separated seeds; each seeds init, data order "
                      "and augmentation")
  p.add_argument("--epochs", type=int, default=3)
  p.add_argument("--eval-every", type=int, default=1,
                 help="test-set evaluation every this many epochs (for the "
                      "learning curve); the last epoch is always evaluated")
  p.add_argument("--model", default="resnet20", choices=tuple(models.MODELS))
  p.add_argument("--width", type=int, default=None,
                 help="first-stage channels (16 is the standard ResNet-20), "
                      "or a ViT's token width (default: 8 for ResNets, the "
                      "preset's for ViTs)")
  p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                 help="computation dtype (see python -m train --help)")
  p.add_argument("--batch-size", type=int, default=128)
  p.add_argument("--lr", type=float, default=None,
                 help="peak learning rate (default: 0.1 for ResNets, DeiT's "
                      "5e-4 x batch / 512 for ViTs)")
  p.add_argument("--weight-decay", type=float, default=None,
                 help="(default: 5e-4 for ResNets, 0.05 for ViTs)")
  p.add_argument("--warmup-epochs", type=float, default=None,
                 help="(default: 1 for ResNets, 5 for ViTs)")
  p.add_argument("--prob", type=float, default=None,
                 help="chance of applying the augmentation, for every method "
                      f"(default: per method, {DEFAULT_PROB})")
  p.add_argument("--train-subset", type=int, default=20000,
                 help="train on this many training images, a class-balanced "
                      "subset fixed by the data (0: all 50,000)")
  p.add_argument("--zip", default=DEFAULT_ZIP,
                 help="the CIFAR-10 JPEG zip (cifar10/{train,test}/<class>/)")
  p.add_argument("--data-dir", default=None,
                 help="an extracted imagefolder root to use instead of --zip")
  p.add_argument("--cache-dir", default="/tmp/cutmix-jax-experiments",
                 help="extracted images, the decoded .npz, and the runs' "
                      "checkpoints (keep it outside the repository)")
  p.add_argument("--out", default="results/cifar10",
                 help="per-run JSON (runs/), results.md, results.json, "
                      "results.png")
  p.add_argument("--fill", default="mean", choices=("mean", "black"),
                 help="occlusion fill: mean = the training mean colour, i.e. "
                      "zero in the network's normalised input (as the paper "
                      "zero-fills its normalised input); black = raw 0 pixels")
  p.add_argument("--occlusion-seed", type=int, default=0,
                 help="seed of the random occlusion boxes (the same for "
                      "every model)")
  p.add_argument("--pool", action="store_true",
                 help="also evaluate each final model on the evaluation pool "
                      "(the training images outside --train-subset, then the "
                      "test images) and save per-image correctness")
  p.add_argument("--summary-only", action="store_true",
                 help="train nothing; rewrite the table from --out/runs")
  p.add_argument("--ckpt-every", type=int, default=200,
                 help="checkpoint every this many steps (and at the end)")
  p.add_argument("--progress", action=argparse.BooleanOptionalAction,
                 default=False, help="progress bars while training")
  return p


# ---------------------------------------------------------------------------
# Data


def _file_tag(path: str) -> str:
  st = os.stat(path)
  key = f"{os.path.abspath(path)}:{st.st_size}:{int(st.st_mtime)}"
  return hashlib.sha1(key.encode()).hexdigest()[:10]


def _source_tag(zip_path: Optional[str], data_dir: Optional[str]) -> str:
  return _file_tag(data_dir or zip_path)


def _imagefolder_root(zip_path: Optional[str], data_dir: Optional[str],
                      cache_dir: str) -> str:
  """`data_dir`, or the folder holding train/ in `zip_path` extracted (once)
  into `cache_dir`."""
  if data_dir:
    return data_dir
  extracted = os.path.join(cache_dir,
                           f"extracted-{_source_tag(zip_path, data_dir)}")
  if not os.path.exists(os.path.join(extracted, ".done")):
    print(f"Extracting {zip_path} into {extracted} ...", flush=True)
    with zipfile.ZipFile(zip_path) as z:
      z.extractall(extracted)
    open(os.path.join(extracted, ".done"), "w").close()
  for dirpath, dirnames, _ in os.walk(extracted):
    if "train" in dirnames:
      return dirpath
  return extracted


def prepare_data(zip_path: Optional[str], data_dir: Optional[str],
                 cache_dir: str, train_subset: int = 0) -> str:
  """Returns an .npz of the dataset in `cache_dir`, building it once.

  The images are read by the trainer's `imagefolder` loader, from `data_dir`
  or from `zip_path` extracted into `cache_dir`.
  """
  os.makedirs(cache_dir, exist_ok=True)
  source = data_dir or zip_path
  if not source or not os.path.exists(source):
    raise data.DataError(f"no dataset at {source!r}; pass --zip or --data-dir.")
  tag = _source_tag(zip_path, data_dir)
  full = os.path.join(cache_dir, f"data-{tag}.npz")
  if not os.path.exists(full):
    root = _imagefolder_root(zip_path, data_dir, cache_dir)
    start = time.perf_counter()
    ds = data.load_imagefolder(root)
    print(f"Decoded {len(ds.x_train)} + {len(ds.x_test)} images from {root} "
          f"in {time.perf_counter() - start:.0f} s.", flush=True)
    _save_npz(full, x_train=ds.x_train, y_train=ds.y_train, x_test=ds.x_test,
              y_test=ds.y_test, class_names=np.asarray(ds.class_names))
  if not train_subset:
    return full
  path = os.path.join(cache_dir, f"data-{tag}-train{train_subset}.npz")
  if not os.path.exists(path):
    with np.load(full) as f:
      arrays = {k: f[k] for k in f.files}
    keep = subset_indices(arrays["y_train"], train_subset)
    arrays["x_train"] = arrays["x_train"][keep]
    arrays["y_train"] = arrays["y_train"][keep]
    _save_npz(path, **arrays)
  return path


def subset_indices(y: np.ndarray, train_subset: int) -> np.ndarray:
  """The training subset: sorted indices into the full training set.

  Class-balanced, and fixed by the data alone (NumPy `default_rng(0)`), not
  by a run's seed.
  """
  rng = np.random.default_rng(0)
  per_class = [rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)]
  order = np.stack([p[: min(len(q) for q in per_class)]
                    for p in per_class], 1).ravel()
  return np.sort(order[:train_subset])


def _save_npz(path: str, **arrays: np.ndarray) -> None:
  # A per-process name: concurrent runs may build the same file.
  tmp = f"{path}.{os.getpid()}.tmp.npz"
  np.savez(tmp, **arrays)
  os.replace(tmp, path)


def prepare_pool(zip_path: Optional[str], data_dir: Optional[str],
                 cache_dir: str, train_subset: int) -> str:
  """Returns an .npz of the evaluation pool in `cache_dir`, building it once.

  The pool is every training image outside the `train_subset` subset, in
  the full training set's order (sorted class folders, sorted file names),
  then every test image in the same order: images of the training
  distribution that no run trains on. The file holds `x`, `y`, `files` (each
  image's path relative to the imagefolder root) and `files_sha256`, the
  SHA-256 of those paths joined by newlines, which names the pool exactly.
  """
  if not train_subset:
    raise data.DataError("--pool needs --train-subset: without a subset "
                         "every training image is trained on.")
  full = prepare_data(zip_path, data_dir, cache_dir)
  path = full.replace(".npz", f"-pool{train_subset}.npz")
  if os.path.exists(path):
    return path
  with np.load(full) as f:
    x_train, y_train = f["x_train"], f["y_train"]
    x_test, y_test = f["x_test"], f["y_test"]
  root = _imagefolder_root(zip_path, data_dir, cache_dir)
  files = data.scan_imagefolder(root)
  names = [os.path.relpath(p, root) for p in files.train_paths
           + files.test_paths]
  if len(names) != len(x_train) + len(x_test):
    raise data.DataError(f"{root} lists {len(names)} images, but the decoded "
                         f"cache {full} holds {len(x_train) + len(x_test)}.")
  rest = np.setdiff1d(np.arange(len(x_train)),
                      subset_indices(y_train, train_subset))
  pool_files = [names[i] for i in rest] + names[len(x_train):]
  _save_npz(path, x=np.concatenate([x_train[rest], x_test]),
            y=np.concatenate([y_train[rest], y_test]),
            files=np.asarray(pool_files),
            files_sha256=np.asarray(files_sha256(pool_files)))
  return path


def files_sha256(names: Sequence[str]) -> str:
  """SHA-256 of file names joined by newlines: the identity of a pool."""
  return hashlib.sha256("\n".join(names).encode()).hexdigest()


def class_names(npz_path: str) -> Optional[list[str]]:
  with np.load(npz_path) as f:
    return [str(c) for c in f["class_names"]] if "class_names" in f else None


# ---------------------------------------------------------------------------
# Evaluation


class Classifier:
  """A trained state's per-image correctness, compiled once for all calls.

  Args:
    cfg: the run's configuration (model and width).
    state: the final training state (`train_and_evaluate(...)["state"]`).
    ds: the dataset the run trained on (its mean and std normalise).
    fill: occlusion fill: "mean" (zero in normalised space) or "black" (raw
      zero).
    batch_size: evaluation batch size; the last batch is padded.
  """

  def __init__(self, cfg: Config, state: Any, ds: data.Dataset,
               fill: str = "mean", batch_size: int = 1000):
    height, width, channels = ds.image_shape
    model = models.create_model(
        cfg.model, ds.num_classes, in_channels=channels,
        image_size=min(height, width), width=cfg.width, dtype=cfg.dtype,
        seed=cfg.seed)
    graphdef, _, _ = nnx.split(model, nnx.Param, nnx.BatchStat)
    logits_fn = steps.make_logits_fn(graphdef, ds.mean, ds.std)
    fill_value = ds.mean if fill == "mean" else np.zeros_like(ds.mean)

    @jax.jit
    def correct(state, images, labels, boxes):
      logits = logits_fn(state, occlusion.occlude(images, boxes, fill_value))
      return jnp.argmax(logits, -1) == labels

    self._correct = correct
    self._state = jax.device_put(
        {k: state[k] for k in ("params", "batch_stats")})
    self.batch_size = batch_size

  def correct(self, x: np.ndarray, y: np.ndarray,
              boxes: Optional[np.ndarray] = None) -> np.ndarray:
    """bool `[n]`: is each image of `x` `[n, H, W, C]` (uint8) classified as
    its label `y` `[n]`, with `boxes` int32 `[n, 4]` (top, left, bottom,
    right) occluded, or clean if None."""
    n = len(x)
    if boxes is None:
      boxes = np.zeros((n, 4), np.int32)
    out = [np.asarray(self._correct(self._state, xb, yb, bb))[mask]
           for (xb, yb, mask), (bb, _, _) in zip(
               data.eval_batches(x, y, self.batch_size),
               data.eval_batches(boxes, np.zeros(n, np.int32),
                                 self.batch_size))]
    result = np.concatenate(out) if out else np.zeros(0, bool)
    if len(result) != n:  # not an assert: it must hold under python -O too
      raise RuntimeError(f"evaluated {len(result)} images, expected {n}.")
    return result


def evaluate_occlusion(cfg: Config, state: Any, ds: data.Dataset,
                       fill: str = "mean", seed: int = 0,
                       batch_size: int = 1000,
                       conditions: Sequence[str] = CONDITIONS
                       ) -> dict[str, float]:
  """Test accuracy of a trained state on clean and occluded test images.

  Args:
    cfg: the run's configuration (model and width).
    state: the final training state (`train_and_evaluate(...)["state"]`).
    ds: the dataset the run trained on (its mean and std normalise).
    fill: "mean" (zero in normalised space) or "black" (raw zero).
    seed: seed of the random boxes.
    batch_size: evaluation batch size.
    conditions: which of `CONDITIONS` to evaluate.

  Returns:
    `{condition: accuracy}`.
  """
  n, height, width, _ = ds.x_test.shape
  classifier = Classifier(cfg, state, ds, fill, batch_size)
  results = {}
  for condition in conditions:
    boxes = None
    if condition != "clean":
      kind, percent = condition[:-2], int(condition[-2:])
      boxes = occlusion.make_boxes(kind, percent / 100, n, height, width, seed)
    results[condition] = int(classifier.correct(ds.x_test, ds.y_test,
                                                boxes).sum()) / n
  return results


def pack_bits(correct: np.ndarray) -> dict[str, Any]:
  """A bool vector as JSON: its length and `np.packbits` bytes in base64."""
  return dict(n=int(len(correct)), packbits_base64=base64.b64encode(
      np.packbits(correct).tobytes()).decode())


def unpack_bits(packed: dict[str, Any]) -> np.ndarray:
  """The bool vector that `pack_bits` stored."""
  raw = np.frombuffer(base64.b64decode(packed["packbits_base64"]), np.uint8)
  return np.unpackbits(raw, count=packed["n"]).astype(bool)


def evaluate_pool(cfg: Config, state: Any, ds: data.Dataset,
                  pool_path: str) -> dict[str, Any]:
  """Clean accuracy on the evaluation pool (`prepare_pool`) and on the test
  set, with each image's correctness, bit-packed (`pack_bits`)."""
  with np.load(pool_path) as f:
    x, y, sha = f["x"], f["y"], str(f["files_sha256"])
  classifier = Classifier(cfg, state, ds)
  pool = classifier.correct(x, y)
  test = classifier.correct(ds.x_test, ds.y_test)
  return dict(accuracy=int(pool.sum()) / len(pool), n=len(pool),
              files_sha256=sha, test_accuracy=int(test.sum()) / len(test),
              correct=dict(pool=pack_bits(pool), test=pack_bits(test)))


# ---------------------------------------------------------------------------
# Runs


def source_commit() -> Optional[str]:
  """The git commit of the code that ran, with "+dirty" for local changes."""
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, text=True,
                          capture_output=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--",
                            "cutmix_jax", "train"], cwd=repo, text=True,
                           capture_output=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return None
  return head + ("+dirty" if dirty else "")


def machine_info() -> dict[str, Any]:
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
    cpu = names[0] if names else cpu
  except OSError:
    pass
  return dict(cpu=cpu, cores=os.cpu_count(), platform=platform.platform(),
              python=platform.python_version(), jax=jax.__version__,
              devices=[str(d) for d in jax.devices()])


def run_config(args: argparse.Namespace, method: str, seed: int,
               npz_path: str) -> Config:
  prob = args.prob if args.prob is not None else DEFAULT_PROB[method]
  given = {k: getattr(args, k) for k in RESNET_DEFAULTS}
  if models.family(args.model) == "resnet":
    given = {k: RESNET_DEFAULTS[k] if v is None else v
             for k, v in given.items()}
  return Config(
      dataset="npz", data_dir=npz_path, model=args.model, dtype=args.dtype,
      epochs=args.epochs, batch_size=args.batch_size, aug=method, prob=prob,
      seed=seed, progress=args.progress, log_every=50,
      ckpt_every=args.ckpt_every, eval_every=args.eval_every, **given)


_MACHINE_FIELDS = (("cpu", "{}"), ("cores", "{} cores"), ("platform", "{}"),
                   ("python", "Python {}"), ("jax", "jax {}"),
                   ("devices", "{}"))


def _machines_line(machines: list[dict[str, str]]) -> str:
  """One line naming each distinct machine the runs were made on."""
  # Every recorded field is named: runs of one study can differ only in, say,
  # the kernel, and two identical-looking entries would read as a bug. Fields
  # a record lacks (runs made before they were recorded) are left out.
  return "- Machine(s): " + "; ".join(
      ", ".join(form.format(m[field]) for field, form in _MACHINE_FIELDS
                if field in m) for m in machines)


def _method_settings_line(table: dict[str, Any], s: dict[str, Any], h: int,
                          w: int) -> str:
  """One line naming the mixing settings of the methods in `table`."""
  # Built per method present: runs recorded before the switch existed lack
  # its settings.
  def describe(m: str) -> str:
    if m in ("cutmix", "mixup"):
      return f"{LABELS[m]} α = {s['alpha']}"
    if m in ("mix", "transmix"):
      labels = (" with TransMix's labels from the last block's attention"
                if m == "transmix" else "")
      return (f"{LABELS[m]}: MixUp α = {s['mixup_alpha']}, CutMix "
              f"α = {s['alpha']}, CutMix with chance {s['switch_prob']}"
              f"{labels}")
    side = s.get("cutout_size")
    return "Cutout " + (f"{side}×{side} box" if side else
                        f"{max(h // 2, 1)}×{max(w // 2, 1)} box (half the side)")

  parts = [f"{describe(m)}, mode {row['mode']}" for m, row in table.items()
           if m != "none"]
  if not parts:
    return "- No mixing method."
  return "- " + "; ".join(parts) + "; prob as in the table."


def _settings(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
  """What identifies a run: its training settings and its data."""
  s = {k: getattr(cfg, k) for k in _RUN_KEYS}
  if cfg.dtype != "float32":
    # Only when not the default, so that runs recorded before --dtype existed
    # still match their settings.
    s["dtype"] = cfg.dtype
  if cfg.optimizer != "sgd":
    s["optimizer"] = cfg.optimizer  # likewise, runs before --optimizer
  s.update(aug=cfg.aug, seed=cfg.seed, train_subset=args.train_subset,
           fill=args.fill, occlusion_seed=args.occlusion_seed)
  if args.pool:
    s["pool"] = True  # only when on: older runs' settings stay as they were
  return s


def run_one(args, method: str, seed: int, npz_path: str, command: str,
            pool_path: Optional[str] = None) -> dict[str, Any]:
  """Trains and evaluates one (method, seed), unless its JSON is there.

  With `pool_path` (`prepare_pool`), the final model is also evaluated on
  the pool: its accuracy is `accuracy["pool"]`, and the record's `pool`
  holds the pool's identity and each image's correctness, bit-packed.
  """
  cfg = run_config(args, method, seed, npz_path)
  ds = data.load("npz", npz_path)
  cfg = cfg.resolved("npz", min(ds.image_shape[:2]))
  settings = _settings(cfg, args)
  path = os.path.join(args.out, "runs", f"{method}-s{seed}.json")
  if os.path.exists(path):
    with open(path) as f:
      done = json.load(f)
    if done["settings"] != settings:
      diff = {k: (done["settings"].get(k), v) for k, v in settings.items()
              if done["settings"].get(k) != v}
      raise SystemExit(
          f"error: {path} holds a run with other settings {diff}; use another "
          "--out, or delete it.")
    print(f"{method} seed {seed}: done already ({path}), skipped.", flush=True)
    return done
  digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode())
  cfg.workdir = os.path.join(args.cache_dir, "runs",
                             f"{method}-s{seed}-{digest.hexdigest()[:8]}")
  print(f"{method} seed {seed}: training in {cfg.workdir}", flush=True)
  start = time.perf_counter()
  final = trainer.train_and_evaluate(cfg)
  train_s = time.perf_counter() - start
  start = time.perf_counter()
  state = final.pop("state")
  pool = evaluate_pool(cfg, state, ds, pool_path) if pool_path else None
  # Clean accuracy is the trainer's own final evaluation (the test checks
  # that `evaluate_occlusion` reproduces it).
  acc = dict(clean=final["test_accuracy"], **evaluate_occlusion(
      cfg, state, ds, args.fill, args.occlusion_seed,
      conditions=CONDITIONS[1:]))
  if pool:
    acc = dict(pool=pool["accuracy"], **acc)
  eval_s = time.perf_counter() - start
  with open(os.path.join(cfg.workdir, "metrics.jsonl")) as f:
    curve = [json.loads(line) for line in f if line.strip()]
  record = dict(
      method=method, seed=seed, settings=settings, accuracy=acc,
      trainer_final=final, curve=curve, train_seconds=round(train_s, 1),
      eval_seconds=round(eval_s, 1), image_hw=list(ds.image_shape[:2]),
      command=command, machine=machine_info(), commit=source_commit(),
      finished=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
      config=dataclasses.asdict(cfg))
  if pool:
    record["pool"] = pool
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump(record, f, indent=1)
  os.replace(path + ".tmp", path)
  print(f"{method} seed {seed}: " + "  ".join(
      f"{c} {a:.4f}" for c, a in acc.items())
        + f"  ({train_s:.0f} s train, {eval_s:.0f} s eval)", flush=True)
  return record


# ---------------------------------------------------------------------------
# Summary


@dataclasses.dataclass(frozen=True)
class Design:
  """A study's pre-registered analysis (its PROTOCOL.md).

  Attributes:
    conditions: the accuracy columns, in table order.
    primary: the primary comparison `(method, condition)` against the
      baseline; every other comparison is secondary, under Holm.
    kept_in_holm: whether the kept-fraction comparisons join Holm's family.
    margin: the equivalence margin (points) of a TOST on the primary
      comparison, or None for no equivalence test.
  """

  conditions: tuple[str, ...]
  primary: tuple[str, str]
  kept_in_holm: bool = False
  margin: Optional[float] = None

  @property
  def occluded(self) -> tuple[str, ...]:
    return tuple(c for c in self.conditions if c not in ("pool", "clean"))


# results/cifar10-5k/PROTOCOL.md: clean test accuracy is primary.
REGISTERED = Design(CONDITIONS, ("cutmix", "clean"))
# results/cifar10-5k-confirm/PROTOCOL.md: accuracy on the 55,000-image
# evaluation pool is primary, with a TOST at ±0.5 points; the 10k test
# accuracy, occlusion and kept fractions are the Holm family.
CONFIRMATORY = Design(("pool",) + CONDITIONS, ("cutmix", "pool"),
                      kept_in_holm=True, margin=0.5)


def design_of(records: Sequence[dict[str, Any]]) -> Design:
  """The confirmatory design for runs evaluated on a pool, else the first
  study's."""
  if all("pool" in r["accuracy"] for r in records):
    return CONFIRMATORY
  return REGISTERED


def _cell(d, scale=100, digits=2) -> str:
  """`mean ± std` of a summary entry, scaled (percent by default)."""
  if d["std"] is None:
    return f"{scale * d['mean']:.{digits}f}"
  return f"{scale * d['mean']:.{digits}f} ± {scale * d['std']:.{digits}f}"


def _mean_std(values: list[float]) -> tuple[float, Optional[float]]:
  v = np.asarray(values, np.float64)
  return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else None)


def summarize(out: str) -> Optional[dict[str, Any]]:
  """Merges `<out>/runs/*.json` into results.json, results.md, results.png."""
  run_dir = os.path.join(out, "runs")
  records = []
  if os.path.isdir(run_dir):
    for name in sorted(os.listdir(run_dir)):
      if name.endswith(".json"):
        with open(os.path.join(run_dir, name)) as f:
          records.append(json.load(f))
  if not records:
    print(f"No finished runs in {run_dir}.")
    return None
  # Runs are comparable only with one shared setting (per-method prob apart).
  shared = lambda r: {k: v for k, v in r["settings"].items()
                      if k not in ("aug", "seed", "prob", "mode")}
  if any(shared(r) != shared(records[0]) for r in records):
    raise SystemExit(f"error: the runs in {run_dir} have different settings; "
                     "they cannot share one table.")
  methods = [m for m in METHODS if any(r["method"] == m for r in records)]
  design = design_of(records)
  table = {}
  for m in methods:
    rs = sorted((r for r in records if r["method"] == m),
                key=lambda r: r["seed"])
    row = dict(seeds=[r["seed"] for r in rs],
               prob=rs[0]["settings"]["prob"], mode=rs[0]["settings"]["mode"])
    for c in design.conditions:
      mean, std = _mean_std([r["accuracy"][c] for r in rs])
      row[c] = dict(mean=mean, std=std, values=[r["accuracy"][c] for r in rs])
    row["kept"] = {}
    for c in design.occluded:
      kept = [r["accuracy"][c] / r["accuracy"]["clean"] for r in rs]
      mean, std = _mean_std(kept)
      row["kept"][c] = dict(mean=mean, std=std, values=kept)
    for loss in ("train_loss", "test_loss"):
      values = [r["trainer_final"].get(loss) for r in rs]
      if None not in values:
        mean, std = _mean_std(values)
        row[loss] = dict(mean=mean, std=std, values=values)
    row["train_seconds"] = _mean_std([r["train_seconds"] for r in rs])[0]
    table[m] = row
  paired = _paired_vs_baseline(records, methods, design)
  first = records[0]
  s = first["settings"]
  h, w = first["image_hw"]
  sizes = {f: occlusion.box_size(f, h, w) for f in FRACTIONS}
  summary = dict(
      settings=shared(first), conditions=list(design.conditions),
      box_sizes={f"{round(f * 100)}": dict(h=hw[0], w=hw[1],
                                           fraction=hw[0] * hw[1] / (h * w))
                 for f, hw in sizes.items()},
      methods=table, paired_vs_baseline=paired, gate=_gate(table),
      commands=sorted({r["command"] for r in records}),
      commits=sorted({str(r.get("commit")) for r in records}),
      machines=[dict(t) for t in sorted({tuple(sorted(
          (k, str(v)) for k, v in r["machine"].items())) for r in records})],
      runs=len(records))
  if "pool" in design.conditions:
    summary["pool"] = dict(n=first["pool"]["n"],
                           files_sha256=first["pool"]["files_sha256"])
    if any(r["pool"]["files_sha256"] != summary["pool"]["files_sha256"]
           for r in records):
      raise SystemExit(f"error: the runs in {run_dir} were evaluated on "
                       "different pools; they cannot share one table.")
  with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(summary, f, indent=1)

  fill = ("the training mean colour (zero in the network's normalised input)"
          if s["fill"] == "mean" else "black (raw 0)")
  lines = [
      "# CIFAR-10: " + " vs ".join(LABELS[m] for m in methods),
      "",
      ("Accuracy (%), mean ± sample std over seeds, on the evaluation pool "
       f"(pool: the {summary['pool']['n']:,} images no run trains on, the "
       "test set included), on the 10,000 clean test images (clean) and on "
       "occluded copies of them." if "pool" in design.conditions else
       "Test accuracy (%), mean ± sample std over seeds, on the 10,000 clean "
       "test images and on occluded copies."),
      "",
      "| method | seeds | prob | " + " | ".join(
          CONDITION_TITLES[c] for c in design.conditions) + " |",
      "|---|---|---|" + "---|" * len(design.conditions),
  ]
  for m, row in table.items():
    lines.append(f"| {LABELS[m]} | {len(row['seeds'])} | "
                 f"{row['prob'] if m != 'none' else '–'} | "
                 + " | ".join(_cell(row[c]) for c in design.conditions)
                 + " |")
  lines += _analysis_lines(table, paired, summary["gate"], design)
  subset = s["train_subset"] or "all 50,000"
  lines += [
      "",
      f"- Model {s['model']} (width {s['width'] or 'of the preset'}), "
      f"{s['epochs']} epochs, "
      f"batch {s['batch_size']}, "
      + ("AdamW (decoupled decay) " if s.get("optimizer") == "adamw" else
         "SGD (Nesterov, momentum 0.9) ")
      + f"lr {s['lr']} "
      f"with {s['warmup_epochs']} warmup epoch(s) then {s['schedule']} decay, "
      f"weight decay {s['weight_decay']}, random crop (pad 4) and flip for "
      f"every method; training images: {subset}.",
      _method_settings_line(table, s, h, w),
      f"- Occlusion: centre box, or one random box per image (seed "
      f"{s['occlusion_seed']}, the same for every model) wholly inside the "
      f"image, filled with {fill}. Box sizes: " + ", ".join(
          f"{round(f * 100)}% → {hw[0]}×{hw[1]} = {hw[0] * hw[1]} px "
          f"({100 * hw[0] * hw[1] / (h * w):.1f}%)" for f, hw in sizes.items())
      + ".",
      "- Seeds per method: " + ", ".join(
          f"{LABELS[m]} {row['seeds']}" for m, row in table.items())
      + f" ({len(records)} runs).",
      "- Command(s): " + "; ".join(f"`{c}`" for c in summary["commands"]),
      "- Source commit(s) of the runs: " + ", ".join(
          "not recorded" if c == "None" else c for c in summary["commits"])
      + ".",
      _machines_line(summary["machines"]),
      "- Mean training time per run: " + ", ".join(
          f"{LABELS[m]} {row['train_seconds'] / 60:.1f} min"
          for m, row in table.items()) + ".",
      "",
      "![accuracy by condition](results.png)",
      "",
  ]
  with open(os.path.join(out, "results.md"), "w") as f:
    f.write("\n".join(lines))
  _plot(table, paired, os.path.join(out, "results.png"), s,
        design.conditions)
  print("\n".join(lines[4:5 + len(table) + 1]))
  return summary


def _paired_vs_baseline(records, methods, design: Design) -> dict[str, Any]:
  """Each method minus the baseline on the seeds both have, in points (%).

  Accuracy differences get a paired t-test, and Holm's correction over every
  comparison except the primary one; the kept fractions (occluded / clean)
  get their own t-test, inside Holm's family where the design says so. The
  primary comparison also gets the design's equivalence test (TOST).
  """
  if "none" not in methods:
    return {}
  by_key = {(r["method"], r["seed"]): r for r in records}
  out = {}
  for m in methods:
    if m == "none":
      continue
    seeds = sorted(s for (mm, s) in by_key if mm == m and ("none", s) in by_key)
    pairs = [(by_key[(m, s)], by_key[("none", s)]) for s in seeds]
    acc = {c: stats.paired([100 * a["accuracy"][c] for a, _ in pairs],
                           [100 * b["accuracy"][c] for _, b in pairs])
           for c in design.conditions}
    kept = {c: stats.paired(
        [100 * a["accuracy"][c] / a["accuracy"]["clean"] for a, _ in pairs],
        [100 * b["accuracy"][c] / b["accuracy"]["clean"] for _, b in pairs])
            for c in design.occluded}
    out[m] = dict(seeds=seeds, accuracy=acc, kept=kept)
  family = [(m, "accuracy", c) for m in out for c in design.conditions
            if (m, c) != design.primary]
  if design.kept_in_holm:
    family += [(m, "kept", c) for m in out for c in design.occluded]
  adjusted = stats.holm([out[m][kind][c]["p"] for m, kind, c in family])
  for (m, kind, c), p in zip(family, adjusted):
    out[m][kind][c]["p_holm"] = p
  m, c = design.primary
  if design.margin is not None and m in out:
    primary = out[m]["accuracy"][c]
    primary["tost"] = stats.tost(primary["values"], design.margin)
    sd = (float(np.std(primary["values"], ddof=1)) if primary["n"] > 1
          else None)
    primary["power_at_margin"] = (
        None if sd is None else stats.power_paired(design.margin, sd,
                                                   primary["n"]))
  return out


def _gate(table) -> Optional[dict[str, Any]]:
  """The protocol's overfitting gate: baseline test loss >= 2 x train loss."""
  base = table.get("none", {})
  if "train_loss" not in base or "test_loss" not in base:
    return None
  ratio = base["test_loss"]["mean"] / base["train_loss"]["mean"]
  return dict(test_over_train_loss=ratio, passed=bool(ratio >= 2.0))


def _p(p: Optional[float]) -> str:
  if p is None:
    return "–"
  return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def _analysis_lines(table, paired, gate, design: Design) -> list[str]:
  """Markdown for kept fractions, final losses and the paired comparisons."""
  occluded = design.occluded

  lines = ["", "Fraction of clean accuracy kept under occlusion (%, occluded / "
           "clean per run, then mean ± std):", "",
           "| method | " + " | ".join(CONDITION_TITLES[c] for c in occluded)
           + " |", "|---|" + "---|" * len(occluded)]
  for m, row in table.items():
    lines.append(f"| {LABELS[m]} | "
                 + " | ".join(_cell(row["kept"][c]) for c in occluded) + " |")
  if all("train_loss" in row for row in table.values()):
    lines += ["", "Final losses (mean ± std): the training loss is the last "
              "epoch's mean over its (augmented, for mixing methods: mixed) "
              "batches.", "", "| method | train loss | test loss |",
              "|---|---|---|"]
    for m, row in table.items():
      lines.append(f"| {LABELS[m]} | {_cell(row['train_loss'], 1, 3)} | "
                   f"{_cell(row['test_loss'], 1, 3)} |")
  if gate is not None:
    lines += ["", f"Overfitting gate (baseline test loss ≥ 2 × train loss): "
              f"ratio {gate['test_over_train_loss']:.2f}, "
              f"{'passed' if gate['passed'] else 'NOT passed'}."]
  if not paired:
    return lines
  lines += ["", "Paired difference against the baseline (points), mean ± SE "
            "over the seeds both have; two-sided paired t-test p, and Holm's "
            "adjusted p over every comparison but the primary one"
            + (" (the kept fractions below included)" if design.kept_in_holm
               else "") + ":", "",
            "| method | seeds | " + " | ".join(
                CONDITION_TITLES[c] for c in design.conditions) + " |",
            "|---|---|" + "---|" * len(design.conditions)]

  def diff(d):
    if d["se"] is None:
      return "–" if d["mean"] is None else f"{d['mean']:+.2f}"
    text = f"{d['mean']:+.2f} ± {d['se']:.2f} (p {_p(d['p'])}"
    if "p_holm" in d:
      text += f", Holm {_p(d['p_holm'])}"
    return text + ")"

  for m, row in paired.items():
    lines.append(f"| {LABELS[m]} | {len(row['seeds'])} | " + " | ".join(
        diff(row["accuracy"][c]) for c in design.conditions) + " |")
  lines += ["", "The same for the fraction of clean accuracy kept (points):",
            "", "| method | " + " | ".join(
                CONDITION_TITLES[c] for c in occluded) + " |",
            "|---|" + "---|" * len(occluded)]
  for m, row in paired.items():
    lines.append(f"| {LABELS[m]} | " + " | ".join(
        diff(row["kept"][c]) for c in occluded) + " |")
  m, c = design.primary
  if m in paired:
    d = paired[m]["accuracy"][c]
    if d["se"] is not None:
      lines += ["", f"Primary test ({LABELS[m]} − baseline, {c} accuracy): "
                f"{d['mean']:+.2f} ± {d['se']:.2f} points over {d['n']} "
                f"paired seeds, t({d['n'] - 1}) = {d['t']:.2f}, "
                f"p = {_p(d['p'])}."]
      if "tost" in d:
        lines += _equivalence_lines(d, design.margin)
  return lines


def _equivalence_lines(d: dict[str, Any], margin: float) -> list[str]:
  """The TOST, the registered combined reading and the achieved power."""
  tost = d["tost"]
  lo, hi = tost["ci"]
  different, equivalent = d["p"] < 0.05, tost["p"] < 0.05
  direction = "gain" if d["mean"] > 0 else "loss"
  reading = {
      (True, True): f"a {direction}, smaller than {margin} points",
      (True, False): f"a {direction}, not shown to be smaller than {margin} "
                     "points",
      (False, True): f"no difference of {margin} points or more (equivalent "
                     f"within ±{margin})",
      (False, False): "inconclusive: neither a difference nor equivalence "
                      f"within ±{margin} points is shown",
  }[(different, equivalent)]
  return [
      "",
      f"Equivalence (TOST at ±{margin} points): {100 * tost['level']:.0f}% "
      f"CI {lo:+.2f} to {hi:+.2f}, p = {_p(tost['p'])}"
      f" ({'inside' if equivalent else 'not inside'} the margin).",
      "",
      f"Registered reading (both tests at 0.05): {reading}.",
      "",
      f"Achieved power of the primary test for a ±{margin}-point difference "
      f"at the observed SD of the differences "
      f"({np.std(d['values'], ddof=1):.2f} points, {d['n']} pairs): "
      f"{d['power_at_margin']:.2f}.",
  ]


def _plot(table, paired, path, s, conditions):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, (ax, ax_diff) = plt.subplots(1, 2, figsize=(15, 4.5),
                                    gridspec_kw=dict(width_ratios=(3, 2)))
  _plot_paired(ax_diff, paired, conditions)
  n = len(table)
  for i, (m, row) in enumerate(table.items()):
    x = np.arange(len(conditions)) + (i - (n - 1) / 2) * 0.8 / n
    means = [100 * row[c]["mean"] for c in conditions]
    errs = [100 * (row[c]["std"] or 0) for c in conditions]
    ax.bar(x, means, 0.8 / n, yerr=errs, capsize=2,
           label=f"{LABELS[m]} ({len(row['seeds'])} seeds)")
  ax.set_xticks(np.arange(len(conditions)),
                [CONDITION_TITLES[c] for c in conditions])
  ax.set_ylabel("test accuracy (%)")
  ax.set_title(f"CIFAR-10, {s['model']} width {s['width'] or 'preset'}, {s['epochs']} "
               "epochs: clean and occluded test accuracy")
  ax.legend(fontsize=8)
  ax.grid(axis="y", alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _plot_paired(ax, paired, conditions):
  """Paired differences against the baseline, mean ± SE, per condition."""
  if not paired:
    ax.set_axis_off()
    return
  n = len(paired)
  for i, (m, row) in enumerate(paired.items()):
    x = np.arange(len(conditions)) + (i - (n - 1) / 2) * 0.8 / n
    d = [row["accuracy"][c] for c in conditions]
    ax.errorbar(x, [v["mean"] for v in d], yerr=[v["se"] or 0 for v in d],
                fmt="o", capsize=3,
                label=f"{LABELS[m]} ({len(row['seeds'])} paired seeds)")
  ax.axhline(0, color="k", lw=0.8)
  ax.set_xticks(np.arange(len(conditions)),
                [CONDITION_TITLES[c] for c in conditions])
  ax.set_ylabel("minus baseline (points), mean ± SE")
  ax.set_title("Paired difference against the baseline")
  ax.legend(fontsize=8)
  ax.grid(axis="y", alpha=0.3)


def main(argv: Optional[Sequence[str]] = None) -> None:
  args = make_parser().parse_args(argv)
  methods = [m.strip() for m in args.methods.split(",") if m.strip()]
  bad = [m for m in methods if m not in METHODS]
  if bad:
    raise SystemExit(f"error: unknown method(s) {bad}; choose from {METHODS}")
  seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
  command = "python -m train.experiments " + " ".join(
      shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
  os.makedirs(args.out, exist_ok=True)
  if not args.summary_only:
    zip_path = None if args.data_dir else args.zip
    npz_path = prepare_data(zip_path, args.data_dir, args.cache_dir,
                            args.train_subset)
    pool_path = (prepare_pool(zip_path, args.data_dir, args.cache_dir,
                              args.train_subset) if args.pool else None)
    # Seed-major order: every method gets its first seed before any gets a
    # second, so a grid cut short still compares all methods.
    for seed in seeds:
      for method in methods:
        run_one(args, method, seed, npz_path, command, pool_path)
        summarize(args.out)
  summarize(args.out)


if __name__ == "__main__":
  main()
