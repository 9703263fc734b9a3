"""ResizeMix, the switch among all ops, and cross-device pairing."""

import dataclasses
import functools

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import cutmix_jax as cj
from cutmix_jax import Op

KEY = jax.random.key(0)


def _images(shape, dtype, seed=0):
  rng = np.random.default_rng(seed)
  if jnp.issubdtype(dtype, jnp.integer):
    return rng.integers(0, 256, shape).astype(dtype)
  return rng.normal(size=shape).astype(dtype)


def _lam(pasted):
  """The kept fraction as `lam_from_box` defines it, bit for bit."""
  kept = pasted.size - pasted.sum()
  return np.float32(kept) * np.float32(1.0 / pasted.size)


def _nearest_reference(partner, box):
  """Brute force: pixel (r, c) of the box takes partner pixel
  (floor((r - top) * H / box_h), floor((c - left) * W / box_w))."""
  height, width = partner.shape[:2]
  top, left, bottom, right = (int(v) for v in box)
  out = np.zeros_like(partner)
  for r in range(top, bottom):
    for c in range(left, right):
      out[r, c] = partner[(r - top) * height // (bottom - top),
                          (c - left) * width // (right - left)]
  return out


# ---------------------------------------------------------------------------
# ResizeMix


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_resizemix_pastes_the_resized_partner(mode, dtype):
  x = _images((6, 12, 20, 3), dtype)
  y = np.arange(6)
  p = cj.sample_resizemix(KEY, 6, 12, 20, mode=mode, scale=(0.3, 0.9))
  out_lin = np.asarray(jax.jit(cj.apply_params)(p, x))
  out_near = np.asarray(cj.apply_params(p, x, resize="nearest"))
  targets = np.asarray(cj.mix_labels(p, y, num_classes=6))
  assert out_lin.dtype == x.dtype and out_near.dtype == x.dtype
  for i in range(6):
    top, left, bottom, right = np.asarray(p.box[i]).tolist()
    inside = np.zeros((12, 20), bool)
    inside[top:bottom, left:right] = True
    partner = x[int(p.partner[i])]
    # Outside the box: the sample's own pixels, bit for bit.
    np.testing.assert_array_equal(out_lin[i][~inside], x[i][~inside])
    np.testing.assert_array_equal(out_near[i][~inside], x[i][~inside])
    # The box keeps the image's aspect ratio up to the floor of each side.
    np.testing.assert_allclose((bottom - top) / 12, (right - left) / 20,
                               atol=1 / 12)
    # lam is the exact kept fraction, and the label weights say so.
    assert float(p.lam[i]) == _lam(inside)
    np.testing.assert_allclose(targets[i, i], p.lam[i], rtol=1e-6)
    if not inside.any():
      continue
    ref_near = _nearest_reference(partner, p.box[i])
    np.testing.assert_array_equal(out_near[i][inside], ref_near[inside])
    # 'linear' is the antialiased resize of the whole partner to the box.
    resized = jax.image.resize(partner.astype(np.float32),
                               (bottom - top, right - left, 3), "linear")
    if dtype == np.uint8:
      resized = np.clip(np.round(resized), 0, 255)
    np.testing.assert_allclose(
        out_lin[i, top:bottom, left:right].astype(np.float32), resized,
        atol=1.0 if dtype == np.uint8 else 1e-4)


def test_resizemix_scale_distribution():
  p = cj.sample_resizemix(KEY, 4000, 32, 32, mode="elem", scale=(0.1, 0.8))
  sides = np.asarray(p.box[:, 2] - p.box[:, 0])
  assert sides.min() == 3 and sides.max() <= 25
  # tau ~ U(0.1, 0.8): floor(32 tau) has mean ~ 32 * 0.45 - 0.5.
  assert abs(sides.mean() - (32 * 0.45 - 0.5)) < 0.3
  # Placed whole inside the image.
  assert (np.asarray(p.box[:, :2]) >= 0).all()
  assert (np.asarray(p.box[:, 2]) <= 32).all()
  assert (np.asarray(p.box[:, 3]) <= 32).all()


@pytest.mark.slow
def test_resizemix_op_and_tree():
  x = _images((4, 16, 16, 3), np.float32)
  seg = np.random.default_rng(1).integers(0, 5, (4, 16, 16)).astype(np.int32)
  out, targets = cj.resizemix(KEY, x, np.arange(4), num_classes=4,
                              mode="elem")
  p = cj.sample_resizemix(KEY, 4, 16, 16, mode="elem")
  np.testing.assert_array_equal(out, cj.apply_params(p, x))
  tree = cj.apply_tree(p, {"image": x, "seg": seg})
  # Segmentation maps are resized by nearest neighbour: values copied only.
  np.testing.assert_array_equal(tree["seg"],
                                cj.apply_params(p, seg, layout="NHW",
                                                resize="nearest"))
  assert tree["seg"].dtype == seg.dtype
  np.testing.assert_allclose(np.asarray(targets).sum(-1), 1.0, rtol=1e-6)


def test_mix_boxes_under_resizemix():
  p = cj.MixParams(lam=jnp.array([0.75, 0.75]),
                   box=jnp.array([[8, 16, 24, 32], [0, 0, 16, 16]]),
                   partner=jnp.array([1, 0]),
                   op=jnp.full(2, Op.RESIZEMIX), height=32, width=32,
                   ops=(Op.RESIZEMIX,))
  boxes = jnp.array([[[0., 0., 10., 10.]], [[4., 8., 12., 20.]]])
  out = cj.mix_boxes(p, boxes, jnp.array([[1], [2]]), jnp.ones((2, 1), bool),
                     max_boxes=2, min_visible=0.5)
  # Sample 0 keeps its own box (outside the paste) and gains the partner's,
  # halved and shifted into the paste box.
  np.testing.assert_allclose(out.boxes[0], [[0, 0, 10, 10], [10, 20, 14, 26]])
  np.testing.assert_array_equal(out.classes[0], [1, 2])
  np.testing.assert_array_equal(out.from_partner[0], [False, True])
  # Only a third of sample 1's own box is left visible, below min_visible,
  # so only the partner's (0, 0, 10, 10) / 2 remains.
  np.testing.assert_allclose(out.boxes[1, 0], [0, 0, 5, 5])
  np.testing.assert_array_equal(out.valid[1], [True, False])


# ---------------------------------------------------------------------------
# The switch


ALL = {"cutmix": 0.4, "mixup": 0.3, "cutout": 0.2, "resizemix": 0.1}


@pytest.mark.parametrize("traced", [False, True])
def test_switch_frequencies_follow_probs_and_prob_applies_once(traced):
  n = 20000
  probs = {k: jnp.float32(v) for k, v in ALL.items()} if traced else ALL
  p = jax.jit(lambda k, pr, q: cj.sample_switch(
      k, n, 32, 32, probs=pr, prob=q, mode="elem"))(KEY, probs, 0.8)
  op = np.asarray(p.op)
  # An odd-free flip pairing: every sample has a partner, so NONE means
  # exactly "not applied".
  assert abs((op == Op.NONE).mean() - 0.2) < 0.015
  for name, weight in ALL.items():
    expected = 0.8 * weight
    assert abs((op == Op[name.upper()]).mean() - expected) < 0.015, name


def test_switch_zero_weight_is_never_chosen():
  probs = {"cutmix": 0.0, "mixup": 1.0, "cutout": 0.0, "resizemix": 0.0}
  for pr in (probs, {k: jnp.float32(v) for k, v in probs.items()}):
    p = cj.sample_switch(KEY, 5000, 8, 8, probs=pr, mode="elem")
    assert (np.asarray(p.op) == Op.MIXUP).all()
  p = cj.sample_switch(KEY, 5000, 8, 8, mode="elem",
                       probs={"cutmix": 1.0, "resizemix": 0.0})
  assert (np.asarray(p.op) == Op.CUTMIX).all()
  # A traced all-zero set has no distribution to draw from: NaN surfaces.
  p = jax.jit(lambda w: cj.sample_switch(
      KEY, 4, 8, 8, probs={"cutmix": w, "mixup": w}))(0.0)
  assert np.isnan(np.asarray(p.lam)).all()


@pytest.mark.quick_every(2)
@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_switch_applies_each_samples_own_op(mode, dtype):
  x = _images((10, 8, 12, 3), dtype)
  p = cj.sample_switch(jax.random.key(3), 10, 8, 12, probs=ALL, mode=mode,
                       prob=0.9, cutout_size=4)
  out = np.asarray(jax.jit(
      lambda p, x: cj.apply_params(p, x, fill_value=7))(p, x))
  for i, o in enumerate(np.asarray(p.op)):
    if o == Op.NONE:
      np.testing.assert_array_equal(out[i], x[i])
      continue
    alone = dataclasses.replace(p, op=jnp.where(p.op == o, p.op, 0), ops=(int(o),))
    expected = np.asarray(cj.apply_params(alone, x, fill_value=7))[i]
    if o in (Op.CUTMIX, Op.CUTOUT):
      np.testing.assert_array_equal(out[i], expected)
    else:
      # Blends may differ in the last bit between compilations (FMA
      # contraction), and so round differently for integers.
      np.testing.assert_allclose(out[i].astype(np.float32), expected,
                                 atol=1 if dtype == np.uint8 else 1e-6)
  if mode == "pair":
    partner = np.asarray(p.partner)
    np.testing.assert_array_equal(np.asarray(p.op)[partner], p.op)


@functools.lru_cache(maxsize=None)
def _jitted_switch(mode):
  # One compile per batch size and mode; eagerly every new shape costs more.
  return jax.jit(lambda k, x, y: cj.switch(
      k, x, y, num_classes=3, probs=ALL, mode=mode, prob=0.8, fill_value=0.0))


@pytest.mark.slow
@hypothesis.settings(max_examples=12, deadline=None)
@hypothesis.given(seed=st.integers(0, 2**31 - 1),
                  batch=st.sampled_from([1, 2, 5, 8]),
                  mode=st.sampled_from(["batch", "pair", "elem"]))
def test_switch_label_weight_is_the_pasted_fraction(seed, batch, mode):
  x = _images((batch, 6, 7, 2), np.float32, seed % 100)
  y = np.arange(batch) % 3
  _, targets = _jitted_switch(mode)(jax.random.key(seed), x, y)
  p = cj.sample_switch(jax.random.key(seed), batch, 6, 7, probs=ALL,
                       mode=mode, prob=0.8)
  targets = np.asarray(targets)
  np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-6)
  for i, o in enumerate(np.asarray(p.op)):
    if o in (Op.CUTMIX, Op.RESIZEMIX):
      box = np.asarray(cj.box_mask(p.box[i], 6, 7))
      assert float(p.lam[i]) == _lam(box)
    elif o in (Op.CUTOUT, Op.NONE):
      assert float(p.lam[i]) == 1.0
      np.testing.assert_array_equal(targets[i], np.eye(3)[y[i]])


