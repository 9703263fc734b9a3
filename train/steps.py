"""On-device augmentation, the optimiser, and the train and eval steps.

The steps are pure functions of a pytree state
`{'params', 'batch_stats', 'opt_state', 'step'}` so that the same code runs
under `jax.jit` over a mesh and under `jax.pmap`, and checkpoints as is.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Union

import cutmix_jax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import lax

State = dict[str, Any]
Targets = Union[jax.Array, cutmix_jax.KWayLabels]


def random_crop_flip(
    key: jax.Array, images: jax.Array, pad: int, flip: bool
) -> jax.Array:
  """Random `pad`-pixel zero-padded crop and optional horizontal flip.

  Each output pixel is `image[i + dy, mirror(j) + dx]` (zero outside), i.e. a
  crop of the zero-padded image. It is written as two batched one-hot matrix
  products built from iotas, so there is no per-sample gather or slice and
  the batch axis stays a plain batch axis that shards without communication.

  Args:
    key: PRNG key.
    images: float `[batch, height, width, channels]`.
    pad: maximum shift in pixels (0: no crop).
    flip: whether to mirror half of the samples, chosen at random.

  Returns:
    Images of the same shape and dtype.
  """
  batch, height, width, _ = images.shape
  k_y, k_x, k_flip = jax.random.split(key, 3)
  dy = jax.random.randint(k_y, (batch, 1, 1), -pad, pad + 1)
  dx = jax.random.randint(k_x, (batch, 1, 1), -pad, pad + 1)
  mirror = (
      jax.random.bernoulli(k_flip, 0.5, (batch, 1, 1))
      if flip else jnp.zeros((batch, 1, 1), bool)
  )

  def selector(n, shift, mirrored):
    out = lax.broadcasted_iota(jnp.int32, (batch, n, n), 1)
    src = lax.broadcasted_iota(jnp.int32, (batch, n, n), 2)
    out = jnp.where(mirrored, n - 1 - out, out)
    return (src == out + shift).astype(images.dtype)

  rows = selector(height, dy, jnp.zeros_like(mirror))
  cols = selector(width, dx, mirror)
  # HIGHEST: one-hot products must copy pixels exactly, not in bf16/tf32.
  return jnp.einsum(
      "bik,bkwc,bjw->bijc", rows, images, cols,
      precision=lax.Precision.HIGHEST,
  )


def augment(
    key: jax.Array,
    images: jax.Array,
    labels: jax.Array,
    cfg,
    *,
    num_classes: int,
    mean: np.ndarray,
    std: np.ndarray,
    groups: int = 1,
    axis_name: Optional[str] = None,
    targets: Optional[str] = None,
    with_params: bool = False,
) -> tuple[jax.Array, ...]:
  """Normalise, crop and flip, then `cfg.aug` from `cutmix_jax`.

  Args:
    key: this step's key, `fold_in(root_key, step)`.
    images: `[batch, height, width, channels]` raw images (any numeric type).
    labels: int `[batch]` class ids.
    cfg: the resolved `Config`.
    num_classes: number of classes.
    mean: per-channel mean, subtracted.
    std: per-channel standard deviation, divided by.
    groups: under `jax.jit` over a sharded batch, the number of devices:
      pairs are then formed inside each device's block, so no image moves.
    axis_name: under `pmap`, the mapped axis, so each device draws its own
      crops and boxes from the same replicated key.
    targets: 'kway' or 'dense'; default `cfg.targets`.
    with_params: for `--aug transmix`, also return the draw, whose label
      weights the train step then sets from the model's attention.

  Returns:
    `(images, targets)`: float32 images, and `cutmix_jax.KWayLabels` or
    float32 soft targets `[batch, num_classes]` (for transmix the
    area-weighted ones of the switch); with `with_params`,
    `(images, targets, params)`.
  """
  targets = targets or cfg.targets
  k_crop, k_mix = jax.random.split(key)
  if axis_name is not None:
    k_crop = jax.random.fold_in(k_crop, lax.axis_index(axis_name))
  x = (images.astype(jnp.float32) - mean) / std
  if cfg.crop_pad or cfg.flip:  # else the loader crops and flips (Grain)
    # Cropping after normalisation pads with the mean colour (zero).
    x = random_crop_flip(k_crop, x, cfg.crop_pad, cfg.flip)
  common = dict(num_classes=num_classes, label_smoothing=cfg.label_smoothing,
                prob=cfg.prob, mode=cfg.mode, axis_name=axis_name,
                targets=targets)
  if cfg.aug == "cutmix":
    return cutmix_jax.cutmix(k_mix, x, labels, alpha=cfg.alpha, groups=groups,
                             **common)
  if cfg.aug == "mixup":
    return cutmix_jax.mixup(k_mix, x, labels, alpha=cfg.alpha, groups=groups,
                            **common)
  if cfg.aug == "mix":
    return cutmix_jax.mix(
        k_mix, x, labels, mixup_alpha=cfg.mixup_alpha, cutmix_alpha=cfg.alpha,
        switch_prob=cfg.switch_prob, groups=groups, **common)
  if cfg.aug == "transmix":
    # The switch's draw, as `mix` makes it from the same key.
    params = cutmix_jax.sample_mix(
        k_mix, x.shape[0], x.shape[1], x.shape[2],
        mixup_alpha=cfg.mixup_alpha, cutmix_alpha=cfg.alpha,
        switch_prob=cfg.switch_prob, prob=cfg.prob, mode=cfg.mode,
        groups=groups, axis_name=axis_name)
    x = cutmix_jax.apply_params(params, x)
    mix_labels = (cutmix_jax.mix_labels_kway if targets == "kway"
                  else cutmix_jax.mix_labels)
    y = mix_labels(params, labels, num_classes=num_classes,
                   label_smoothing=cfg.label_smoothing)
    return (x, y, params) if with_params else (x, y)
  if cfg.aug == "cutout":
    # Zero after normalisation fills with the dataset mean, as in the paper.
    x = cutmix_jax.cutout(k_mix, x, size=cfg.cutout_size, prob=cfg.prob,
                          mode=cfg.mode, axis_name=axis_name)
  if targets == "kway":
    return x, cutmix_jax.KWayLabels(labels[:, None], num_classes=num_classes,
                                    label_smoothing=cfg.label_smoothing)
  return x, cutmix_jax.one_hot(labels, num_classes,
                               label_smoothing=cfg.label_smoothing)


def mixed_loss(logits: jax.Array, targets: Targets) -> jax.Array:
  """Softmax cross-entropy per example, for either kind of `augment` target."""
  if isinstance(targets, cutmix_jax.KWayLabels):
    return cutmix_jax.softmax_cross_entropy_kway(logits, targets)
  return optax.softmax_cross_entropy(logits, targets)


# A ViT's parameters that are not decayed although not 1-D (timm's
# `no_weight_decay`).
_NO_DECAY = ("cls_token", "pos_embed")


def decay_mask(params):
  """True for conv and linear kernels; BatchNorm and LayerNorm scales and
  biases and linear biases (all 1-D), and a ViT's class token and position
  embeddings, are not decayed."""
  def decayed(path, p):
    names = {str(getattr(k, "key", k)) for k in path}
    return p.ndim > 1 and not names & set(_NO_DECAY)
  return jax.tree_util.tree_map_with_path(decayed, params)


def make_optimizer(
    cfg, steps_per_epoch: int, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """SGD or AdamW (`cfg.optimizer`) with masked weight decay and warmup.

  Options left at None take the model family's recipe
  (`Config.with_recipe`).

  Returns:
    The optimiser and its learning-rate schedule.
  """
  cfg = cfg.with_recipe()
  warmup = min(int(cfg.warmup_epochs * steps_per_epoch), total_steps - 1)
  if cfg.schedule == "cosine":
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, cfg.lr, warmup, total_steps, end_value=0.0)
  else:
    decay = optax.piecewise_constant_schedule(cfg.lr, {
        max(int(total_steps * f) - warmup, 1): 0.1 for f in (0.5, 0.75)})
    schedule = optax.join_schedules(
        [optax.linear_schedule(0.0, cfg.lr, warmup), decay], [warmup])
  parts = []
  if cfg.grad_clip:
    parts.append(optax.clip_by_global_norm(cfg.grad_clip))
  if cfg.optimizer == "adamw":
    # Decoupled decay, scaled by the schedule (PyTorch's AdamW, as DeiT).
    parts.append(optax.adamw(schedule, b1=0.9, b2=0.999, eps=1e-8,
                             weight_decay=cfg.weight_decay, mask=decay_mask))
  else:
    # Decay before the SGD update: PyTorch's coupled L2, which the ResNet
    # and CutMix recipes use.
    parts.append(optax.add_decayed_weights(cfg.weight_decay, mask=decay_mask))
    parts.append(optax.sgd(schedule, momentum=0.9, nesterov=True))
  return optax.chain(*parts), schedule


def schedule_warnings(cfg, steps_per_epoch: float, total_steps: int
                      ) -> list[str]:
  """What `make_optimizer`'s schedule does differently from what `cfg`
  asks for, on a run too short for its warm-up (empty if nothing).

  Args:
    cfg: the configuration (`warmup_epochs`, `schedule`, `epochs`).
    steps_per_epoch: optimiser updates per epoch.
    total_steps: optimiser updates of the whole run.
  """
  cfg = cfg.with_recipe()
  asked = int(cfg.warmup_epochs * steps_per_epoch)
  warmup = min(asked, total_steps - 1)
  flag = f"--warmup-epochs {cfg.warmup_epochs:g}"
  if cfg.schedule == "cosine":
    if asked >= total_steps:
      return [f"{flag} ({asked} steps) covers the whole run ({total_steps} "
              "steps): the learning rate only rises, reaching --lr at the "
              "last step, and never decays. Use a --warmup-epochs well below "
              f"--epochs {cfg.epochs}."]
    return []
  inside = [(f, int(total_steps * f)) for f in (0.5, 0.75)
            if int(total_steps * f) <= warmup]
  if len(inside) == 2:
    return [f"{flag} ({warmup} steps) covers both x0.1 milestones of "
            f"--schedule step (steps {inside[0][1]} and {inside[1][1]}): "
            "they merge into a single x0.1 decay right after the warm-up, "
            "so the learning rate ends 10 times higher than asked. Use a "
            "shorter warm-up or more --epochs."]
  if inside:
    return [f"{flag} ({warmup} steps) covers the 50% milestone of "
            f"--schedule step (step {inside[0][1]}): its x0.1 decay comes "
            f"at step {warmup + 1}, right after the warm-up, instead. Use a "
            "shorter warm-up or more --epochs."]
  return []


def init_state(model: nnx.Module, tx) -> tuple[nnx.GraphDef, State]:
  """Splits a model into its static graph and a pure-dict training state."""
  graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  params = nnx.to_pure_dict(params)
  state = dict(
      params=params,
      batch_stats=nnx.to_pure_dict(batch_stats),
      opt_state=tx.init(params),
      step=jnp.zeros((), jnp.int32),
  )
  return graphdef, state


def make_relabel(cfg, model: nnx.Module, num_classes: int
                 ) -> Optional[Callable]:
  """For `--aug transmix`, `(params, labels, attention) -> targets`: the
  labels of the draw reweighed by the ViT's attention; None otherwise."""
  if cfg.aug != "transmix":
    return None
  rule = (cutmix_jax.transmix_labels_kway if cfg.targets == "kway"
          else cutmix_jax.transmix_labels)
  return functools.partial(
      rule, patch_size=model.patch_size, num_classes=num_classes,
      label_smoothing=cfg.label_smoothing)


