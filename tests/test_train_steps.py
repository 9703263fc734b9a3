"""One-step smoke tests of the trainer's steps on 8 simulated CPU devices."""

import dataclasses
import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from train import config
from train import models
from train import steps
from train import train

NUM_CLASSES = 10
# 12x12: no parameter has a 12 in its shape, so any collective that carries
# image-sized data shows up as "12,12" in the HLO.
IMAGE_SHAPE = (12, 12, 3)
BATCH = 16


def _trainer(parallel="jit", **overrides):
  # No warmup: the warmup starts at a learning rate of 0.
  cfg = dataclasses.replace(
      config.Config(model="tiny", parallel=parallel, warmup_epochs=0),
      **overrides).resolved("fake", IMAGE_SHAPE[0])
  par = train.Parallel(parallel)
  mean = np.full(3, 100.0, np.float32)
  std = np.full(3, 50.0, np.float32)
  t = train.build(cfg, par, NUM_CLASSES, IMAGE_SHAPE, mean, std, 10, 100)
  return cfg, par, t


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 256, (BATCH,) + IMAGE_SHAPE).astype(np.uint8)
  y = rng.integers(0, NUM_CLASSES, BATCH).astype(np.int32)
  return x, y


def _one_step(parallel="jit", **overrides):
  _, par, t = _trainer(parallel, **overrides)
  assert par.n == 8
  x, y = _batch()
  before = [np.array(p) for p in jax.tree.leaves(t.state["params"])]
  state = par.put_state(t.state)
  state, out = t.train_step(state, par.put_batch(x), par.put_batch(y),
                            jax.random.key(0))
  state = jax.device_get(par.unreplicate(state))
  loss = float(par.unreplicate(out["loss"]))
  assert np.isfinite(loss)
  assert int(state["step"]) == 1
  after = jax.tree.leaves(state["params"])
  assert any(not np.array_equal(a, b) for a, b in zip(before, after))
  return loss


@pytest.mark.slow
@pytest.mark.parametrize("aug", config.AUGS)
def test_one_step_jit_every_aug(aug, fast_compile):
  # TransMix reads a ViT's attention.
  model = dict(model="vit_digits", width=8) if aug == "transmix" else {}
  _one_step("jit", aug=aug, prob=1.0, label_smoothing=0.1, grad_clip=1.0,
            **model)


@pytest.mark.slow
def test_one_step_pmap(fast_compile):
  # 'mix' runs both the CutMix and the MixUp code under the pmap axis.
  _one_step("pmap", aug="mix", prob=1.0, mode="elem", schedule="step")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet20", "resnet18"])
def test_models_take_a_step(name, fast_compile):
  # A CIFAR-style and an ImageNet-style net at a tiny width: what matters is
  # that each builds and trains.
  _one_step("jit", model=name, width=2, aug="cutmix")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet32", "resnet56", "resnet34",
                                  "resnet50"])
def test_deeper_models_trace_a_step(name, fast_compile):
  # These differ from the ones above in blocks per stage (and ResNet-50 in
  # its block, run below); tracing their full train step (shapes, sharding,
  # optimiser) without compiling it keeps the suite fast.
  _, _, t = _trainer("jit", model=name, width=2)
  x, y = _batch()
  state, out = jax.eval_shape(t.train_step, t.state, x, y, jax.random.key(0))
  assert out["loss"].shape == ()
  assert jax.tree.map(lambda a: a.shape, state["params"]) == jax.tree.map(
      np.shape, t.state["params"])


@pytest.mark.slow
def test_bottleneck_block_trains():
  model = models.ResNet(models.Bottleneck, (1, 1), 3, in_channels=3, width=2,
                        small_inputs=True, rngs=nnx.Rngs(0))
  graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  stats = nnx.to_pure_dict(stats)

  def loss(params, x):
    logits = nnx.merge(graphdef, params, stats)(x, train=True)
    return jnp.mean(logits**2)

  x = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype(np.float32)
  grads = jax.jit(jax.grad(loss))(nnx.to_pure_dict(params), x)
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
  # The last BatchNorm scale starts at zero, so its gradient must not be.
  assert np.abs(grads["blocks"][1]["bn3"]["scale"]).max() > 0