@pytest.mark.slow
def test_switch_under_vmap_jit_and_no_recompile():
  x = _images((2, 8, 8, 3), np.float32)
  fn = jax.jit(lambda k, x, w: cj.switch(
      k, x, jnp.arange(2), num_classes=2, probs={"cutmix": w, "mixup": 1 - w},
      mode="elem"))
  for i in range(5):
    fn(jax.random.key(i), x, 0.1 * i)
  assert fn._cache_size() == 1
  keys = jax.random.split(KEY, 3)
  one = lambda k: cj.switch(k, x, jnp.arange(2), num_classes=2, probs=ALL,
                            mode="elem")
  batched = jax.vmap(one)(keys)
  for j in range(3):
    single = jax.jit(one)(keys[j])
    np.testing.assert_allclose(batched[0][j], single[0], atol=1e-6)


@pytest.mark.slow
def test_switch_on_select_leaves_never_blends():
  """Every pixel of a select leaf is the exact source its sample's op names.

  Each value occurs once in the batch, so no blend of two of them (and no
  resampling filter) can pass for a source value.
  """
  b, h, w = 16, 8, 8
  seg = np.arange(b * h * w, dtype=np.int32).reshape(b, h, w)
  p = cj.sample_switch(KEY, b, h, w, probs=dict.fromkeys(ALL, 1.0),
                       mode="elem")
  out = np.asarray(cj.apply_tree(p, seg))
  ops, lam = np.asarray(p.op), np.asarray(p.lam)
  partner, box = np.asarray(p.partner), np.asarray(p.box)
  assert set(ops) >= {Op.CUTMIX, Op.MIXUP, Op.CUTOUT, Op.RESIZEMIX}
  for i in range(b):
    own, other = seg[i], seg[partner[i]]
    inside = np.asarray(cj.box_mask(box[i], h, w))
    want = {
        Op.NONE: own,
        Op.CUTOUT: own,  # hidden, not removed, without ignore_value
        Op.CUTMIX: np.where(inside, other, own),
        Op.MIXUP: own if lam[i] >= 0.5 else other,  # the larger weight
        Op.RESIZEMIX: np.where(inside, _nearest_reference(other, box[i]),
                               own),
    }[ops[i]]
    np.testing.assert_array_equal(out[i], want, err_msg=f"sample {i}")


