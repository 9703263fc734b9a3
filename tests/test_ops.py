"""Invariants of every op, on random shapes, dtypes, layouts, modes and keys.

The ops run jitted, with α and prob traced, so that hypothesis's examples
share compilations where their static configuration repeats. Every example
mixes (prob = 1, traced): prob has its own tests below, and an example that
mixes nothing checks nothing.
"""

import functools

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cutmix_jax as cj

# Hypothesis: each property compiles and runs dozens of generated cases.
pytestmark = pytest.mark.slow

DTYPES = [jnp.uint8, jnp.int32, jnp.bfloat16, jnp.float16, jnp.float32]
MODES = ["batch", "pair", "elem"]

# The batch `test_sample_then_apply_equals_the_convenience_op` mixes.
_X = np.random.default_rng(0).normal(size=(6, 10, 12, 3)).astype(np.float32)
_Y = np.arange(6) % 4

SETTINGS = hypothesis.settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)


def jit(fn, **static):
  """`fn` jitted with `static` bound; one compilation per distinct config."""
  return _jit(fn, tuple(sorted(static.items())))


@functools.lru_cache(maxsize=None)
def _jit(fn, static_items):
  return jax.jit(functools.partial(fn, **dict(static_items)))


def _with_params(key, x, labels, *, op, sampler, hw, layout="NHWC",
                 fill_value=None, **kwargs):
  """Runs `op` and returns its result with the draw it made, for checking."""
  sample_kwargs = {k: v for k, v in kwargs.items() if k != "fill_value"}
  shape = () if hw is None else hw
  params = sampler(key, x.shape[0], *shape, **sample_kwargs)
  if labels is None:
    return op(key, x, layout=layout, fill_value=fill_value, **kwargs), params
  return op(key, x, labels, num_classes=x.shape[0], layout=layout,
            **kwargs), params


def to_layout(x_nhwc, layout):
  return x_nhwc if layout == "NHWC" else np.transpose(x_nhwc, (0, 3, 1, 2))


def to_nhwc(x, layout):
  x = np.asarray(x)
  return x if layout == "NHWC" else np.transpose(x, (0, 2, 3, 1))


def sample_ids(batch, height, width, channels):
  """Images whose every pixel holds its own sample's id (1-based)."""
  ids = np.arange(1, batch + 1).reshape(batch, 1, 1, 1)
  return np.broadcast_to(ids, (batch, height, width, channels))


@st.composite
def cases(draw, pairings=("flip", "roll", "permute")):
  batch = draw(st.sampled_from([1, 2, 5, 8]))
  height = draw(st.sampled_from([1, 4, 13]))
  width = draw(st.sampled_from([1, 6, 11]))
  mode = draw(st.sampled_from(MODES))
  pairing = draw(st.sampled_from(pairings))
  hypothesis.assume(not (mode == "pair" and pairing == "roll"))
  return dict(
      seed=draw(st.integers(0, 2**31 - 1)),
      batch=batch,
      height=height,
      width=width,
      channels=draw(st.sampled_from([1, 3])),
      dtype=draw(st.sampled_from(DTYPES)),
      layout=draw(st.sampled_from(["NHWC", "NCHW"])),
      mode=mode,
      pairing=pairing,
      alpha=draw(st.sampled_from([0.2, 1.0, 3.0])),
      placement=draw(st.sampled_from(["official", "inside"])),
  )