@pytest.mark.slow
def test_batchnorm_train_and_eval_modes_differ():
  model = models.create_model("tiny", 3, in_channels=1, image_size=8)
  x = np.random.default_rng(0).normal(3.0, 2.0, (4, 8, 8, 1)).astype(np.float32)
  train_out = model(x, train=True)
  # Train mode updated the running statistics...
  assert np.abs(model.stem_bn.mean[...]).max() > 0
  # ...and eval mode uses them instead of the batch's, so outputs differ.
  assert not np.allclose(train_out, model(x, train=False))


@pytest.mark.slow
def test_imagenet_models_pick_their_stem_by_image_size():
  assert models.create_model("resnet18", 2, in_channels=3, image_size=32,
                             width=2).small_inputs
  big = models.create_model("resnet18", 2, in_channels=3, image_size=96,
                            width=2)
  assert not big.small_inputs
  out = jax.eval_shape(lambda x: big(x, train=False),
                       jax.ShapeDtypeStruct((1, 96, 96, 3), jnp.float32))
  assert out.shape == (1, 2)


@pytest.mark.slow
def test_jit_step_moves_no_images_between_devices():
  cfg, par, t = _trainer("jit", aug="mix", mode="elem", prob=1.0)
  x, y = _batch()
  state = par.put_state(t.state)
  hlo = t.train_step.lower(state, par.put_batch(x), par.put_batch(y),
                           jax.random.key(0)).compile().as_text()
  for op in ("all-gather", "all-to-all", "collective-permute"):
    assert f" {op}(" not in hlo and f" {op}-start(" not in hlo, op
  all_reduces = [line for line in hlo.splitlines() if " all-reduce" in line]
  assert all_reduces  # the gradient (and BatchNorm statistics) mean
  per_device = BATCH // par.n
  for line in all_reduces:
    assert "12,12" not in line and f"[{per_device},12" not in line, line


@pytest.mark.slow
def test_pmap_devices_draw_different_boxes():
  _, _, t = _trainer("pmap", aug="cutmix", mode="batch", prob=1.0,
                     crop_pad=0, targets="dense")
  x = np.zeros((8, 2) + IMAGE_SHAPE, np.float32)
  x[:, 1] = 255.0  # each device: a black and a white image, swapped by CutMix
  y = np.tile(np.array([0, 1], np.int32), (8, 1))
  images, targets = jax.pmap(t.augment_fn, axis_name=train.PMAP_AXIS,
                             in_axes=(None, 0, 0))(jax.random.key(1), x, y)
  lams = np.asarray(targets)[:, 0, 0]
  assert len(np.unique(lams)) > 1, lams
  # Pairs stay on their device: the white pixels of each device's first
  # image are exactly the box taken from its own partner.
  white = (np.asarray(images)[:, 0] > 0).mean(axis=(1, 2, 3))
  np.testing.assert_allclose(white, 1 - lams, atol=1e-6)


def test_random_crop_flip_is_a_crop_of_the_padded_image():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(6, 5, 7, 2)).astype(np.float32)
  pad = 2
  out = np.asarray(steps.random_crop_flip(jax.random.key(3), x, pad, True))
  padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  for i in range(len(x)):
    candidates = [
        np.array_equal(out[i], src[dy:dy + 5, dx:dx + 7])
        for src in (padded[i], padded[i][:, ::-1])
        for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
    ]
    assert any(candidates), i
  identity = steps.random_crop_flip(jax.random.key(0), x, 0, False)
  np.testing.assert_array_equal(identity, x)


@pytest.mark.slow
def test_weight_decay_skips_batchnorm_and_biases():
  model = models.create_model("tiny", 3, in_channels=1, image_size=8)
  cfg = config.Config()
  tx, _ = steps.make_optimizer(cfg, 10, 100)
  _, state = steps.init_state(model, tx)
  mask = steps.decay_mask(state["params"])
  flat = {"/".join(str(getattr(k, "key", k)) for k in path): v
          for path, v in jax.tree_util.tree_leaves_with_path(mask)}
  assert flat["stem_conv/kernel"] and flat["head/kernel"]
  assert not flat["head/bias"]
  assert not flat["stem_bn/scale"] and not flat["stem_bn/bias"]
  assert not any(v for k, v in flat.items() if re.search(r"bn\d?/", k))