def make_train_step(
    graphdef, tx, augment_fn: Callable, axis_name: Optional[str] = None,
    relabel: Optional[Callable] = None,
) -> Callable:
  """The train step `(state, images, labels, root_key) -> (state, metrics)`.

  Args:
    graphdef: the model's static graph (from `init_state`).
    tx: the optimiser.
    augment_fn: `(key, images, labels) -> (images, targets)`, with targets
      as `mixed_loss` takes them.
    axis_name: under `pmap`, the axis to average gradients and the loss over
      (BatchNorm averages its statistics itself, via its own `axis_name`).
    relabel: TransMix's `make_relabel`: the targets then come from the draw
      (`augment_fn(..., with_params=True)`) and the attention of the same
      forward pass that gives the logits.

  Returns:
    The unjitted step function.
  """

  def train_step(state, images, labels, root_key):
    key = jax.random.fold_in(root_key, state["step"])
    if relabel is None:
      x, targets = augment_fn(key, images, labels)
    else:
      x, _, params = augment_fn(key, images, labels, with_params=True)

    def loss_fn(p):
      model = nnx.merge(graphdef, p, state["batch_stats"])
      if relabel is None:
        logits = model(x, train=True)
        loss = mixed_loss(logits, targets).mean()
      else:
        logits, attention = model(x, train=True, return_attention=True)
        loss = mixed_loss(logits, relabel(params, labels, attention)).mean()
      return loss, nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state["params"])
    if axis_name is not None:
      grads = lax.pmean(grads, axis_name)
      loss = lax.pmean(loss, axis_name)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    new_state = dict(
        params=optax.apply_updates(state["params"], updates),
        batch_stats=batch_stats,
        opt_state=opt_state,
        step=state["step"] + 1,
    )
    return new_state, {"loss": loss}

  return train_step


