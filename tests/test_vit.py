"""The trainer's Vision Transformer: shapes, parameter counts, and the class
token's attention row that TransMix reads."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from train import models
from train import vit


def _param_count(model):
  return sum(math.prod(p.shape)
             for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _by_hand(*, image, patch, channels, dim, depth, classes):
  """A ViT's parameters, counted from its layers."""
  tokens = (image // patch) ** 2
  embed = patch * patch * channels * dim + dim  # conv kernel and bias
  cls_and_pos = dim + (tokens + 1) * dim
  block = (2 * dim                     # LayerNorm 1
           + dim * 3 * dim + 3 * dim   # qkv
           + dim * dim + dim           # proj
           + 2 * dim                   # LayerNorm 2
           + dim * 4 * dim + 4 * dim   # fc1
           + 4 * dim * dim + dim)      # fc2
  return embed + cls_and_pos + depth * block + 2 * dim + dim * classes + classes


@pytest.mark.parametrize("name,image,channels", [
    ("vit_digits", 8, 1), ("vit_small_cpu", 32, 3), ("vit_tiny", 32, 3)])
def test_presets_have_the_parameter_count_of_their_layers(name, image,
                                                          channels):
  # Shapes only: no initialisation is run.
  model = nnx.eval_shape(lambda: models.create_model(
      name, 10, in_channels=channels, image_size=image))
  p = vit.PRESETS[name]
  assert _param_count(model) == _by_hand(
      image=image, patch=p.patch_size, channels=channels, dim=p.dim,
      depth=p.depth, classes=10)
  assert models.family(name) == "vit"


def test_deit_tiny_at_224_has_the_published_parameter_count():
  model = nnx.eval_shape(lambda: vit.ViT(
      1000, image_size=224, patch_size=16, dim=192, depth=12, heads=3,
      in_channels=3, rngs=nnx.Rngs(0)))
  # timm's deit_tiny_patch16_224: 5,717,416 parameters.
  assert _param_count(model) == 5_717_416


def _layer_norm(x, ln):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return ((x - mean) / np.sqrt(var + 1e-6) * np.asarray(ln.scale[...])
          + np.asarray(ln.bias[...]))


@pytest.mark.slow
def test_attention_row_is_the_class_tokens_softmax_row():
  model = models.create_model("vit_digits", 10, in_channels=2, image_size=8,
                              width=16, seed=1)
  x = np.random.default_rng(0).normal(size=(3, 8, 8, 2)).astype(np.float32)
  logits, attn = jax.jit(lambda x: model(x, return_attention=True))(x)
  assert logits.shape == (3, 10) and logits.dtype == jnp.float32
  assert attn.shape == (3, 16) and attn.dtype == jnp.float32
  np.testing.assert_array_equal(logits, jax.jit(model)(x))

  # The tokens by hand, in float64: 2x2 patches in row-major order.
  f64 = lambda a: np.asarray(a[...], np.float64)
  patches = x.reshape(3, 4, 2, 4, 2, 2).transpose(0, 1, 3, 2, 4, 5)
  kernel = f64(model.patch_embed.kernel).reshape(8, 16)
  tokens = patches.reshape(3, 16, 8) @ kernel + f64(model.patch_embed.bias)
  h = np.concatenate([np.broadcast_to(f64(model.cls_token), (3, 1, 16)),
                      tokens], 1) + f64(model.pos_embed)
  for block in model.blocks[:-1]:
    h = np.asarray(block(jnp.asarray(h, jnp.float32))[0], np.float64)
  last = model.blocks[-1]
  qkv = (_layer_norm(h, last.norm1) @ f64(last.attn.qkv.kernel)
         + f64(last.attn.qkv.bias)).reshape(3, 17, 3, 2, 8)
  q, k = qkv[:, 0, 0], qkv[:, :, 1]  # the class token's query; all keys
  scores = np.einsum("bhd,bkhd->bhk", q, k) / np.sqrt(8)
  row = np.exp(scores - scores.max(-1, keepdims=True))
  row /= row.sum(-1, keepdims=True)  # over the class token and 16 patches

  np.testing.assert_allclose(attn, row[:, :, 1:].mean(1), rtol=1e-5,
                             atol=1e-7)
  # With the class token's attention to itself the row sums to 1.
  np.testing.assert_allclose(np.asarray(attn).sum(1) + row[:, :, 0].mean(1),
                             1.0, rtol=1e-6)
  assert np.all(np.asarray(attn).sum(1) < 1 - 1e-3)


def test_bad_sizes_are_refused():
  with pytest.raises(ValueError, match="not a multiple of the patch size 4"):
    nnx.eval_shape(lambda: models.create_model(
        "vit_small_cpu", 10, in_channels=3, image_size=30))
  with pytest.raises(ValueError, match="width 100 must divide by the 3 heads"):
    nnx.eval_shape(lambda: models.create_model(
        "vit_small_cpu", 10, in_channels=3, image_size=32, width=100))
  model = nnx.eval_shape(lambda: models.create_model(
      "vit_digits", 10, in_channels=1, image_size=8, width=8))
  with pytest.raises(ValueError, match=r"built for 8x8 images .* got 12x12"):
    model(jax.ShapeDtypeStruct((1, 12, 12, 1), jnp.float32))
