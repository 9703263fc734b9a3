"""A study's runs: one trainer run per (method, seed), evaluated and
recorded with its provenance (command, source commit, machine) in
`<out>/runs/<method>-s<seed>.json`, and skipped when that record exists with
the same settings; an interrupted run resumes from its checkpoints.

Per-method settings are each method's published CIFAR recipe: CutMix α = 1
with prob 0.5 (the official CIFAR code), MixUp α = 1 with prob 1 (Zhang et
al.), Cutout of a 16×16 box (half the side) with prob 1 (DeVries & Taylor);
`--prob` overrides the probability for all of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import subprocess
import time
from typing import Any, Optional

import jax

from bench import machine
from train import data
from train import evaluation
from train import metrics
from train import models
from train import train as trainer
from train.config import Config

METHODS = ("none", "cutmix", "mixup", "cutout", "mix", "transmix")


# Each method's published CIFAR setting of the chance to apply it (`mix`:
# timm's Mixup default, as DeiT uses it).
DEFAULT_PROB = {"none": 0.5, "cutmix": 0.5, "mixup": 1.0, "cutout": 1.0,
                "mix": 1.0, "transmix": 1.0}
# The ResNet study's settings for the options left out; a ViT leaves them to
# the trainer's recipe (`config.RECIPES`).
RESNET_DEFAULTS = dict(width=8, lr=0.1, weight_decay=5e-4, warmup_epochs=1.0)


# The training settings that must agree between runs for them to be compared.
_RUN_KEYS = ("model", "width", "epochs", "batch_size", "lr", "weight_decay",
             "schedule", "warmup_epochs", "alpha", "prob", "mode",
             "cutout_size", "label_smoothing", "mixup_alpha", "switch_prob")


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
  """The machine a run was made on: `bench.machine`'s CPU and platform
  probes, and the JAX version and devices."""
  m = machine.machine_info()
  return dict(cpu=m["cpu_model"], cores=m["cpu_count"],
              platform=m["platform"], python=m["python"], jax=jax.__version__,
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
  pool = evaluation.evaluate_pool(cfg, state, ds, pool_path) if pool_path else None
  # Clean accuracy is the trainer's own final evaluation (the test checks
  # that `evaluate_occlusion` reproduces it).
  acc = dict(clean=final["test_accuracy"], **evaluation.evaluate_occlusion(
      cfg, state, ds, args.fill, args.occlusion_seed,
      conditions=evaluation.CONDITIONS[1:]))
  if pool:
    acc = dict(pool=pool["accuracy"], **acc)
  eval_s = time.perf_counter() - start
  curve = metrics.read(os.path.join(cfg.workdir, "metrics.jsonl"))
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