@pytest.mark.parametrize("kwargs, match", [
    ({"probs": {"cutmix": 1.0, "fmix": 1.0}}, "unknown ops"),
    ({"probs": {}}, "non-empty"),
    ({"probs": {"cutmix": 0.0, "mixup": 0}}, "all 0"),
    ({"probs": {"cutmix": -1.0}}, r"probs\['cutmix'\]"),
    ({"probs": {"mixup": 1.0}, "mixup_alpha": 0.0}, "mixup_alpha"),
    ({"probs": {"resizemix": 1.0}, "resize_scale": (0.5, 2.0)}, "resize_scale"),
    ({"probs": {"cutout": 1.0}, "cutout_size": -3}, "cutout_size"),
])
def test_switch_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    cj.sample_switch(KEY, 4, 8, 8, **kwargs)


def test_resize_errors():
  p = cj.sample_resizemix(KEY, 2, 4, 4)
  with pytest.raises(ValueError, match="resize"):
    cj.apply_params(p, np.zeros((2, 4, 4, 1)), resize="cubic")
  with pytest.raises(TypeError, match="resize='nearest'"):
    cj.apply_params(p, np.zeros((2, 4, 4), bool), layout="NHW")
  with pytest.raises(ValueError, match="scale"):
    cj.sample_resizemix(KEY, 2, 4, 4, scale=(0.9, 0.1))


