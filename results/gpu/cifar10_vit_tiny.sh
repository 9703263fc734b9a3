#!/usr/bin/env bash
# CIFAR-10 with a DeiT-Tiny-sized ViT (`vit_tiny`: patch 4 on 32x32, so 64
# tokens and the class token, width 192, depth 12, 3 heads) trained from
# scratch on all 50,000 training images by the trainer's DeiT recipe (AdamW,
# lr 5e-4 x batch / 512, 5 warm-up epochs then cosine, weight decay 0.05 off
# norms, biases, position embeddings and the class token, label smoothing
# 0.1, random crop + flip, bf16 compute) for the baseline, the DeiT
# MixUp/CutMix switch (`mix`: MixUp alpha 0.8, CutMix alpha 1, CutMix with
# chance 0.5, every batch) and TransMix (the same switch with TransMix's
# labels from the last block's class-token attention), evaluated on the clean
# and occluded test sets by `python -m train.experiments` (issue #23 §5).
#
# It is the optional second device call after results/gpu/device_check.sh:
# choose EPOCHS to fit the device time left (PARALLEL=1 trains the methods
# side by side on the one GPU). No published figure is like for like: DeiT's
# are ImageNet at 300 epochs.
#
# Usage, from anywhere:
#   results/gpu/cifar10_vit_tiny.sh                            # 100 epochs
#   EPOCHS=15 PARALLEL=1 results/gpu/cifar10_vit_tiny.sh       # a device call
#   PACK= ZIP=... results/gpu/cifar10_vit_tiny.sh              # from the zip
# Environment:
#   EPOCHS    training epochs (default 100)
#   METHODS   comma-separated from none,mix,transmix,cutmix,mixup,cutout
#             (default none,mix,transmix)
#   SEEDS     comma-separated seeds (default 0)
#   BATCH     batch size (default 512; the lr follows it)
#   DTYPE     bfloat16 (default) or float32
#   PACK      CIFAR-10 packed by `python -m bench.devdata pack` (default
#             .devdata/cifar10-jpg.npz, what the device call carries); it is
#             unpacked into CACHE. Empty: read ZIP or DATA_DIR instead.
#   ZIP       the CIFAR-10 JPEG zip (default ../shared/data/cifar10-jpg.zip)
#   DATA_DIR  or an extracted copy of it (the folder holding train/ and test/)
#   RESULTS   results folder (default results/gpu/cifar10-vit-tiny-<EPOCHS>ep)
#   CACHE     extracted data, decoded arrays and checkpoints (keep it outside
#             the repository; default /tmp/cutmix-jax-gpu-vit)
#   PARALLEL  1: train every (method, seed) as a concurrent process on one
#             GPU, each with an equal share of its memory; 0 (default): one
#             after another
#   EXTRA     more `train.experiments` options, which override the above
# A CPU check of the whole path on 512 + 128 images, in a few minutes:
#   python -m bench.devdata pack ../shared/data/cifar10-jpg.zip /tmp/small.npz --train 512 --test 128
#   PACK=/tmp/small.npz EPOCHS=1 BATCH=64 DTYPE=float32 METHODS=transmix \
#     RESULTS=/tmp/vit-check CACHE=/tmp/vit-check-cache EXTRA="--width 48" \
#     results/gpu/cifar10_vit_tiny.sh
# Every run resumes from its checkpoints when the script is run again.
set -euo pipefail
cd "$(dirname "$0")/../.."
EPOCHS=${EPOCHS:-100}
METHODS=${METHODS:-none,mix,transmix}
SEEDS=${SEEDS:-0}
BATCH=${BATCH:-512}
DTYPE=${DTYPE:-bfloat16}
PACK=${PACK-.devdata/cifar10-jpg.npz}
ZIP=${ZIP:-../shared/data/cifar10-jpg.zip}
RESULTS=${RESULTS:-results/gpu/cifar10-vit-tiny-${EPOCHS}ep}
CACHE=${CACHE:-/tmp/cutmix-jax-gpu-vit}
PYTHON=${PYTHON:-python3}

if [[ -z "${DATA_DIR:-}" && -n "$PACK" && -f "$PACK" ]]; then
  if [[ ! -d "$CACHE/cifar10/images" ]]; then
    "$PYTHON" -m bench.devdata unpack "$PACK" "$CACHE/cifar10"
  fi
  DATA_DIR="$CACHE/cifar10/images"
fi

# A checkpoint about every 5 epochs.
steps_per_epoch=$(( 50000 / BATCH ))
args=(--seeds "$SEEDS" --epochs "$EPOCHS" --eval-every 10 --train-subset 0
      --model vit_tiny --dtype "$DTYPE" --batch-size "$BATCH"
      --ckpt-every $(( 5 * (steps_per_epoch > 0 ? steps_per_epoch : 1) ))
      --cache-dir "$CACHE" --out "$RESULTS")
source results/gpu/run_study.sh
