"""The trainer with a ViT: DeiT's recipe, TransMix in the jitted step, and jit
== pmap on 8 simulated devices."""

import dataclasses
import json

import cutmix_jax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from train import config
from train import steps
from train import train

from test_train_steps import run_steps

NUM_CLASSES = 10
IMAGE_SHAPE = (8, 8, 3)
BATCH = 16
# A narrow vit_digits (2x2 patches, 16 tokens): what is tested is the step.
VIT = dict(model="vit_digits", width=16, warmup_epochs=0)


def _trainer(parallel="jit", **overrides):
  cfg = dataclasses.replace(config.Config(parallel=parallel, **VIT),
                            **overrides).resolved("fake", IMAGE_SHAPE[0])
  par = train.Parallel(parallel)
  mean = np.full(3, 100.0, np.float32)
  std = np.full(3, 50.0, np.float32)
  return cfg, par, train.build(cfg, par, NUM_CLASSES, IMAGE_SHAPE, mean, std,
                               10, 100)


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 256, (BATCH,) + IMAGE_SHAPE).astype(np.uint8)
  y = rng.integers(0, NUM_CLASSES, BATCH).astype(np.int32)
  return x, y


def test_vit_family_takes_deits_recipe():
  vit = config.Config(model="vit_tiny", batch_size=256).resolved("c", 32)
  assert (vit.optimizer, vit.lr, vit.weight_decay, vit.warmup_epochs,
          vit.label_smoothing, vit.prob) == ("adamw", 2.5e-4, 0.05, 5.0, 0.1,
                                             1.0)
  assert (vit.mixup_alpha, vit.alpha, vit.switch_prob) == (0.8, 1.0, 0.5)
  resnet = config.Config().resolved("c", 32)
  assert (resnet.optimizer, resnet.lr, resnet.weight_decay,
          resnet.warmup_epochs, resnet.label_smoothing, resnet.prob) == (
              "sgd", 0.1, 5e-4, 2.0, 0.0, 0.5)
  # Given options win over the family's.
  mine = config.Config(model="vit_tiny", optimizer="sgd", lr=0.3, prob=0.5)
  assert (mine.with_recipe().optimizer, mine.with_recipe().lr,
          mine.with_recipe().prob) == ("sgd", 0.3, 0.5)
  cli = config.parse_args(["--model", "vit_digits", "--aug", "transmix",
                           "--optimizer", "sgd", "--lr", "0.01"])
  assert (cli.optimizer, cli.lr, cli.weight_decay) == ("sgd", 0.01, None)
  with pytest.raises(ValueError, match="transmix .* needs --model vit_"):
    config.Config(aug="transmix").validate()


