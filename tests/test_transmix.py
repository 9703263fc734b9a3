"""TransMix's label rule and the token masks it weighs the attention with.

The parity tests transcribe the official `transmix_label`
(github.com/Beckschen/TransMix, `transmix.py`) into NumPy, with PyTorch's
legacy `nn.Upsample(mode='nearest')` index rule, and compare on fixed inputs.
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import cutmix_jax as cj
from cutmix_jax import Op

H = W = 12
PATCH = 3
GRID = (H // PATCH) * (W // PATCH)  # 16 tokens
K = 5


# ---------------------------------------------------------------------------
# The official rule, transcribed


def _torch_nearest_index(out_size, in_size):
  """`nn.Upsample(size=out_size)` (mode 'nearest'): source index of each
  output index, `min(floor(o * float32(in / out)), in - 1)` (ATen's
  `nearest_idx`)."""
  scale = np.float32(in_size) / np.float32(out_size)
  return np.minimum(np.floor(np.arange(out_size) * scale).astype(np.int64),
                    in_size - 1)


def official_transmix_label(y1, y2, box, attn, input_hw):
  """`Mixup_transmix.transmix_label` in NumPy, float32 as on the GPU.

  `box` is the official `(yl, yh, xl, xh)`; `attn` is `[n, hw]`, already
  averaged over heads; y1 and y2 are the smoothed one-hot labels of the
  images and of their flipped partners.
  """
  height, width = input_hw
  lam0 = (box[1] - box[0]) * (box[3] - box[2]) / (height * width)
  mask = np.zeros((height, width), np.float32)
  mask[box[0]:box[1], box[2]:box[3]] = 1
  side = int(math.sqrt(attn.shape[1]))
  rows = _torch_nearest_index(side, height)
  cols = _torch_nearest_index(side, width)
  mask = mask[rows][:, cols].astype(np.int32)  # nn.Upsample(...).int()
  mask = np.tile(mask.reshape(1, -1), (len(attn), 1))
  w1 = np.sum((1 - mask) * attn, axis=1, dtype=np.float32)
  w2 = np.sum(mask * attn, axis=1, dtype=np.float32)
  lam1 = w2 / (w1 + w2)
  lam = (lam0 + lam1) / 2  # a Python float plus float32 stays float32
  return y1 * (1.0 - lam)[:, None] + y2 * lam[:, None]


def _smoothed(labels, smoothing):
  off = smoothing / K
  return np.where(np.eye(K, dtype=bool)[labels], 1 - smoothing + off,
                  off).astype(np.float32)


def _cls_attention(seed, batch, heads=3, tokens=GRID):
  """Softmax rows of the class token over [CLS] + patches, per head, with
  peaked logits so that where the box falls matters."""
  logits = 3 * np.random.default_rng(seed).normal(
      size=(batch, heads, tokens + 1))
  full = np.exp(logits - logits.max(-1, keepdims=True))
  full /= full.sum(-1, keepdims=True)
  return full.astype(np.float32)


def _box_draw(boxes, partner, ops, height=H, width=W, possible=None):
  boxes = jnp.asarray(boxes, jnp.int32)
  lam = cj.lam_from_box(boxes, height, width)
  return cj.MixParams(
      lam=lam, box=boxes, partner=jnp.asarray(partner, jnp.int32),
      op=jnp.asarray(ops, jnp.int32), height=height, width=width,
      pairing="permute",  # partner_rows reads `partner` as given
      ops=possible or tuple(sorted({int(o) for o in ops} - {0})))


# (yl, yh, xl, xh) in the official order. Non-aligned boxes whose edges cut
# patches at every offset, a box inside one patch that holds a top-left pixel
# and one that holds none, an aligned box, the full image and an empty box.
OFFICIAL_BOXES = [(1, 8, 2, 11), (4, 12, 0, 5), (3, 4, 3, 4), (4, 6, 4, 6),
                  (3, 9, 6, 12), (0, 12, 0, 12), (5, 5, 2, 7), (2, 10, 1, 3)]


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_batch_mode_matches_the_official_rule(smoothing):
  batch = 6
  labels = np.array([0, 3, 1, 4, 2, 3])
  y1 = _smoothed(labels, smoothing)
  y2 = y1[::-1]
  rule = jax.jit(lambda p, a: cj.transmix_labels(
      p, labels, a, patch_size=PATCH, num_classes=K,
      label_smoothing=smoothing))
  for i, (yl, yh, xl, xh) in enumerate(OFFICIAL_BOXES):
    full = _cls_attention(i, batch)
    attn = full[:, :, 1:].mean(1)
    want = official_transmix_label(y1, y2, (yl, yh, xl, xh), attn, (H, W))
    params = _box_draw([[yl, xl, yh, xh]] * batch, np.arange(batch)[::-1],
                       [Op.CUTMIX] * batch)
    # Heads averaged by the rule, and averaged beforehand, as the official
    # model returns them.
    for given in (full[:, :, 1:], attn):
      got = rule(params, given)
      np.testing.assert_allclose(got, want, rtol=0, atol=2e-7)


def test_each_sample_matches_the_official_rule_for_its_own_box():
  # mode='elem': every sample its box and partner; the official rule applied
  # to each sample alone, with that sample's box and partner label.
  batch = len(OFFICIAL_BOXES)
  labels = np.arange(batch) % K
  partner = np.roll(np.arange(batch), 3)
  y = _smoothed(labels, 0.1)
  attn = _cls_attention(7, batch)[:, :, 1:].mean(1)
  want = np.concatenate([
      official_transmix_label(y[i:i + 1], y[partner[i]][None], box,
                              attn[i:i + 1], (H, W))
      for i, box in enumerate(OFFICIAL_BOXES)])
  params = _box_draw([[yl, xl, yh, xh] for yl, yh, xl, xh in OFFICIAL_BOXES],
                     partner, [Op.CUTMIX] * batch)
  got = cj.transmix_labels(params, labels, attn, patch_size=PATCH,
                           num_classes=K, label_smoothing=0.1)
  np.testing.assert_allclose(got, want, rtol=0, atol=2e-7)


# ---------------------------------------------------------------------------
# Token masks


def _top_left(pixel_masks, ph, pw):
  return np.asarray(pixel_masks)[:, ::ph, ::pw].reshape(len(pixel_masks), -1)


@pytest.mark.parametrize("patch", [(3, 3), (2, 4), (1, 1), (12, 6)])
def test_box_token_mask_reads_each_patchs_top_left_pixel(patch):
  ph, pw = patch
  rng = np.random.default_rng(ph * 10 + pw)
  tops, lefts = rng.integers(0, H, (2, 20))
  bottoms = tops + rng.integers(0, H + 1 - tops)
  rights = lefts + rng.integers(0, W + 1 - lefts)
  boxes = np.stack([tops, lefts, bottoms, rights], 1)
  ops = [Op.CUTMIX, Op.RESIZEMIX, Op.CUTOUT, Op.NONE] * 5
  params = _box_draw(boxes, np.arange(20)[::-1], ops)
  mask = jax.jit(lambda p: cj.token_mask(p, patch_size=patch))(params)
  assert mask.dtype == jnp.bool_ and mask.shape == (20, (H // ph) * (W // pw))
  # Cutout's fill replaces its box too; unmixed samples keep every token.
  pasted = np.isin(ops, [Op.CUTMIX, Op.RESIZEMIX, Op.CUTOUT])[:, None, None]
  want = _top_left(cj.box_mask(boxes, H, W) & pasted, ph, pw)
  np.testing.assert_array_equal(mask, want)


def test_token_mask_is_float_where_mixup_may_occur():
  params = cj.sample_mix(jax.random.key(3), 8, H, W, mode="elem")
  mask = cj.token_mask(params, patch_size=PATCH)
  assert mask.dtype == jnp.float32
  op = np.asarray(params.op)
  assert {Op.MIXUP, Op.CUTMIX} <= set(op.tolist())
  mixup = op == Op.MIXUP
  np.testing.assert_array_equal(
      mask[mixup], np.broadcast_to(1 - params.lam[mixup][:, None],
                                   (mixup.sum(), GRID)))
  cut = _top_left(cj.box_mask(params.box, H, W), PATCH, PATCH)
  np.testing.assert_array_equal(mask[~mixup], cut[~mixup])


@functools.lru_cache(maxsize=None)
def _mask_draws():
  """A hard multi-box and a soft FMix draw, jitted: eager sampling of masks
  dispatches many small ops."""
  multibox = jax.jit(lambda k: cj.sample_multibox(k, 4, H, W, n_boxes=2,
                                                  mode="elem", prob=0.7))
  fmix = jax.jit(lambda k: cj.sample_fmix(k, 4, H, W, mode="elem",
                                          max_soft=0.3))
  return multibox(jax.random.key(0)), fmix(jax.random.key(1))


def test_mask_draws_token_masks_and_soft_weights():
  hard, soft = _mask_draws()
  mask = cj.token_mask(hard, patch_size=(3, 2))
  assert mask.dtype == jnp.bool_
  np.testing.assert_array_equal(mask, _top_left(hard.mask, 3, 2))
  mask = cj.token_mask(soft, patch_size=PATCH)
  assert mask.dtype == jnp.float32
  np.testing.assert_array_equal(mask, _top_left(soft.mask, PATCH, PATCH))
  assert 0 < np.mean((mask > 0) & (mask < 1))  # soft weights are kept


def test_token_mask_rejects_what_has_no_grid():
  box = cj.sample_cutmix(jax.random.key(0), 2, H, W)
  with pytest.raises(ValueError, match=r"image size \(12, 12\) is not a "
                     r"multiple of patch_size \(5, 5\)"):
    cj.token_mask(box, patch_size=5)
  with pytest.raises(ValueError, match="patch_size must be"):
    cj.token_mask(box, patch_size=(0, 3))
  with pytest.raises(ValueError, match="height=None"):
    cj.token_mask(cj.sample_mixup(jax.random.key(0), 2), patch_size=2)
  cuboid = cj.sample_cutmix_cuboid(jax.random.key(0), 2, 4, H, W)
  with pytest.raises(TypeError, match="CuboidParams"):
    cj.token_mask(cuboid, patch_size=2)


# ---------------------------------------------------------------------------
# The rule for every op


def _own_weight(mask, attn, lam):
  """The rule in float64: own = 1 - (area + attention share) / 2."""
  mask, attn = np.asarray(mask, np.float64), np.asarray(attn, np.float64)
  share = (mask * attn).sum(1) / attn.sum(1)
  return 1 - ((1 - np.asarray(lam, np.float64)) + share) / 2


def test_every_box_op():
  # One draw holding every op: only CutMix and ResizeMix labels move.
  ops = [Op.CUTMIX, Op.RESIZEMIX, Op.MIXUP, Op.CUTOUT, Op.NONE, Op.CUTMIX]
  boxes = [[1, 2, 8, 11], [3, 3, 9, 9], [0, 0, 0, 0], [0, 0, 6, 6],
           [0, 0, 0, 0], [4, 0, 12, 5]]
  params = _box_draw(boxes, [5, 4, 3, 2, 1, 0], ops)
  params = dataclasses.replace(params, lam=params.lam.at[2].set(0.3))  # MixUp
  attn = _cls_attention(1, 6)[:, :, 1:].mean(1)
  lam = np.asarray(jax.jit(lambda p, a: cj.transmix_lam(
      p, a, patch_size=PATCH))(params, attn))
  token = _top_left(cj.box_mask(jnp.asarray(boxes), H, W), PATCH, PATCH)
  want = _own_weight(token, attn, params.lam)
  np.testing.assert_allclose(lam[[0, 1, 5]], want[[0, 1, 5]], rtol=0,
                             atol=2e-7)
  # MixUp keeps its blend weight exactly; Cutout and unmixed samples 1.
  np.testing.assert_array_equal(lam[2:5], np.float32([0.3, 1.0, 1.0]))
  targets = cj.transmix_labels(params, np.arange(6) % K, attn,
                               patch_size=PATCH, num_classes=K)
  np.testing.assert_array_equal(targets[3], np.eye(K)[3])  # Cutout: own
  np.testing.assert_array_equal(
      targets[2], cj.mix_labels(params, np.arange(6) % K, num_classes=K)[2])


def test_mask_draws_weigh_the_attention_by_their_token_masks():
  attn = _cls_attention(2, 4, tokens=24)[:, :, 1:]
  for params in _mask_draws():
    lam = cj.transmix_lam(params, attn, patch_size=(3, 2))
    mixed = np.asarray(params.op) == Op.CUTMIX
    assert mixed.any()
    want = _own_weight(_top_left(params.mask, 3, 2), attn.mean(1), params.lam)
    np.testing.assert_allclose(lam[mixed], want[mixed], rtol=0, atol=2e-7)
    np.testing.assert_array_equal(lam[~mixed], 1.0)


def test_elem_mode_draws_and_their_images_under_jit():
  # A real per-sample draw: the rule reads the pasted tokens of each sample's
  # own box (the images carry the partner's id in them).
  @jax.jit
  def run(key, attn):
    params = cj.sample_cutmix(key, 8, H, W, mode="elem", prob=0.8)
    ids = jnp.broadcast_to(jnp.arange(8.0)[:, None, None, None], (8, H, W, 1))
    images = cj.apply_params(params, ids)
    return params, images, cj.transmix_lam(params, attn, patch_size=PATCH)

  attn = _cls_attention(3, 8)[:, 1, 1:]
  params, images, lam = run(jax.random.key(5), attn)
  from_partner = images[..., 0] != np.arange(8)[:, None, None]
  mixed = np.asarray(params.op) == Op.CUTMIX
  want = _own_weight(_top_left(from_partner, PATCH, PATCH), attn, params.lam)
  np.testing.assert_allclose(lam[mixed], want[mixed], rtol=0, atol=2e-7)
  np.testing.assert_array_equal(lam[~mixed], 1.0)
  assert mixed.any() and not mixed.all()


def test_mixup_draws_without_an_image_size_keep_their_weights():
  params = cj.sample_mixup(jax.random.key(0), 4, mode="elem")
  lam = cj.transmix_lam(params, jnp.ones((4, 7)) / 8, patch_size=4)
  np.testing.assert_array_equal(lam, params.lam)


def test_kway_labels_are_the_dense_labels():
  params = cj.sample_mix(jax.random.key(4), 8, H, W, mode="elem")
  labels = jnp.arange(8) % K
  attn = jnp.asarray(_cls_attention(5, 8)[:, :, 1:])
  rule = dict(patch_size=PATCH, num_classes=K, label_smoothing=0.1)
  # All under one jit: to_dense equals mix_labels' arithmetic when both are
  # compiled alike.
  kway, from_kway, dense, lam = jax.jit(lambda p, y, a: (
      cj.transmix_labels_kway(p, y, a, **rule),
      cj.transmix_labels_kway(p, y, a, **rule).to_dense(),
      cj.transmix_labels(p, y, a, **rule),
      cj.transmix_lam(p, a, patch_size=PATCH)))(params, labels, attn)
  np.testing.assert_array_equal(from_kway, dense)
  np.testing.assert_array_equal(kway.classes[:, 0], labels)
  np.testing.assert_array_equal(kway.classes[:, 1], labels[::-1])
  np.testing.assert_array_equal(kway.weights[:, 0], lam)
  assert not np.array_equal(kway.weights[:, 0], params.lam)


def test_attention_gets_no_gradient():
  params = cj.sample_cutmix(jax.random.key(0), 4, H, W, mode="elem")
  attn = jnp.asarray(_cls_attention(0, 4)[:, :, 1:])

  def loss(a):
    t = cj.transmix_labels(params, jnp.arange(4), a, patch_size=PATCH,
                           num_classes=K)
    return jnp.sum(t * jnp.arange(K, dtype=jnp.float32))

  grad = jax.grad(loss)(attn)
  np.testing.assert_array_equal(grad, np.zeros_like(attn))


def test_shard_map_equals_one_device():
  # Invariant draws are the same on any number of devices, so the rule run
  # inside shard_map on 4 devices must give the one-device targets.
  labels = jnp.arange(8) % K
  attn = jnp.asarray(_cls_attention(4, 8)[:, 0, 1:])

  def run(key, y, a, axis_name=None):
    params = cj.sample_cutmix(key, y.shape[0], H, W, mode="elem",
                              axis_name=axis_name, invariant=True)
    return cj.transmix_labels(params, y, a, patch_size=PATCH, num_classes=K)

  want = jax.jit(run)(jax.random.key(2), labels, attn)
  mesh = jax.make_mesh((4,), ("d",), devices=jax.devices()[:4])
  rows = NamedSharding(mesh, P("d"))
  got = jax.jit(jax.shard_map(
      lambda k, y, a: run(k, y, a, "d"), mesh=mesh,
      in_specs=(P(), P("d"), P("d")), out_specs=P("d")))(
          jax.random.key(2), jax.device_put(labels, rows),
          jax.device_put(attn, rows))
  np.testing.assert_array_equal(got, want)
  assert not np.array_equal(want, jax.nn.one_hot(labels, K))


def test_bad_inputs_fail_at_trace_time():
  params = cj.sample_cutmix(jax.random.key(0), 2, H, W)
  rule = lambda p, a, **kw: jax.jit(
      lambda p, a: cj.transmix_lam(p, a, patch_size=PATCH, **kw)).lower(p, a)
  with pytest.raises(ValueError, match=r"attention has 17 tokens but the "
                     r"draw's 12x12 images in patches of 3x3 have 4x4 = 16\. "
                     r"Drop the class token"):
    rule(params, jnp.ones((2, 17)))
  with pytest.raises(ValueError, match="has 9 tokens"):
    rule(params, jnp.ones((2, 3, 9)))
  with pytest.raises(ValueError, match=r"with batch 2 .* shape \(3, 16\)"):
    rule(params, jnp.ones((3, 16)))
  with pytest.raises(TypeError, match="attention must be float"):
    rule(params, jnp.ones((2, 16), jnp.int32))
  with pytest.raises(TypeError, match="CuboidParams"):
    cj.transmix_lam(cj.sample_cutmix_cuboid(jax.random.key(0), 2, 4, H, W),
                    jnp.ones((2, 16)), patch_size=PATCH)
  with pytest.raises(ValueError, match="not a multiple of patch_size"):
    cj.transmix_lam(params, jnp.ones((2, 16)), patch_size=5)
