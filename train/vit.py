"""A Flax NNX Vision Transformer (ViT/DeiT) that can return its attention.

The architecture of Dosovitskiy et al. 2021 as DeiT (Touvron et al. 2021)
trains it, with timm's layout: a `p x p` stride-`p` convolution cuts the
image into patches (tokens in row-major order, as `cutmix_jax.token_mask`
numbers them), a learned class token and position embeddings, pre-norm
blocks (LayerNorm, multi-head self-attention, LayerNorm, a GELU MLP of 4x
width), a final LayerNorm, and a linear head on the class token.

With `return_attention=True` the forward pass also returns what TransMix
needs, in the same pass: the last block's attention of the class token over
the patch tokens, from the softmax over all tokens (the class token
included), averaged over heads, as the official TransMix model returns it.

There is no dropout and no stochastic depth (DeiT-Ti uses a drop-path rate
of 0.1); `train` is accepted for the trainer's interface and changes
nothing.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Union

import jax
import jax.numpy as jnp
from flax import nnx

# timm's initialisation: truncated normal of std 0.02 for linear kernels,
# the class token and the position embeddings; zero biases.
_INIT = nnx.initializers.truncated_normal(stddev=0.02)
_LN_EPSILON = 1e-6


def _linear(cin, cout, dtype, rngs):
  return nnx.Linear(cin, cout, kernel_init=_INIT, dtype=dtype, rngs=rngs)


def _layer_norm(dim, rngs):
  # Normalised in float32 under bf16 compute.
  return nnx.LayerNorm(dim, epsilon=_LN_EPSILON, dtype=jnp.float32, rngs=rngs)


class Attention(nnx.Module):
  """Multi-head self-attention that also returns the class token's row."""

  def __init__(self, dim: int, heads: int, *, dtype, rngs: nnx.Rngs):
    if dim % heads:
      raise ValueError(f"the width {dim} must divide by the {heads} heads.")
    self.heads = heads
    self.qkv = _linear(dim, 3 * dim, dtype, rngs)
    self.proj = _linear(dim, dim, dtype, rngs)

  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Returns the output `[batch, tokens, dim]` and the softmax row of the
    first (class) token's query, float32 `[batch, heads, tokens]`."""
    batch, tokens, dim = x.shape
    # timm's layout: the qkv features split as (3, heads, head_dim).
    qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    scale = (dim // self.heads) ** -0.5
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) * scale
    probs = jax.nn.softmax(logits, axis=-1)
    out = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v)
    return self.proj(out.reshape(batch, tokens, dim)), probs[:, :, 0]


class Block(nnx.Module):
  """A pre-norm transformer block: attention, then a GELU MLP."""

  def __init__(self, dim: int, heads: int, *, mlp_ratio: int, dtype,
               rngs: nnx.Rngs):
    self.norm1 = _layer_norm(dim, rngs)
    self.attn = Attention(dim, heads, dtype=dtype, rngs=rngs)
    self.norm2 = _layer_norm(dim, rngs)
    self.fc1 = _linear(dim, mlp_ratio * dim, dtype, rngs)
    self.fc2 = _linear(mlp_ratio * dim, dim, dtype, rngs)

  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    y, cls_row = self.attn(self.norm1(x))
    x = x + y.astype(x.dtype)
    # The exact (erf) GELU, as PyTorch's nn.GELU.
    y = self.fc2(nnx.gelu(self.fc1(self.norm2(x)), approximate=False))
    return x + y.astype(x.dtype), cls_row