def test_preact_resnet18_has_the_papers_parameter_count():
  # Shapes only: initialising 11M parameters eagerly costs tens of seconds.
  model = nnx.eval_shape(lambda: models.create_model(
      "preact_resnet18", 10, in_channels=3, image_size=32))
  count = sum(math.prod(p.shape)
              for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
  # The CIFAR PreActResNet-18 of the MixUp/CutMix code has 11,171,146
  # parameters; He et al.'s final BN before the pool adds 2 x 512.
  assert count == 11_171_146 + 2 * 512
  assert model.stem_bn is None and model.final_bn is not None
  assert type(model.blocks[0]) is models.PreActBlock
  # Pre-activation: the identity path of a block is the raw input.
  block = models.PreActBlock(64, 64, 1, axis_name=None, dtype=jnp.float32,
                             rngs=nnx.Rngs(0))
  x = np.random.default_rng(0).normal(size=(2, 32, 32, 64)).astype(np.float32)
  block.conv2.kernel[...] = jnp.zeros_like(block.conv2.kernel[...])
  np.testing.assert_array_equal(block(x, train=False), x)


@pytest.mark.slow
def test_bfloat16_computes_in_bf16_and_keeps_float32_state(fast_compile):
  _, par, t = _trainer("jit", dtype="bfloat16", aug="cutmix", prob=1.0)
  model = nnx.merge(t.graphdef, t.state["params"], t.state["batch_stats"])
  x = jnp.zeros((2,) + IMAGE_SHAPE, jnp.float32)
  jaxpr = str(jax.make_jaxpr(lambda x: model(x, train=False))(x))
  conv_outputs = re.findall(r"(\w+)\[[\d,]+\] = conv_general_dilated", jaxpr)
  assert conv_outputs and set(conv_outputs) == {"bf16"}, conv_outputs
  assert re.search(r"f32\[2,10\] = convert_element_type", jaxpr)  # logits
  x, y = _batch()
  state, out = t.train_step(par.put_state(t.state), par.put_batch(x),
                            par.put_batch(y), jax.random.key(0))
  assert np.isfinite(float(out["loss"]))
  for part in ("params", "batch_stats", "opt_state"):
    dtypes = {a.dtype for a in jax.tree.leaves(state[part])
              if jnp.issubdtype(a.dtype, jnp.floating)}
    assert dtypes == {jnp.dtype(jnp.float32)}, (part, dtypes)


def run_steps(trainer, batch, parallel, num_steps, **overrides):
  """`(state before, state after, losses)` of `num_steps` train steps of
  `trainer(parallel, **overrides)` on `batch(seed=step)`."""
  _, par, t = trainer(parallel, **overrides)
  before = jax.device_get(t.state)  # the step donates what it is given
  state = par.put_state(t.state)
  losses = []
  for i in range(num_steps):
    x, y = batch(seed=i)
    state, out = t.train_step(state, par.put_batch(x), par.put_batch(y),
                              jax.random.key(0))
    losses.append(float(par.unreplicate(out["loss"])))
  return before, jax.device_get(par.unreplicate(state)), losses


def _params_after(parallel, num_steps, **overrides):
  return run_steps(_trainer, _batch, parallel, num_steps, **overrides)[1:]


@pytest.mark.slow
def test_jit_equals_pmap_without_random_augmentation(fast_compile):
  # No draws: the two paths must compute the same global-batch step, with
  # BatchNorm statistics and gradients over all 8 devices.
  same = dict(aug="none", crop_pad=0, flip=False)
  jit_state, jit_losses = _params_after("jit", 3, **same)
  pmap_state, pmap_losses = _params_after("pmap", 3, **same)
  np.testing.assert_allclose(jit_losses, pmap_losses, rtol=1e-5)
  for name in ("params", "batch_stats", "opt_state"):
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
        jit_state[name], pmap_state[name])
  # The steps moved the parameters far more than the tolerance.
  before = train.build(*_trainer_args()).state["params"]
  moved = max(float(np.max(np.abs(a - b))) for a, b in zip(
      jax.tree.leaves(jit_state["params"]), jax.tree.leaves(before)))
  assert moved > 1e-3


def _trainer_args():
  cfg = dataclasses.replace(
      config.Config(model="tiny", warmup_epochs=0, aug="none", crop_pad=0,
                    flip=False)).resolved("fake", IMAGE_SHAPE[0])
  mean = np.full(3, 100.0, np.float32)
  std = np.full(3, 50.0, np.float32)
  return cfg, train.Parallel("jit"), NUM_CLASSES, IMAGE_SHAPE, mean, std, 10, 100


