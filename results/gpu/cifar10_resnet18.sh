#!/usr/bin/env bash
# CIFAR-10 with PreAct-ResNet-18: the literature's GPU setting (200 epochs,
# batch 128, SGD lr 0.1 with Nesterov momentum 0.9, 1 warm-up epoch then
# cosine decay, weight decay 5e-4, random crop + flip, bf16 compute) for the
# baseline, MixUp (alpha 1, every batch) and CutMix (alpha 1, prob 0.5, the
# official CIFAR recipe), evaluated on the clean and occluded test sets by
# `python -m train.experiments`.
#
# Anchor: OpenMixup's CIFAR-10 ResNet-18 at 200 epochs reports baseline
# 94.87, MixUp 95.70, CutMix 96.11 (its configs use batch 100 and weight
# decay 1e-4, and apply every method to every batch).
#
# Usage, from anywhere:
#   results/gpu/cifar10_resnet18.sh                     # the full 200 epochs
#   EPOCHS=30 METHODS=none,cutmix PARALLEL=1 results/gpu/cifar10_resnet18.sh
# Environment:
#   EPOCHS    training epochs (default 200)
#   METHODS   comma-separated from none,cutmix,mixup,cutout,mix
#   SEEDS     comma-separated seeds (default 0)
#   DTYPE     bfloat16 (default) or float32
#   ZIP       the CIFAR-10 JPEG zip (default ../shared/data/cifar10-jpg.zip)
#   DATA_DIR  or an extracted copy of it (the folder holding train/ and test/)
#   RESULTS   results folder (default results/gpu/cifar10-preact18-<EPOCHS>ep)
#   CACHE     extracted data, decoded arrays and checkpoints (keep it outside
#             the repository; default /tmp/cutmix-jax-gpu)
#   PARALLEL  1: train every (method, seed) as a concurrent process on one
#             GPU, each with an equal share of its memory; 0 (default): one
#             after another
#   EXTRA     more `train.experiments` options, which override the above
#             (a CPU smoke test: EXTRA="--train-subset 500 --width 4")
# Every run resumes from its checkpoints when the script is run again.
set -euo pipefail
cd "$(dirname "$0")/../.."
EPOCHS=${EPOCHS:-200}
METHODS=${METHODS:-none,mixup,cutmix}
SEEDS=${SEEDS:-0}
DTYPE=${DTYPE:-bfloat16}
ZIP=${ZIP:-../shared/data/cifar10-jpg.zip}
RESULTS=${RESULTS:-results/gpu/cifar10-preact18-${EPOCHS}ep}
CACHE=${CACHE:-/tmp/cutmix-jax-gpu}
PYTHON=${PYTHON:-python3}

# --ckpt-every 1955: a checkpoint every 5 epochs of 391 steps.
args=(--seeds "$SEEDS" --epochs "$EPOCHS" --eval-every 10 --train-subset 0
      --model preact_resnet18 --width 64 --dtype "$DTYPE" --batch-size 128
      --lr 0.1 --weight-decay 5e-4 --warmup-epochs 1 --ckpt-every 1955
      --cache-dir "$CACHE" --out "$RESULTS")
source results/gpu/run_study.sh
