"""The public API's shape: names, signatures, and errors on bad input."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cutmix_jax as cj

# Random functions take the key first, then their positional arrays/sizes.
POSITIONAL = {
    "cutmix": ["key", "images", "labels"],
    "mixup": ["key", "images", "labels"],
    "mix": ["key", "images", "labels"],
    "cutout": ["key", "images"],
    "cutmix_pair": ["key", "image_a", "image_b"],
    "sample_cutmix": ["key", "batch_size", "height", "width"],
    "sample_mix": ["key", "batch_size", "height", "width"],
    "sample_cutout": ["key", "batch_size", "height", "width"],
    "sample_mixup": ["key", "batch_size"],
    "sample_box": ["key", "lam", "height", "width"],
    "sample_lam": ["key", "alpha", "shape"],
    "apply_params": ["params", "x"],
    "mix_labels": ["params", "labels"],
    "one_hot": ["labels", "num_classes"],
    "sample_fmix": ["key", "batch_size", "height", "width"],
    "sample_multibox": ["key", "batch_size", "height", "width"],
    "sample_cutmix_cuboid": ["key", "batch_size", "length", "height", "width"],
    "apply_tree": ["params", "tree"],
    "mix_boxes": ["params", "boxes", "classes", "valid"],
    "resizemix": ["key", "images", "labels"],
    "switch": ["key", "images", "labels"],
    "sample_resizemix": ["key", "batch_size", "height", "width"],
    "sample_switch": ["key", "batch_size", "height", "width"],
    "partner_rows": ["params", "x"],
    "box_area": ["box"],
    "box_mask": ["box", "height", "width"],
    "lam_from_box": ["box", "height", "width"],
    "smooth_labels": ["labels", "label_smoothing"],
    "mix_labels_kway": ["params", "labels"],
    "softmax_cross_entropy_kway": ["logits", "labels"],
    "sigmoid_binary_cross_entropy_kway": ["logits", "labels"],
    "token_mask": ["params"],
    "transmix_lam": ["params", "attention"],
    "transmix_labels": ["params", "labels", "attention"],
    "transmix_labels_kway": ["params", "labels", "attention"],
}
FUNCTIONS = sorted(n for n in cj.__all__ if inspect.isfunction(getattr(cj, n)))

X = jnp.zeros((4, 8, 10, 3))
Y = jnp.arange(4)
KEY = jax.random.key(0)


def test_all_names_exist_and_version():
  assert cj.__version__
  for name in cj.__all__:
    assert hasattr(cj, name), name
  assert set(POSITIONAL) == set(FUNCTIONS)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_key_first_and_options_keyword_only(name):
  params = list(inspect.signature(getattr(cj, name)).parameters.values())
  positional = [p.name for p in params
                if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
  assert positional == POSITIONAL[name]
  for p in params[len(positional):]:
    assert p.kind is inspect.Parameter.KEYWORD_ONLY, (name, p.name)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_documented_with_an_example(name):
  doc = getattr(cj, name).__doc__
  assert doc and ">>>" in doc, name


@pytest.mark.slow
def test_output_types_and_dtypes():
  for dtype in [jnp.uint8, jnp.int32, jnp.bfloat16, jnp.float16, jnp.float32]:
    images, targets = cj.cutmix(KEY, X.astype(dtype), Y, num_classes=5)
    assert images.dtype == dtype and targets.dtype == jnp.float32
    assert targets.shape == (4, 5)
  # Float targets keep a wider float; bf16 targets are computed in float32.
  soft = jax.nn.one_hot(Y, 5, dtype=jnp.bfloat16)
  assert cj.mixup(KEY, X, soft)[1].dtype == jnp.float32


@pytest.mark.parametrize("call,error,words", [
    (lambda: cj.cutmix(0, X, Y, num_classes=5), TypeError, ["key", "int"]),
    (lambda: cj.cutmix(jnp.zeros(3, jnp.uint32), X, Y, num_classes=5),
     TypeError, ["key", "(3,)"]),
    (lambda: cj.cutmix(jax.random.split(KEY), X, Y, num_classes=5),
     ValueError, ["key", "(2,)"]),
    (lambda: cj.cutmix(KEY, X[0], Y, num_classes=5), ValueError,
     ["images", "rank 3", "NHWC"]),
    (lambda: cj.cutmix(KEY, X[None], Y, num_classes=5), ValueError,
     ["images", "rank 5", "NTHWC"]),
    (lambda: cj.cutmix(KEY, X, Y, num_classes=5, layout="HWC"), ValueError,
     ["layout", "'HWC'"]),
    (lambda: cj.cutmix(KEY, X, Y[:3], num_classes=5), ValueError,
     ["labels", "(3,)", "batch size 4"]),
    (lambda: cj.cutmix(KEY, X, Y), ValueError, ["num_classes", "integer labels"]),
    (lambda: cj.cutmix(KEY, X, Y.astype(jnp.float32)), TypeError,
     ["labels", "float32", "[batch, num_classes]"]),
    (lambda: cj.cutmix(KEY, X, jnp.zeros((4, 5), jnp.int32)), TypeError,
     ["labels", "int32"]),
    (lambda: cj.cutmix(KEY, X, jnp.zeros((4, 5)), num_classes=6), ValueError,
     ["labels", "5 classes", "num_classes=6"]),
    (lambda: cj.cutmix(KEY, X, Y, num_classes=5, alpha=0.0), ValueError,
     ["alpha", "> 0", "0.0"]),
    (lambda: cj.mixup(KEY, X, Y, num_classes=5, alpha=-1), ValueError,
     ["alpha", "-1"]),
    (lambda: cj.cutmix(KEY, X, Y, num_classes=5, prob=1.5), ValueError,
     ["prob", "[0, 1]", "1.5"]),
    (lambda: cj.mix(KEY, X, Y, num_classes=5, switch_prob=-0.1), ValueError,
     ["switch_prob", "-0.1"]),
    (lambda: cj.mix(KEY, X, Y, num_classes=5, mixup_alpha=0, cutmix_alpha=0),
     ValueError, ["mixup_alpha", "cutmix_alpha", "both 0"]),
    (lambda: cj.cutmix(KEY, X, Y, num_classes=5, mode="batches"), ValueError,
     ["mode", "'batches'", "elem"]),
    (lambda: cj.cutmix(KEY, X, Y, num_classes=5, pairing="reverse"),
     ValueError, ["pairing", "'reverse'"]),
    (lambda: cj.cutmix(KEY, X, Y, num_classes=5, mode="pair", pairing="roll"),
     ValueError, ["pair", "roll"]),
    (lambda: cj.cutmix(KEY, X, Y, num_classes=5, groups=3), ValueError,
     ["batch_size 4", "groups=3"]),
    (lambda: cj.cutmix(KEY, X, Y, num_classes=5, placement="center"),
     ValueError, ["placement", "'center'"]),
    (lambda: cj.cutmix(KEY, X, Y, num_classes=5, label_smoothing=2.0),
     ValueError, ["label_smoothing", "2.0"]),
    (lambda: cj.cutmix(KEY, X, Y, num_classes=5, minmax=(0.8, 0.2)),
     ValueError, ["minmax"]),
    (lambda: cj.mixup(KEY, X.astype(bool), Y, num_classes=5), TypeError,
     ["bool"]),
    (lambda: cj.cutout(KEY, X, fill_value=jnp.zeros(4)), ValueError,
     ["fill_value", "(4,)", "(3,)"]),
    (lambda: cj.cutout(KEY, X, size=(1, 2, 3)), ValueError, ["size"]),
    (lambda: cj.cutmix_pair(KEY, X[0], X[1, :4]), ValueError,
     ["image_b", "image_a"]),
    (lambda: cj.apply_params(cj.sample_cutmix(KEY, 4, 8, 8), X), ValueError,
     ["spatial size", "(8, 10)", "(8, 8)"]),
    (lambda: cj.apply_params(cj.sample_cutmix(KEY, 3, 8, 10), X), ValueError,
     ["batch size 4", "3 samples"]),
    (lambda: cj.apply_params({"lam": 1}, X), TypeError, ["MixParams"]),
    (lambda: cj.sample_cutmix(KEY, 4.0, 8, 8), TypeError, ["batch_size"]),
])
def test_bad_input_raises_a_clear_error(call, error, words):
  with pytest.raises(error) as info:
    call()
  message = str(info.value)
  for word in words:
    assert word in message, (word, message)


def test_errors_are_raised_at_trace_time_under_jit():
  with pytest.raises(ValueError, match="num_classes"):
    jax.jit(lambda k, x, y: cj.cutmix(k, x, y))(KEY, X, Y)
  with pytest.raises(ValueError, match="alpha"):
    jax.jit(lambda k: cj.cutmix(k, X, Y, num_classes=5, alpha=0.0))(KEY)


def test_traced_options_are_accepted():
  fn = jax.jit(lambda k, a, p, s, ls: cj.mix(
      k, X, Y, num_classes=5, mixup_alpha=a, cutmix_alpha=a, prob=p,
      switch_prob=s, label_smoothing=ls))
  images, targets = fn(KEY, 0.5, 0.9, 0.4, 0.1)
  np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-6)


def test_traced_zero_alpha_switches_that_branch_off():
  fn = jax.jit(lambda k, ma, ca: cj.sample_mix(
      k, 64, 8, 8, mixup_alpha=ma, cutmix_alpha=ca, mode="elem").op)
  ops = np.asarray(fn(KEY, 0.0, 1.0))
  assert set(ops.tolist()) <= {cj.Op.CUTMIX, cj.Op.NONE}
  ops = np.asarray(fn(KEY, 1.0, 0.0))
  assert set(ops.tolist()) <= {cj.Op.MIXUP, cj.Op.NONE}
