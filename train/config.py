"""The training configuration: one dataclass with defaults, and its CLI."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Optional, Sequence

from train import models

DATASETS = ("digits", "cifar10", "cifar100", "imagefolder", "npz")
AUGS = ("none", "cutmix", "mixup", "mix", "cutout", "transmix")
MODES = ("batch", "pair", "elem")
SCHEDULES = ("cosine", "step")
PARALLEL = ("jit", "pmap")
DTYPES = ("float32", "bfloat16")
LOADERS = ("auto", "memory", "grain", "device")
CROPS = ("pad", "resized")
TARGETS = ("kway", "dense")
OPTIMIZERS = ("sgd", "adamw")

# Each model family's recipe, for the options left at None. ResNets: the
# ResNet and CutMix papers' SGD. ViTs: DeiT's AdamW (lr 5e-4 per 512 images
# of batch, 5 warm-up epochs, weight decay 0.05, label smoothing 0.1, mixing
# always on; its MixUp 0.8 / CutMix 1.0 / switch 0.5 are the defaults of
# --mixup-alpha, --alpha and --switch-prob for every model).
RECIPES = {
    "resnet": dict(optimizer="sgd", lr=0.1, weight_decay=5e-4,
                   warmup_epochs=2.0, label_smoothing=0.0, prob=0.5),
    "vit": dict(optimizer="adamw", lr_per_512=5e-4, weight_decay=0.05,
                warmup_epochs=5.0, label_smoothing=0.1, prob=1.0),
}
# The value that a setting added since 0.2 had in runs saved before it
# existed, for resuming them.
BEFORE_ADDED = {"optimizer": "sgd"}


@dataclasses.dataclass
class Config:
  """Everything a run depends on. Field docs double as the `--help` text."""

  dataset: str = "digits"
  data_dir: Optional[str] = None
  loader: str = "auto"
  loader_memory_gb: float = 4.0
  image_size: int = 224
  crop: Optional[str] = None
  val_split: float = 0.0
  workers: int = 4
  model: str = "resnet20"
  width: Optional[int] = None
  dtype: str = "float32"
  epochs: int = 30
  batch_size: int = 128
  eval_batch_size: int = 512
  optimizer: Optional[str] = None
  lr: Optional[float] = None
  weight_decay: Optional[float] = None
  schedule: str = "cosine"
  warmup_epochs: Optional[float] = None
  label_smoothing: Optional[float] = None
  targets: str = "kway"
  grad_clip: float = 0.0
  grad_accum: int = 1
  ema_decay: float = 0.0
  aug: str = "cutmix"
  alpha: float = 1.0
  prob: Optional[float] = None
  mode: Optional[str] = None
  mixup_alpha: float = 0.8
  switch_prob: float = 0.5
  cutout_size: Optional[int] = None
  crop_pad: Optional[int] = None
  flip: Optional[bool] = None
  parallel: str = "jit"
  seed: int = 0
  workdir: Optional[str] = None
  eval_every: int = 1
  ckpt_every: Optional[int] = None
  ckpt_minutes: float = 10.0
  ckpt_keep: int = 2
  log_every: int = 10
  progress: bool = True
  tensorboard: bool = False
  compilation_cache: Optional[str] = None
  distributed: Optional[bool] = None
  coordinator_address: Optional[str] = None
  num_processes: Optional[int] = None
  process_id: Optional[int] = None

  def with_recipe(self) -> "Config":
    """Fills the options left at None from the model family's `RECIPES`."""
    recipe = dict(RECIPES[models.family(self.model)])
    lr_per_512 = recipe.pop("lr_per_512", None)
    if lr_per_512 is not None:
      recipe["lr"] = lr_per_512 * self.batch_size / 512
    return dataclasses.replace(self, **{
        k: v for k, v in recipe.items() if getattr(self, k) is None})

  def resolved(self, dataset_name: str, image_size: int) -> "Config":
    """Fills the model- and dataset-dependent defaults (`None` fields)."""
    cfg = self.with_recipe()
    if cfg.crop_pad is None:
      # 4 pixels on 32x32 CIFAR (the standard recipe), 1 on 8x8 digits.
      cfg.crop_pad = max(1, image_size // 8)
    if cfg.mode is None:
      # The papers' settings: CutMix/MixUp draw once per batch, Cutout cuts
      # each sample independently.
      cfg.mode = "elem" if cfg.aug == "cutout" else "batch"
    if cfg.flip is None:
      # Mirrored digits are different glyphs (or none at all).
      cfg.flip = dataset_name != "digits"
    return cfg

  def validate(self) -> None:
    """Raises ValueError naming the first bad option and its allowed values."""
    checks = [
        (self.dataset in DATASETS, f"--dataset must be one of {DATASETS}"),
        (self.model in models.MODELS,
         f"--model must be one of {tuple(models.MODELS)}"),
        (self.aug in AUGS, f"--aug must be one of {AUGS}"),
        (self.aug != "transmix" or models.family(self.model) == "vit",
         "--aug transmix reads a ViT's attention: it needs --model vit_*"),
        (self.optimizer in (None,) + OPTIMIZERS,
         f"--optimizer must be one of {OPTIMIZERS}"),
        (self.mode in (None,) + MODES, f"--mode must be one of {MODES}"),
        (self.schedule in SCHEDULES, f"--schedule must be one of {SCHEDULES}"),
        (self.parallel in PARALLEL, f"--parallel must be one of {PARALLEL}"),
        (self.dtype in DTYPES, f"--dtype must be one of {DTYPES}"),
        (self.loader in LOADERS, f"--loader must be one of {LOADERS}"),
        (self.targets in TARGETS, f"--targets must be one of {TARGETS}"),
        (self.loader != "grain" or self.dataset == "imagefolder",
         "--loader grain reads --dataset imagefolder only"),
        (self.crop in (None,) + CROPS, f"--crop must be one of {CROPS}"),
        (self.crop != "resized" or (self.dataset == "imagefolder"
                                    and self.loader in ("auto", "grain")),
         "--crop resized is done by --loader grain, which reads --dataset "
         "imagefolder"),
        (0 <= self.val_split < 1, "--val-split must be in [0, 1)"),
        (self.loader_memory_gb > 0, "--loader-memory-gb must be > 0"),
        (self.image_size >= 1, "--image-size must be >= 1"),
        (self.workers >= 0, "--workers must be >= 0"),
        (self.width is None or self.width >= 1, "--width must be >= 1"),
        (self.epochs >= 1, "--epochs must be >= 1"),
        (self.batch_size >= 1, "--batch-size must be >= 1"),
        (self.eval_batch_size >= 1, "--eval-batch-size must be >= 1"),
        (self.lr is None or self.lr > 0, "--lr must be > 0"),
        (self.weight_decay is None or self.weight_decay >= 0,
         "--weight-decay must be >= 0"),
        (self.warmup_epochs is None or self.warmup_epochs >= 0,
         "--warmup-epochs must be >= 0"),
        (self.label_smoothing is None or 0 <= self.label_smoothing < 1,
         "--label-smoothing must be in [0, 1)"),
        (self.grad_clip >= 0, "--grad-clip must be >= 0 (0 turns it off)"),
        (self.grad_accum >= 1, "--grad-accum must be >= 1 (1 turns it off)"),
        (0 <= self.ema_decay < 1,
         "--ema-decay must be in [0, 1) (0 turns it off)"),
        (self.alpha > 0, "--alpha must be > 0"),
        (self.prob is None or 0 <= self.prob <= 1,
         "--prob must be in [0, 1]"),
        (self.mixup_alpha > 0, "--mixup-alpha must be > 0"),
        (0 <= self.switch_prob <= 1, "--switch-prob must be in [0, 1]"),
        (self.cutout_size is None or self.cutout_size >= 1,
         "--cutout-size must be >= 1"),
        (self.crop_pad is None or self.crop_pad >= 0, "--crop-pad must be >= 0"),
        (self.eval_every >= 1, "--eval-every must be >= 1"),
        (self.ckpt_every is None or self.ckpt_every >= 1,
         "--ckpt-every must be >= 1"),
        (self.ckpt_minutes >= 0, "--ckpt-minutes must be >= 0"),
        (self.ckpt_keep >= 1, "--ckpt-keep must be >= 1"),
        (self.log_every >= 1, "--log-every must be >= 1"),
        (self.num_processes is None or self.num_processes >= 1,
         "--num-processes must be >= 1"),
        (self.process_id is None or self.process_id >= 0
         and (self.num_processes is None or self.process_id < self.num_processes),
         "--process-id must be in [0, --num-processes)"),
        (self.dataset == "digits" or self.data_dir,
         f"--dataset {self.dataset} needs --data-dir"),
    ]
    for ok, message in checks:
      if not ok:
        raise ValueError(message)

  def default_workdir(self) -> str:
    return self.workdir or f"runs/{self.dataset}-{self.model}-{self.aug}-s{self.seed}"


_HELP = {
    "dataset": "digits (scikit-learn's bundled 8x8 digits, no download), "
               "cifar10/cifar100 (python-pickle .tar.gz or extracted folder), "
               "imagefolder (<root>/train/<class>/*.jpg|png and <root>/test "
               "or <root>/val) or npz (x_train, y_train, x_test, y_test)",
    "data_dir": "path to the dataset (not used by digits)",
    "loader": "memory: decode the whole dataset into RAM (images of one "
              "size); grain: read an imagefolder batch by batch with Grain "
              "worker processes (see --crop); auto: grain for an "
              "imagefolder larger than --loader-memory-gb decoded, or with "
              "--crop resized, else memory; device: as memory, but the "
              "training images live on the devices (replicated) and each "
              "step gathers its batch by index inside the jitted step, for "
              "datasets far smaller than one device's memory",
    "loader_memory_gb": "the decoded size above which --loader auto reads "
                        "an imagefolder with Grain",
    "image_size": "side of the square crops of --crop resized (a warning "
                  "says when it resizes the images up)",
    "crop": "the recipe of --loader grain: pad (the images keep their "
            "size; random crop of the image padded by --crop-pad, and flip, "
            "on the device, as the in-memory loader does; test images as "
            "they are) or resized (RandomResizedCrop to --image-size and "
            "flip in the workers; test images resized and centre-cropped) "
            "(default: pad for images of one size up to 64 px, else "
            "resized)",
    "val_split": "hold out this fraction of the training images (per "
                 "class, fixed by the data, not --seed) as a validation set, "
                 "evaluated every --eval-every epochs in place of the test "
                 "set, which is then evaluated once, at the end (0: off)",
    "workers": "Grain worker processes per process that decode and crop "
               "(0: threads of the training process)",
    "model": "ResNet: tiny (tests), resnet20/32/56 (CIFAR-style), "
             "resnet18/34/50 (ImageNet-style), preact_resnet18 (the "
             "pre-activation ResNet-18 of the CutMix/MixUp CIFAR papers, "
             "11.2M parameters on CIFAR). ViT (DeiT layout, square images): "
             "vit_tiny (DeiT-Ti: width 192, depth 12, 3 heads, 4x4 patches "
             "for 32x32), vit_small_cpu (width 96, depth 6, 3 heads, 4x4 "
             "patches), vit_digits (width 64, depth 4, 2 heads, 2x2 patches "
             "for the 8x8 digits)",
    "width": "first-stage channels, or a ViT's token width (default: 16 "
             "CIFAR-style, 64 ImageNet-style, 4 tiny, the preset's for a ViT)",
    "dtype": "computation dtype: bfloat16 runs convolutions and matrix "
             "products in bf16 (fast on GPUs and TPUs) with float32 "
             "parameters, optimizer state, BatchNorm statistics and loss",
    "epochs": "training epochs",
    "batch_size": "global training batch size, over all devices of all "
                  "processes; must divide by the device count",
    "eval_batch_size": "global evaluation batch size (the tail is padded and "
                       "masked, so every test sample counts)",
    "optimizer": "sgd (momentum 0.9, Nesterov, coupled L2 decay) or adamw "
                 "(betas 0.9/0.999, decoupled decay) (default: sgd for "
                 "ResNets, adamw for ViTs)",
    "lr": "peak learning rate (default: 0.1 for ResNets; 5e-4 x "
          "batch size / 512 for ViTs, as DeiT)",
    "weight_decay": "weight decay of conv and linear kernels; norms, biases "
                    "and a ViT's position embeddings and class token are not "
                    "decayed (default: 5e-4 for ResNets, 0.05 for ViTs)",
    "schedule": "cosine: linear warmup then cosine decay to 0; step: warmup "
                "then x0.1 at 50%% and 75%% of training",
    "warmup_epochs": "linear warmup length in epochs (default: 2 for "
                     "ResNets, 5 for ViTs)",
    "label_smoothing": "label smoothing, applied before mixing (default: 0 "
                       "for ResNets, 0.1 for ViTs)",
    "targets": "kway: each sample's (class, weight) pairs and cutmix_jax's "
               "fused softmax cross-entropy, with no [batch, classes] target "
               "(every dataset here has integer labels); dense: float "
               "[batch, classes] targets and optax's loss. The same loss to "
               "float rounding",
    "grad_clip": "clip gradients to this global norm (0: off)",
    "grad_accum": "accumulate the gradients of this many steps of "
                  "--batch-size before each update (optax.MultiSteps): the "
                  "update's batch is --batch-size x --grad-accum, and the "
                  "schedule counts updates (1: off)",
    "ema_decay": "keep an exponential moving average of the weights (and "
                 "BatchNorm statistics) with this decay per step, evaluated "
                 "alongside the trained weights (0: off)",
    "aug": "batch augmentation after crop and flip: none, cutmix, mixup, mix "
           "(CutMix or MixUp, switched), cutout, transmix (mix, with "
           "TransMix's labels from a ViT's attention)",
    "alpha": "Beta(alpha, alpha) for CutMix's (or MixUp's, with --aug mixup) "
             "lambda; CutMix alpha for --aug mix and transmix",
    "prob": "chance of applying --aug (the official cutmix_prob) (default: "
            "0.5 for ResNets, 1 for ViTs)",
    "mode": "one draw per batch, per pair or per element (sample) "
            "(default: batch, elem for cutout)",
    "mixup_alpha": "MixUp alpha for --aug mix and transmix",
    "switch_prob": "chance of CutMix rather than MixUp for --aug mix and "
                   "transmix",
    "cutout_size": "Cutout box side in pixels (default: half the image side)",
    "crop_pad": "padding (with the mean colour) for the random crop "
                "(default: image side / 8, so 4 on CIFAR; always 0 with "
                "--crop resized, which crops in the Grain workers)",
    "flip": "random horizontal flips (default: on, except on digits; with "
            "--crop resized, done in the Grain workers)",
    "parallel": "jit: jax.jit over a device mesh, batch sharded on 'data'; "
                "pmap: the legacy jax.pmap path (single process only)",
    "seed": "seed of initialisation, data order and augmentation",
    "workdir": "run directory for checkpoints, metrics and plots; rerunning "
               "with the same one resumes (default: "
               "runs/<dataset>-<model>-<aug>-s<seed>)",
    "eval_every": "evaluate on the test set every this many epochs; the last "
                  "epoch is always evaluated",
    "ckpt_every": "consider a checkpoint every this many steps (default: "
                  "one per epoch); one is also saved at the end",
    "ckpt_minutes": "save a considered checkpoint only if this many minutes "
                    "have passed since the last one (0: every --ckpt-every "
                    "steps); a killed run loses at most one interval",
    "ckpt_keep": "how many of the most recent checkpoints to keep",
    "log_every": "every this many steps: update the progress bar, check "
                 "the loss, and write the loss, learning rate and images per "
                 "second to steps.jsonl (and TensorBoard)",
    "progress": "show a progress bar (on process 0 only)",
    "tensorboard": "also write the metrics as TensorBoard event files to "
                   "<workdir>/tensorboard (needs tensorboardX: pip install "
                   "'cutmix-jax[tensorboard]')",
    "compilation_cache": "a directory for JAX's persistent compilation "
                         "cache: a rerun (or a resumed run) loads the "
                         "compiled steps instead of compiling again "
                         "(default: off)",
    "distributed": "join a multi-process run with jax.distributed.initialize() "
                   "(--parallel jit only): --distributed always (JAX detects "
                   "TPU pods, SLURM and Open MPI), --no-distributed never "
                   "(default: when one of the three options below or its "
                   "environment variable is set, or under a multi-task srun "
                   "or mpirun)",
    "coordinator_address": "host:port of process 0 for jax.distributed "
                           "(default: $JAX_COORDINATOR_ADDRESS, else "
                           "auto-detected)",
    "num_processes": "number of processes of a multi-process run (default: "
                     "$JAX_NUM_PROCESSES, else auto-detected)",
    "process_id": "this process's index in [0, --num-processes) (default: "
                  "$JAX_PROCESS_ID, else auto-detected)",
}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
  """Shows defaults, except where the help already explains them."""

  def _get_help_string(self, action):
    if "default:" in (action.help or ""):
      return action.help
    return super()._get_help_string(action)


def _positive_or_none(text):
  return None if text.lower() == "none" else int(text)


def make_parser() -> argparse.ArgumentParser:
  """An argparse parser with one `--option` per `Config` field."""
  parser = argparse.ArgumentParser(
      prog="python -m train",
      description="Train a ResNet or a ViT with CutMix (cutmix_jax) on one "
                  "or more devices. With no options: digits, ResNet-20, "
                  "CutMix, about two minutes on 2 CPU cores.",
      formatter_class=_HelpFormatter,
  )
  choices = {"dataset": DATASETS, "model": tuple(models.MODELS), "aug": AUGS,
             "mode": MODES, "schedule": SCHEDULES, "parallel": PARALLEL,
             "dtype": DTYPES, "loader": LOADERS, "crop": CROPS,
             "targets": TARGETS, "optimizer": OPTIMIZERS}
  for field in dataclasses.fields(Config):
    flag = "--" + field.name.replace("_", "-")
    kwargs = dict(default=field.default, help=_HELP[field.name])
    if field.type in ("bool", "Optional[bool]"):
      kwargs["action"] = argparse.BooleanOptionalAction
    elif field.type == "Optional[int]":
      kwargs["type"] = _positive_or_none
    else:
      kwargs["type"] = {"int": int, "float": float,
                        "Optional[float]": float}.get(field.type, str)
      kwargs["choices"] = choices.get(field.name)
    parser.add_argument(flag, **kwargs)
  return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> Config:
  """Parses and validates the command line; exits with a usage error."""
  parser = make_parser()
  cfg = Config(**vars(parser.parse_args(argv)))
  try:
    cfg.validate()
  except ValueError as e:
    parser.error(str(e))
  return cfg