def check_rectangle(mask):
  """The True cells of a 2-D mask form one axis-aligned rectangle (or none)."""
  if not mask.any():
    return
  rows = np.flatnonzero(mask.any(axis=1))
  cols = np.flatnonzero(mask.any(axis=0))
  expected = np.zeros_like(mask)
  expected[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = True
  np.testing.assert_array_equal(mask, expected)


@SETTINGS
@hypothesis.given(cases())
def test_cutmix_invariants(c):
  key = jax.random.key(c["seed"])
  b, h, w, ch = c["batch"], c["height"], c["width"], c["channels"]
  # The op and its draw, in one compilation per static configuration.
  op = jit(_with_params, op=cj.cutmix, sampler=cj.sample_cutmix, hw=(h, w),
           mode=c["mode"], pairing=c["pairing"], placement=c["placement"],
           layout=c["layout"])
  traced = dict(alpha=jnp.float32(c["alpha"]), prob=jnp.float32(1))
  labels = jnp.arange(b)

  # Pass 1: images of sample ids reveal where every output pixel came from.
  ids = sample_ids(b, h, w, ch).astype(c["dtype"])
  (out_ids, targets), params = op(key, to_layout(ids, c["layout"]), labels, **traced)
  out_ids = to_nhwc(out_ids, c["layout"]).astype(np.int64)
  targets = np.asarray(targets)
  assert out_ids.shape == ids.shape
  np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-6)

  partner = np.asarray(params.partner)
  for i in range(b):
    source = out_ids[i] - 1
    assert set(np.unique(source)) <= {i, partner[i]}
    pasted = source[..., 0] == partner[i]
    # Channels share the box.
    np.testing.assert_array_equal(source == partner[i], pasted[..., None].repeat(ch, -1))
    if partner[i] == i:
      np.testing.assert_allclose(targets[i, i], 1.0, rtol=1e-6)
      continue
    check_rectangle(pasted)
    fraction = pasted.mean(dtype=np.float64)
    np.testing.assert_allclose(targets[i, partner[i]], fraction, atol=1e-6)
    np.testing.assert_allclose(targets[i, i], 1 - fraction, atol=1e-6)
    # lam is computed from the pasted box itself, bit for bit.
    kept = np.float32(h * w - pasted.sum())
    assert np.float32(params.lam[i]) == kept * np.float32(1 / (h * w))

  # Pass 2: on random values, every pixel is its own or the partner's value at
  # the same position, exactly, with the dtype kept.
  rng = np.random.default_rng(c["seed"])
  x = rng.integers(0, 200, (b, h, w, ch)).astype(c["dtype"])
  (out, _), _ = op(key, to_layout(x, c["layout"]), labels, **traced)
  assert out.dtype == x.dtype
  out = to_nhwc(out, c["layout"])
  from_partner = (out_ids - 1) == partner[:, None, None, None]
  np.testing.assert_array_equal(out, np.where(from_partner, x[partner], x))


@SETTINGS
@hypothesis.given(cases(pairings=("flip", "permute")))
def test_mixup_invariants(c):
  key = jax.random.key(c["seed"])
  b, h, w, ch = c["batch"], c["height"], c["width"], c["channels"]
  rng = np.random.default_rng(c["seed"])
  x = rng.integers(0, 200, (b, h, w, ch)).astype(c["dtype"])
  labels = jnp.arange(b)
  traced = dict(alpha=jnp.float32(c["alpha"]), prob=jnp.float32(1))
  (out, targets), params = jit(
      _with_params, op=cj.mixup, sampler=cj.sample_mixup, hw=None,
      mode=c["mode"], pairing=c["pairing"], layout=c["layout"])(
          key, to_layout(x, c["layout"]), labels, **traced)
  assert out.dtype == x.dtype
  out = to_nhwc(out, c["layout"]).astype(np.float64)
  lam = np.asarray(params.lam, np.float64)
  partner = np.asarray(params.partner)
  xf = x.astype(np.float64)
  if jnp.issubdtype(c["dtype"], jnp.integer):
    # Exactly: the float32 `partner + lam * (own - partner)`, with or without
    # FMA contraction (the compiler's choice), rounded half to even.
    w = lam.astype(np.float32)[:, None, None, None].astype(np.float64)
    diff = xf - xf[partner]
    fused = (xf[partner] + w * diff).astype(np.float32)  # one rounding
    unfused = xf[partner] + (w * diff).astype(np.float32)
    ok = (out == np.round(fused)) | (out == np.round(unfused.astype(np.float32)))
    assert ok.all()
  else:
    expected = lam[:, None, None, None] * xf + (1 - lam[:, None, None, None]) * xf[partner]
    tol = {jnp.bfloat16: 2.0, jnp.float16: 0.25}.get(c["dtype"], 1e-3)
    np.testing.assert_allclose(out, expected, atol=tol)
  unmixed = np.asarray(params.op) == cj.Op.NONE
  np.testing.assert_array_equal(out[unmixed], xf[unmixed])
  targets = np.asarray(targets)
  np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-6)
  for i in range(b):
    if partner[i] != i:
      np.testing.assert_allclose(targets[i, i], lam[i], rtol=1e-6)
      np.testing.assert_allclose(targets[i, partner[i]], 1 - lam[i], atol=1e-6)