# ---------------------------------------------------------------------------
# Cross-device pairing


def _global_reference(op, key, x, y, mode, pairing):
  kwargs = dict(num_classes=5, mode=mode, pairing=pairing)
  return jax.jit(lambda k, x, y: _call(op, k, x, y, **kwargs))(key, x, y)


def _call(op, key, x, y, **kwargs):
  if op == "switch":
    return cj.switch(key, x, y, probs=ALL, prob=0.9, **kwargs)
  return getattr(cj, op)(key, x, y, **kwargs)


# Every op on one layout; every layout with CutMix and the switch, which
# draws all four ops (each case compiles a sharded program).
CROSS_DEVICE_CASES = [
    (op, "elem", "roll", 2) for op in ("cutmix", "mixup", "mix", "resizemix",
                                       "switch")] + [
    (op, *layout) for layout in (("batch", "flip", 2), ("elem", "flip", 1),
                                 ("pair", "flip", 2), ("elem", "flip", 3))
    for op in ("cutmix", "switch")]


@pytest.mark.quick_every(3)
@pytest.mark.parametrize("op,mode,pairing,per_device", CROSS_DEVICE_CASES)
def test_cross_device_equals_one_device_on_the_global_batch(
    op, mode, pairing, per_device):
  n = 8 * per_device
  x = _images((n, 6, 8, 3), np.float32)
  y = np.arange(n) % 5
  key = jax.random.key(11)
  mesh = jax.make_mesh((8,), ("data",))
  sharding = NamedSharding(mesh, P("data"))
  local = jax.jit(jax.shard_map(
      lambda k, x, y: _call(op, k, x, y, num_classes=5, mode=mode,
                            pairing=pairing, axis_name="data",
                            cross_device=True),
      mesh=mesh, in_specs=(P(), P("data"), P("data")),
      out_specs=(P("data"), P("data"))))
  xs, ys = jax.device_put(x, sharding), jax.device_put(y, sharding)
  compiled = local.lower(key, xs, ys).compile()
  images, targets = compiled(key, xs, ys)
  ref_images, ref_targets = _global_reference(op, key, x, y, mode, pairing)
  np.testing.assert_array_equal(images, ref_images)
  np.testing.assert_array_equal(targets, ref_targets)
  # Samples really are mixed with other shards: a one-sample shard has no
  # partner of its own, yet every sample changed.
  if per_device == 1 and op == "cutmix":
    p = cj.sample_cutmix(key, n, 6, 8, mode=mode, pairing=pairing)
    changed = np.abs(np.asarray(images) - x).reshape(n, -1).max(1) > 0
    np.testing.assert_array_equal(changed, np.asarray(cj.box_area(p.box)) > 0)
    assert changed.any()
  # One collective-permute, of the whole batch for 'flip', one row for 'roll'.
  hlo = compiled.as_text()
  assert "collective-permute" in hlo
  assert "all-gather" not in hlo and "all-to-all" not in hlo


