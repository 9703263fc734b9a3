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

Per-method settings are each method's published CIFAR recipe (see
`train.runs`); `--prob` overrides the probability for all of them. TransMix
(`transmix`, a ViT only) is the MixUp/CutMix switch with TransMix's labels
from the attention, prob 1 as DeiT.

Options left out take the model family's recipe: for ResNets this study's
settings (width 8, SGD lr 0.1, weight decay 5e-4, 1 warm-up epoch), for ViTs
the trainer's DeiT recipe (AdamW, lr 5e-4 x batch / 512, weight decay 0.05,
5 warm-up epochs, label smoothing 0.1, the preset's width).

This module is the command line. The data is prepared by `study_data`, each
run made and recorded by `runs`, evaluated by `evaluation`, and the runs
merged into statistics by `summary` and written out by `report`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Optional, Sequence

from train import models
from train import report
from train import runs
from train import study_data

DEFAULT_ZIP = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "shared", "data", "cifar10-jpg.zip")


def make_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog="python -m train.experiments",
      description=__doc__.split("\n\n")[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  p.add_argument("--methods", default=",".join(runs.METHODS),
                 help=f"comma-separated, from {runs.METHODS} (none = baseline)")
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
                      f"(default: per method, {runs.DEFAULT_PROB})")
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


def main(argv: Optional[Sequence[str]] = None) -> None:
  args = make_parser().parse_args(argv)
  methods = [m.strip() for m in args.methods.split(",") if m.strip()]
  bad = [m for m in methods if m not in runs.METHODS]
  if bad:
    raise SystemExit(
        f"error: unknown method(s) {bad}; choose from {runs.METHODS}")
  seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
  command = "python -m train.experiments " + " ".join(
      shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
  os.makedirs(args.out, exist_ok=True)
  if not args.summary_only:
    zip_path = None if args.data_dir else args.zip
    npz_path = study_data.prepare_data(zip_path, args.data_dir,
                                       args.cache_dir, args.train_subset)
    pool_path = (study_data.prepare_pool(zip_path, args.data_dir,
                                         args.cache_dir, args.train_subset)
                 if args.pool else None)
    # Seed-major order: every method gets its first seed before any gets a
    # second, so a grid cut short still compares all methods.
    for seed in seeds:
      for method in methods:
        runs.run_one(args, method, seed, npz_path, command, pool_path)
        report.summarize(args.out)
  report.summarize(args.out)


if __name__ == "__main__":
  main()