@SETTINGS
@hypothesis.given(cases(pairings=("flip", "permute")), st.sampled_from([0.0, 0.5, 1.0]))
def test_mix_invariants(c, switch_prob):
  """Each sample is either a CutMix select or a MixUp blend, per its op."""
  key = jax.random.key(c["seed"])
  b, h, w, ch = c["batch"], c["height"], c["width"], c["channels"]
  x = np.random.default_rng(c["seed"]).normal(size=(b, h, w, ch)).astype(np.float32)
  traced = dict(prob=jnp.float32(1), switch_prob=jnp.float32(switch_prob))
  static = dict(mode=c["mode"], pairing=c["pairing"], placement=c["placement"])
  (out, targets), params = jit(_with_params, op=cj.mix, sampler=cj.sample_mix,
                               hw=(h, w), **static)(key, x, jnp.arange(b), **traced)
  # Eager apply_params rounds MixUp's blend without FMA contraction.
  expected = np.asarray(cj.apply_params(params, x))
  np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(np.asarray(targets).sum(-1), 1.0, rtol=1e-6)
  ops = np.asarray(params.op)
  partner = np.asarray(params.partner)
  for i in range(b):
    if ops[i] == cj.Op.CUTMIX:
      mask = np.asarray(cj.box_mask(params.box[i], h, w))
      np.testing.assert_array_equal(out[i], np.where(mask[..., None], x[partner[i]], x[i]))
    elif ops[i] == cj.Op.NONE:
      np.testing.assert_array_equal(out[i], x[i])
    else:
      lam = float(params.lam[i])
      np.testing.assert_allclose(out[i], lam * x[i] + (1 - lam) * x[partner[i]], atol=1e-5)
  if switch_prob == 0.0:
    assert not (ops == cj.Op.CUTMIX).any()
  if switch_prob == 1.0:
    assert not (ops == cj.Op.MIXUP).any()


@SETTINGS
@hypothesis.given(cases(), st.sampled_from([0, 3, 8]), st.sampled_from([0, 7, 255]))
def test_cutout_invariants(c, size, fill):
  key = jax.random.key(c["seed"])
  b, h, w, ch = c["batch"], c["height"], c["width"], c["channels"]
  mode = "batch" if c["mode"] == "batch" else "elem"
  x = np.random.default_rng(c["seed"]).integers(1, 250, (b, h, w, ch)).astype(c["dtype"])
  out, params = jit(_with_params, op=cj.cutout, sampler=cj.sample_cutout,
                    hw=(h, w), size=size, mode=mode, layout=c["layout"])(
                        key, to_layout(x, c["layout"]), None,
                        fill_value=fill, prob=jnp.float32(1))
  assert out.dtype == x.dtype
  out = to_nhwc(out, c["layout"])
  for i in range(b):
    mask = np.asarray(cj.box_mask(params.box[i], h, w))
    check_rectangle(mask)
    assert mask.sum() <= size * size
    np.testing.assert_array_equal(
        out[i], np.where(mask[..., None], np.asarray(fill).astype(x.dtype), x[i])
    )


def test_video_layout_gets_one_box_per_clip():
  b, t, h, w, c = 3, 4, 9, 11, 2
  x = np.random.default_rng(0).normal(size=(b, t, h, w, c)).astype(np.float32)
  key = jax.random.key(7)
  out, _ = cj.cutmix(key, x, jnp.arange(b), num_classes=b, layout="NTHWC", mode="elem")
  params = cj.sample_cutmix(key, b, h, w, mode="elem")
  for i in range(b):
    mask = np.asarray(cj.box_mask(params.box[i], h, w))[None, :, :, None]
    np.testing.assert_array_equal(out[i], np.where(mask, x[b - 1 - i], x[i]))
  # Channel-first video, too.
  out_cf, _ = cj.cutmix(key, np.moveaxis(x, -1, 1), jnp.arange(b), num_classes=b,
                        layout="NCTHW", mode="elem")
  np.testing.assert_array_equal(np.moveaxis(np.asarray(out_cf), 1, -1), out)


def test_segmentation_maps_take_the_same_draw():
  key = jax.random.key(2)
  images = np.random.default_rng(0).normal(size=(4, 10, 12, 3)).astype(np.float32)
  seg = np.random.default_rng(1).integers(0, 5, (4, 10, 12)).astype(np.int32)
  params = cj.sample_cutmix(key, 4, 10, 12, mode="elem")
  mixed_images = cj.apply_params(params, images)
  mixed_seg = cj.apply_params(params, seg, layout="NHW")
  pasted = np.asarray(mixed_images != images).any(-1)
  for i in range(4):
    mask = np.asarray(cj.box_mask(params.box[i], 10, 12))
    np.testing.assert_array_equal(mixed_seg[i], np.where(mask, seg[3 - i], seg[i]))
    assert not (pasted[i] & ~mask).any()


def test_sample_then_apply_equals_the_convenience_op():
  key = jax.random.key(9)
  params = cj.sample_cutmix(key, 6, 10, 12, mode="pair", alpha=0.5)
  images, targets = cj.cutmix(key, _X, _Y, num_classes=4, mode="pair", alpha=0.5)
  np.testing.assert_array_equal(images, cj.apply_params(params, _X))
  np.testing.assert_array_equal(
      targets, cj.mix_labels(params, _Y, num_classes=4))