@pytest.mark.slow
def test_adamw_decays_kernels_only_and_decoupled():
  cfg, _, t = _trainer(lr=0.01, weight_decay=0.5)
  tx, _ = steps.make_optimizer(cfg, 10, 100)
  params = jax.tree.map(lambda p: p + 1.0, t.state["params"])  # no zeros
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = jax.jit(tx.update)(zeros, tx.init(params), params)
  flat = lambda tree: {
      "/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
      for path, v in jax.tree_util.tree_leaves_with_path(tree)}
  params, updates = flat(params), flat(updates)
  decayed = sorted(k for k, u in updates.items() if np.any(u != 0))
  kept = sorted(k for k, u in updates.items() if not np.any(u != 0))
  assert "patch_embed/kernel" in decayed and "blocks/0/attn/qkv/kernel" in decayed
  assert "head/kernel" in decayed
  assert {"cls_token", "pos_embed", "norm/scale", "head/bias",
          "blocks/0/norm1/bias", "blocks/3/fc1/bias"} <= set(kept)
  assert all(params[k].ndim > 1 for k in decayed)
  # Zero gradients: Adam's step is 0, so the update is the decoupled decay
  # alone, -lr * weight_decay * param.
  for k in decayed:
    np.testing.assert_allclose(updates[k], -0.01 * 0.5 * params[k],
                               rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("targets", ["kway", "dense"])
def test_transmix_labels_in_the_jitted_step(targets, fast_compile):
  cfg, par, t = _trainer(aug="transmix", mode="elem", prob=1.0,
                         targets=targets)
  # Sharper attention than at initialisation, so that where it falls moves
  # the labels well beyond rounding.
  params = t.state["params"]
  qkv = params["blocks"][3]["attn"]["qkv"]
  qkv["kernel"] = qkv["kernel"] * 20
  # And confident logits, so that the loss depends on the targets.
  params["head"]["kernel"] = params["head"]["kernel"] * 10
  state = dict(t.state, params=params)
  x, y = _batch()
  root_key = jax.random.key(3)
  # On a host copy: the step donates the state it is given.
  _, out = t.train_step(par.put_state(jax.device_get(state)),
                        par.put_batch(x), par.put_batch(y), root_key)

  @jax.jit
  def by_hand(state, images, labels):
    key = jax.random.fold_in(root_key, 0)
    xs, area, draw = t.augment_fn(key, images, labels, with_params=True,
                                  targets="dense")
    model = nnx.merge(t.graphdef, state["params"], state["batch_stats"])
    logits, attention = model(xs, return_attention=True)
    targets = cutmix_jax.transmix_labels(
        draw, labels, attention, patch_size=2, num_classes=NUM_CLASSES,
        label_smoothing=cfg.label_smoothing)
    loss = lambda t: optax.softmax_cross_entropy(logits, t).mean()
    return loss(targets), loss(area), draw.op, targets, area

  want, area_loss, op, targets, area = by_hand(state, x, y)
  assert {int(cutmix_jax.Op.CUTMIX), int(cutmix_jax.Op.MIXUP)} <= set(
      np.asarray(op).tolist())
  np.testing.assert_allclose(float(out["loss"]), float(want), rtol=1e-5)
  # The attention moved CutMix labels, and only theirs.
  cut = np.asarray(op) == int(cutmix_jax.Op.CUTMIX)
  moved = np.abs(np.asarray(targets) - np.asarray(area)).max(1)
  assert moved[cut].max() > 0.02 and moved[~cut].max() == 0
  # Ten times the tolerance above: the step used these targets, not those.
  assert abs(float(want) - float(area_loss)) > 1e-4 * float(want)


def _params_after(parallel, num_steps, **overrides):
  return run_steps(_trainer, _batch, parallel, num_steps, **overrides)


@pytest.mark.slow
def test_vit_jit_equals_pmap_without_random_augmentation(fast_compile):
  same = dict(aug="none", crop_pad=0, flip=False, lr=1e-3)
  before, jit_state, jit_losses = _params_after("jit", 3, **same)
  _, pmap_state, pmap_losses = _params_after("pmap", 3, **same)
  np.testing.assert_allclose(jit_losses, pmap_losses, rtol=1e-5)
  for name in ("params", "opt_state"):
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
        jit_state[name], pmap_state[name])
  moved = max(float(np.max(np.abs(a - b))) for a, b in zip(
      jax.tree.leaves(jit_state["params"]), jax.tree.leaves(before["params"])))
  assert moved > 1e-3


def test_runs_saved_before_optimizer_existed_resume(tmp_path):
  cfg = config.Config(workdir=str(tmp_path)).resolved("digits", 8)
  train._check_workdir_config(str(tmp_path), cfg)
  path = tmp_path / "config.json"
  saved = json.loads(path.read_text())
  del saved["optimizer"]  # as 0.2 wrote it
  path.write_text(json.dumps(saved))
  train._check_workdir_config(str(tmp_path), cfg)  # no error: it was SGD
  adamw = dataclasses.replace(cfg, optimizer="adamw")
  path.write_text(json.dumps(saved))
  with pytest.raises(train.TrainError, match="optimizer: 'sgd' -> 'adamw'"):
    train._check_workdir_config(str(tmp_path), adamw)