def with_ema(train_step: Callable, decay: float) -> Callable:
  """A train step that also updates `state['ema']`, an exponential moving
  average of the parameters and BatchNorm statistics: `ema <- decay * ema +
  (1 - decay) * new`, every step. The state must hold an initial 'ema'
  (`init_ema`)."""

  def step(state, *args):
    new_state, metrics = train_step(state, *args)
    new = {k: new_state[k] for k in ("params", "batch_stats")}
    new_state["ema"] = jax.tree.map(
        lambda e, p: decay * e + (1 - decay) * p, state["ema"], new)
    return new_state, metrics

  return step


def init_ema(state: State) -> State:
  """`state` with an 'ema' entry that starts at its weights."""
  return dict(state, ema=jax.tree.map(
      jnp.copy, {k: state[k] for k in ("params", "batch_stats")}))


def make_logits_fn(graphdef, mean, std) -> Callable:
  """`(state, images) -> logits` of the model in eval mode, on raw images."""

  def logits_fn(state, images):
    model = nnx.merge(graphdef, state["params"], state["batch_stats"])
    return model((images.astype(jnp.float32) - mean) / std, train=False)

  return logits_fn


def make_eval_step(
    graphdef, mean, std, axis_name: Optional[str] = None, top5: bool = False
) -> Callable:
  """The eval step `(state, images, labels, mask) -> sums`.

  Returns summed loss, correct count and sample count over the unmasked
  samples, so padded tail samples never count; with `top5`, also the count
  whose label is among the 5 largest logits ('correct5'). Only
  `state['params']` and `state['batch_stats']` are read.
  """
  logits_fn = make_logits_fn(graphdef, mean, std)

  def eval_step(state, images, labels, mask):
    logits = logits_fn(state, images)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    sums = {
        "loss": jnp.sum(jnp.where(mask, loss, 0.0)),
        "correct": jnp.sum(mask & (jnp.argmax(logits, -1) == labels)),
        "count": jnp.sum(mask),
    }
    if top5:
      _, best = lax.top_k(logits, 5)
      sums["correct5"] = jnp.sum(mask & jnp.any(best == labels[:, None], -1))
    if axis_name is not None:
      sums = lax.psum(sums, axis_name)
    return sums

  return eval_step