class ViT(nnx.Module):
  """A Vision Transformer classifier on square images.

  Args:
    num_classes: outputs of the head.
    image_size: the side of the (square) images; a multiple of
      `patch_size`.
    patch_size: the side of the square patches.
    dim: the token width.
    depth: the number of blocks.
    heads: attention heads per block (dividing `dim`).
    in_channels: image channels.
    mlp_ratio: the MLP's hidden width over `dim`.
    dtype: the computation dtype; parameters, LayerNorm, softmax and logits
      stay float32.
    rngs: the initialisation RNGs.
  """

  def __init__(self, num_classes: int, *, image_size: int, patch_size: int,
               dim: int, depth: int, heads: int, in_channels: int,
               mlp_ratio: int = 4, dtype=jnp.float32, rngs: nnx.Rngs):
    if image_size % patch_size:
      raise ValueError(
          f"image size {image_size} is not a multiple of the patch size "
          f"{patch_size}: the patches must tile the image.")
    self.image_size = image_size
    self.patch_size = (patch_size, patch_size)
    num_tokens = (image_size // patch_size) ** 2
    # The conv's own default init (LeCun normal), as big_vision's ViT.
    self.patch_embed = nnx.Conv(
        in_channels, dim, (patch_size, patch_size), strides=patch_size,
        padding="VALID", dtype=dtype, rngs=rngs)
    self.cls_token = nnx.Param(_INIT(rngs.params(), (1, 1, dim)))
    self.pos_embed = nnx.Param(_INIT(rngs.params(), (1, num_tokens + 1, dim)))
    self.blocks = nnx.List([
        Block(dim, heads, mlp_ratio=mlp_ratio, dtype=dtype, rngs=rngs)
        for _ in range(depth)])
    self.norm = _layer_norm(dim, rngs)
    self.head = _linear(dim, num_classes, dtype, rngs)

  def __call__(self, x: jax.Array, train: bool = False, *,
               return_attention: bool = False
               ) -> Union[jax.Array, tuple[jax.Array, jax.Array]]:
    """Logits float32 `[batch, num_classes]` of NHWC images, and with
    `return_attention` the last block's class-token attention over the
    patches, float32 `[batch, num_patches]`, averaged over heads (it sums to
    one minus the class token's attention to itself)."""
    del train  # no dropout, no BatchNorm
    batch, height, width, _ = x.shape
    if (height, width) != (self.image_size, self.image_size):
      raise ValueError(
          f"the ViT was built for {self.image_size}x{self.image_size} images "
          f"(its position embeddings), got {height}x{width}.")
    tokens = self.patch_embed(x)
    tokens = tokens.reshape(batch, -1, tokens.shape[-1])
    cls = jnp.broadcast_to(self.cls_token[...].astype(tokens.dtype),
                           (batch, 1, tokens.shape[-1]))
    x = jnp.concatenate([cls, tokens], axis=1)
    x = x + self.pos_embed[...].astype(x.dtype)
    for block in self.blocks:
      x, cls_row = block(x)
    logits = self.head(self.norm(x)[:, 0]).astype(jnp.float32)
    if not return_attention:
      return logits
    return logits, cls_row[:, :, 1:].mean(axis=1)


@dataclasses.dataclass(frozen=True)
class Preset:
  patch_size: int
  dim: int
  depth: int
  heads: int


# DeiT-Ti's width, depth and heads with 4-pixel patches for 32x32 images (64
# tokens); a 2-core CPU preset for CIFAR; and one for the 8x8 digits.
PRESETS = {
    "vit_tiny": Preset(patch_size=4, dim=192, depth=12, heads=3),
    "vit_small_cpu": Preset(patch_size=4, dim=96, depth=6, heads=3),
    "vit_digits": Preset(patch_size=2, dim=64, depth=4, heads=2),
}


def create(name: str, num_classes: int, *, in_channels: int, image_size: int,
           width: Optional[int] = None, dtype: str = "float32",
           seed: int = 0) -> ViT:
  """A ViT preset (see `PRESETS`); `width` overrides its token width."""
  preset = PRESETS[name]
  return ViT(num_classes, image_size=image_size,
             patch_size=preset.patch_size, dim=width or preset.dim,
             depth=preset.depth, heads=preset.heads, in_channels=in_channels,
             dtype=jnp.dtype(dtype), rngs=nnx.Rngs(seed))