@pytest.mark.parametrize("warmup_epochs", [0.0, 2.0])
def test_learning_rate_schedule_boundaries(warmup_epochs):
  steps_per_epoch, total = 10, 100
  warmup = int(warmup_epochs * steps_per_epoch)
  cosine = config.Config(lr=0.4, warmup_epochs=warmup_epochs)
  _, schedule = steps.make_optimizer(cosine, steps_per_epoch, total)
  lr = lambda s: float(schedule(s))
  assert lr(0) == pytest.approx(0.0 if warmup else 0.4)
  if warmup:
    assert lr(warmup // 2) == pytest.approx(0.2)
  assert lr(warmup) == pytest.approx(0.4)
  assert lr(warmup + (total - warmup) // 2) == pytest.approx(0.2)
  assert lr(total) == pytest.approx(0.0, abs=1e-9)
  step = dataclasses.replace(cosine, schedule="step")
  _, schedule = steps.make_optimizer(step, steps_per_epoch, total)
  assert lr(warmup) == pytest.approx(0.4)
  # x0.1 at 50% and 75% of training, counted from step 0.
  assert lr(49) == pytest.approx(0.4) and lr(50) == pytest.approx(0.04)
  assert lr(74) == pytest.approx(0.04) and lr(75) == pytest.approx(0.004)
  assert lr(total) == pytest.approx(0.004)


@pytest.mark.slow
def test_weight_decay_mask_reaches_the_optimizer():
  """With zero gradients only the decay moves parameters: kernels shrink,
  BatchNorm scales and biases and the linear bias stay."""
  model = models.create_model("tiny", 3, in_channels=1, image_size=8)
  cfg = config.Config(warmup_epochs=0, lr=0.1, weight_decay=0.5)
  tx, _ = steps.make_optimizer(cfg, 10, 100)
  _, state = steps.init_state(model, tx)
  params = jax.tree.map(lambda p: p + 1.0, state["params"])  # no zeros
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  flat = lambda tree: {
      "/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
      for path, v in jax.tree_util.tree_leaves_with_path(tree)}
  params, updates = flat(params), flat(updates)
  decayed = [k for k, u in updates.items() if np.any(u != 0)]
  kept = [k for k, u in updates.items() if not np.any(u != 0)]
  assert "stem_conv/kernel" in decayed and "head/kernel" in decayed
  assert "head/bias" in kept and "stem_bn/scale" in kept
  assert all(params[k].ndim > 1 for k in decayed)
  assert all(params[k].ndim == 1 for k in kept)
  # SGD with Nesterov momentum 0.9 on the decay term alone: the first update
  # is -lr * (1 + 0.9) * weight_decay * param.
  k = "head/kernel"
  np.testing.assert_allclose(updates[k], -0.1 * 1.9 * 0.5 * params[k],
                             rtol=1e-6)


def _dot_products(cfg):
  fn = functools.partial(steps.augment, cfg=cfg, num_classes=NUM_CLASSES,
                         mean=np.zeros(3, np.float32),
                         std=np.ones(3, np.float32))
  jaxpr = jax.make_jaxpr(fn)(jax.random.key(0),
                             jnp.zeros((4,) + IMAGE_SHAPE, jnp.uint8),
                             jnp.zeros(4, jnp.int32))
  return str(jaxpr).count("dot_general")


def test_no_crop_einsum_when_the_loader_crops_and_flips():
  # Grain's resized recipe sets pad 0 and no flip: the one-hot crop products
  # would copy every image unchanged.
  base = config.Config(aug="none", crop_pad=0, flip=False).resolved("fake", 12)
  assert _dot_products(base) == 0
  assert _dot_products(dataclasses.replace(base, crop_pad=4)) == 2
  assert _dot_products(dataclasses.replace(base, flip=True)) == 2


def test_short_runs_warn_about_the_schedule_they_get():
  lr = lambda schedule, s: float(schedule(s))
  # Cosine, 1 epoch of 10 steps with 2 warm-up epochs: it never decays.
  cfg = config.Config(lr=0.4, epochs=1, warmup_epochs=2)
  (warning,) = steps.schedule_warnings(cfg, 10, 10)
  assert "covers the whole run (10 steps)" in warning
  assert "never decays" in warning
  _, schedule = steps.make_optimizer(cfg, 10, 10)
  assert all(lr(schedule, s) < lr(schedule, s + 1) for s in range(9))
  # Step schedule, 40 steps: milestones at 20 and 30.
  step = dataclasses.replace(cfg, schedule="step", epochs=4)
  merged = dataclasses.replace(step, warmup_epochs=3)  # warm-up 30 steps
  (warning,) = steps.schedule_warnings(merged, 10, 40)
  assert "merge into a single x0.1 decay" in warning
  _, schedule = steps.make_optimizer(merged, 10, 40)
  assert lr(schedule, 40) == pytest.approx(0.04)  # not 0.004
  late = dataclasses.replace(step, warmup_epochs=2.5)  # 25 steps
  (warning,) = steps.schedule_warnings(late, 10, 40)
  assert "(step 20): its x0.1 decay comes at step 26" in warning
  _, schedule = steps.make_optimizer(late, 10, 40)
  assert lr(schedule, 25) == pytest.approx(0.4)
  assert lr(schedule, 26) == pytest.approx(0.04)
  for fine in (cfg, step):
    assert steps.schedule_warnings(dataclasses.replace(
        fine, warmup_epochs=1), 10, 40) == []


def test_ema_is_the_moving_average_of_the_new_weights():
  def train_step(state, x):
    new = dict(state, params={"w": state["params"]["w"] + x},
               batch_stats={"m": state["batch_stats"]["m"] - x})
    return new, {}

  state = steps.init_ema(dict(params={"w": jnp.ones(3)},
                              batch_stats={"m": jnp.zeros(2)}))
  step = steps.with_ema(train_step, 0.75)
  state, _ = step(state, 4.0)
  np.testing.assert_array_equal(state["params"]["w"], 5.0)
  np.testing.assert_array_equal(state["ema"]["params"]["w"],
                                0.75 * 1 + 0.25 * 5)
  state, _ = step(state, 4.0)
  np.testing.assert_array_equal(state["ema"]["params"]["w"],
                                0.75 * 2 + 0.25 * 9)
  np.testing.assert_array_equal(state["ema"]["batch_stats"]["m"],
                                0.75 * -1 + 0.25 * -8)


@pytest.mark.slow
def test_top5_accuracy_is_counted_from_100_classes(fast_compile):
  cfg = config.Config(model="tiny", warmup_epochs=0).resolved("fake", 12)
  par = train.Parallel("jit")
  mean, std = np.full(3, 100.0, np.float32), np.full(3, 50.0, np.float32)
  t = train.build(cfg, par, 100, IMAGE_SHAPE, mean, std, 10, 100)
  x, _ = _batch()
  model = nnx.merge(t.graphdef, t.state["params"], t.state["batch_stats"])
  logits = np.asarray(model((x - mean) / std, train=False))
  ranks = np.argsort(-logits, axis=-1)
  # Labels at ranks 0..7 of each sample's logits: 5 of every 8 are top-5.
  labels = ranks[np.arange(BATCH), np.arange(BATCH) % 8].astype(np.int32)
  mask = np.ones(BATCH, bool)
  out = jax.device_get(t.eval_step(par.put_state(t.state), par.put_batch(x),
                                   par.put_batch(labels), par.put_batch(mask)))
  assert int(out["correct5"]) == 10 and int(out["correct"]) == 2


@pytest.mark.slow
def test_grad_accum_applies_the_mean_gradient_every_k_steps(fast_compile):
  # No augmentation, and two identical micro-batches: BatchNorm sees the
  # same statistics, so two accumulated steps make the update of one step
  # on that batch.
  plain = dict(aug="none", crop_pad=0, flip=False)
  _, par, t1 = _trainer(**plain)
  _, _, t2 = _trainer(grad_accum=2, **plain)
  x, y = _batch()
  key = jax.random.key(0)
  put = lambda: (par.put_batch(x), par.put_batch(y))
  one, _ = t1.train_step(par.put_state(t1.state), *put(), key)
  initial = jax.device_get(t2.state["params"])  # the step donates the state
  state = par.put_state(t2.state)
  state, _ = t2.train_step(state, *put(), key)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(
      state["params"]), initial)  # accumulated, not applied
  state, _ = t2.train_step(state, *put(), key)
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5,
                                 atol=1e-7),
               jax.device_get(state["params"]), jax.device_get(one["params"]))
  # The schedule counts updates: steps 1 and 2 used the first one's rate.
  assert t2.lr_at(1) == t2.lr_at(2) == float(t2.schedule(0))
  assert t2.lr_at(3) == float(t2.schedule(1)) != t2.lr_at(2)