def test_cross_device_under_pmap_with_boxes_and_maps():
  x = _images((8, 8, 8, 3), np.uint8)
  seg = np.random.default_rng(4).integers(0, 3, (8, 8, 8)).astype(np.int32)
  boxes = np.tile(np.array([[1., 1., 5., 6.]], np.float32), (8, 1, 1))
  valid = np.ones((8, 1), bool)
  classes = np.arange(8)[:, None]

  def local(k, x, seg, boxes, classes, valid):
    p = cj.sample_cutmix(k, x.shape[0], 8, 8, mode="elem", axis_name="i",
                         cross_device=True)
    tree = cj.apply_tree(p, {"image": x, "seg": seg})
    return tree, cj.mix_boxes(p, boxes, classes, valid, max_boxes=2), p

  tree, mixed, p = jax.pmap(local, axis_name="i", in_axes=(None,) + (0,) * 5)(
      KEY, *(v.reshape((8, 1) + v.shape[1:])
             for v in (x, seg, boxes, classes, valid)))
  ref = cj.sample_cutmix(KEY, 8, 8, 8, mode="elem")
  np.testing.assert_array_equal(np.asarray(p.box).reshape(8, 4), ref.box)
  ref_tree = cj.apply_tree(ref, {"image": x, "seg": seg})
  np.testing.assert_array_equal(tree["image"].reshape(x.shape),
                                ref_tree["image"])
  np.testing.assert_array_equal(tree["seg"].reshape(seg.shape),
                                ref_tree["seg"])
  ref_boxes = cj.mix_boxes(ref, boxes, classes, valid, max_boxes=2)
  np.testing.assert_array_equal(mixed.boxes.reshape(8, 2, 4), ref_boxes.boxes)
  np.testing.assert_array_equal(mixed.classes.reshape(8, 2),
                                ref_boxes.classes)


@pytest.mark.parametrize("kwargs, match", [
    ({}, "needs axis_name"),
    ({"axis_name": "i", "pairing": "permute"}, "'flip' or 'roll'"),
    ({"axis_name": "i", "invariant": True, "mode": "elem"}, "exclude"),
    ({"axis_name": "i", "groups": 2}, "groups must be 1"),
])
def test_cross_device_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    cj.sample_cutmix(KEY, 4, 8, 8, cross_device=True, **kwargs)


def test_mix_switch_probability():
  params = jax.jit(lambda k: cj.sample_mix(k, 20000, 8, 8, mode="elem",
                                           switch_prob=0.3))(jax.random.key(0))
  ops = np.asarray(params.op)
  mixed = ops != cj.Op.NONE
  assert abs((ops[mixed] == cj.Op.CUTMIX).mean() - 0.3) < 0.02
