"""Flax NNX ResNets: CIFAR-style ResNet-20/32/56, ImageNet-style 18/34/50, and
the pre-activation ResNet-18 of the CutMix/MixUp CIFAR literature; and the
registry of every model, the Vision Transformers of `train/vit.py` included.

All models take NHWC float images and a `train` flag that switches BatchNorm
between batch statistics (train) and running averages (eval). `dtype` is the
computation dtype: with bfloat16 the convolutions and matrix products run in
bf16 while parameters and BatchNorm statistics stay float32 (flax's mixed
precision recipe); logits are returned in float32.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

from train import vit

# PyTorch's BatchNorm defaults (momentum 0.1 there is 0.9 here), which the
# ResNet papers' recipes were tuned with.
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5


def _conv(cin, cout, kernel, stride, rngs, dtype):
  return nnx.Conv(
      cin, cout, (kernel, kernel), strides=stride, padding="SAME",
      use_bias=False, kernel_init=nnx.initializers.he_normal(), dtype=dtype,
      rngs=rngs,
  )


def _bn(features, axis_name, rngs, dtype, zero_init=False):
  # Statistics are reduced and stored in float32 whatever `dtype` is.
  return nnx.BatchNorm(
      features, momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON,
      axis_name=axis_name, dtype=dtype, rngs=rngs,
      scale_init=nnx.initializers.zeros if zero_init else nnx.initializers.ones,
  )


class BasicBlock(nnx.Module):
  """Two 3x3 convolutions with a residual connection (ResNet-18/34, CIFAR)."""

  expansion = 1

  def __init__(self, cin, width, stride, *, axis_name, dtype, rngs):
    cout = width * self.expansion
    self.conv1 = _conv(cin, width, 3, stride, rngs, dtype)
    self.bn1 = _bn(width, axis_name, rngs, dtype)
    self.conv2 = _conv(width, cout, 3, 1, rngs, dtype)
    # Zero-initialised last scale: each block starts as the identity, which
    # makes deep nets train stably at high learning rates (Goyal et al. 2017).
    self.bn2 = _bn(cout, axis_name, rngs, dtype, zero_init=True)
    self.shortcut = _projection(cin, cout, stride, axis_name, rngs, dtype)

  def __call__(self, x, train: bool):
    y = nnx.relu(self.bn1(self.conv1(x), use_running_average=not train))
    y = self.bn2(self.conv2(y), use_running_average=not train)
    return nnx.relu(y + _apply_shortcut(self.shortcut, x, train))


class Bottleneck(nnx.Module):
  """1x1 reduce, 3x3, 1x1 expand by 4, with a residual (ResNet-50)."""

  expansion = 4

  def __init__(self, cin, width, stride, *, axis_name, dtype, rngs):
    cout = width * self.expansion
    self.conv1 = _conv(cin, width, 1, 1, rngs, dtype)
    self.bn1 = _bn(width, axis_name, rngs, dtype)
    # Stride on the 3x3 convolution (ResNet v1.5), as torchvision does.
    self.conv2 = _conv(width, width, 3, stride, rngs, dtype)
    self.bn2 = _bn(width, axis_name, rngs, dtype)
    self.conv3 = _conv(width, cout, 1, 1, rngs, dtype)
    self.bn3 = _bn(cout, axis_name, rngs, dtype, zero_init=True)
    self.shortcut = _projection(cin, cout, stride, axis_name, rngs, dtype)

  def __call__(self, x, train: bool):
    y = nnx.relu(self.bn1(self.conv1(x), use_running_average=not train))
    y = nnx.relu(self.bn2(self.conv2(y), use_running_average=not train))
    y = self.bn3(self.conv3(y), use_running_average=not train)
    return nnx.relu(y + _apply_shortcut(self.shortcut, x, train))


class PreActBlock(nnx.Module):
  """BN-ReLU-conv twice, with an identity path that nothing touches (He et
  al. 2016, "Identity Mappings in Deep Residual Networks")."""

  expansion = 1

  def __init__(self, cin, width, stride, *, axis_name, dtype, rngs):
    self.bn1 = _bn(cin, axis_name, rngs, dtype)
    self.conv1 = _conv(cin, width, 3, stride, rngs, dtype)
    self.bn2 = _bn(width, axis_name, rngs, dtype)
    self.conv2 = _conv(width, width, 3, 1, rngs, dtype)
    # Where the shape changes, a 1x1 conv of the pre-activated input (no BN),
    # as in the paper's and the MixUp/CutMix CIFAR code's PreActResNet.
    self.shortcut = (None if stride == 1 and cin == width
                     else _conv(cin, width, 1, stride, rngs, dtype))

  def __call__(self, x, train: bool):
    y = nnx.relu(self.bn1(x, use_running_average=not train))
    shortcut = x if self.shortcut is None else self.shortcut(y)
    y = self.conv1(y)
    y = self.conv2(nnx.relu(self.bn2(y, use_running_average=not train)))
    return y + shortcut


def _projection(cin, cout, stride, axis_name, rngs, dtype):
  """A 1x1 conv + BN shortcut where the shape changes (option B), else None."""
  if stride == 1 and cin == cout:
    return None
  return nnx.List([_conv(cin, cout, 1, stride, rngs, dtype),
                   _bn(cout, axis_name, rngs, dtype)])


def _apply_shortcut(shortcut, x, train):
  if shortcut is None:
    return x
  conv, bn = shortcut
  return bn(conv(x), use_running_average=not train)


class ResNet(nnx.Module):
  """A ResNet: stem, stages of residual blocks, global average pool, linear.

  Args:
    block: `BasicBlock`, `Bottleneck` or `PreActBlock`.
    stage_sizes: blocks per stage; each stage after the first halves the
      resolution and doubles the width.
    num_classes: outputs of the final linear layer.
    in_channels: image channels (1 for digits, 3 for RGB).
    width: channels of the first stage.
    small_inputs: a 3x3 stride-1 stem without max pooling, for images of
      about 64 pixels or less; otherwise the 7x7 stride-2 stem and 3x3 max
      pool of ImageNet.
    axis_name: the `pmap` axis over which BatchNorm averages its batch
      statistics; None under `jax.jit`, where the sharded batch is one array.
    dtype: the computation dtype (parameters are float32 regardless).
    rngs: the initialisation RNGs.
  """

  def __init__(
      self,
      block,
      stage_sizes,
      num_classes: int,
      *,
      in_channels: int,
      width: int,
      small_inputs: bool,
      axis_name: Optional[str] = None,
      dtype: jnp.dtype = jnp.float32,
      rngs: nnx.Rngs,
  ):
    self.small_inputs = small_inputs
    # Pre-activation nets normalise at the start of each block instead of
    # after the stem, and once more before the pool.
    self.preact = block is PreActBlock
    kernel, stride = (3, 1) if small_inputs else (7, 2)
    self.stem_conv = _conv(in_channels, width, kernel, stride, rngs, dtype)
    self.stem_bn = None if self.preact else _bn(width, axis_name, rngs, dtype)
    blocks = []
    cin = width
    for i, size in enumerate(stage_sizes):
      for j in range(size):
        stride = 2 if i > 0 and j == 0 else 1
        blocks.append(block(cin, width * 2**i, stride, axis_name=axis_name,
                            dtype=dtype, rngs=rngs))
        cin = width * 2**i * block.expansion
    self.blocks = nnx.List(blocks)
    self.final_bn = _bn(cin, axis_name, rngs, dtype) if self.preact else None
    self.head = nnx.Linear(cin, num_classes, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = self.stem_conv(x)
    if not self.preact:
      x = nnx.relu(self.stem_bn(x, use_running_average=not train))
    if not self.small_inputs:
      x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
    for block in self.blocks:
      x = block(x, train)
    if self.preact:
      x = nnx.relu(self.final_bn(x, use_running_average=not train))
    # The softmax and loss run in float32 even under bf16 compute.
    return self.head(jnp.mean(x, axis=(1, 2))).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class _Spec:
  block: type
  stage_sizes: tuple[int, ...]
  width: int


# He et al. 2016: CIFAR nets have 3 stages of n blocks (depth 6n + 2) and base
# width 16; ImageNet nets have 4 stages and base width 64.
MODELS = {
    "tiny": _Spec(BasicBlock, (1, 1, 1), 4),
    "resnet20": _Spec(BasicBlock, (3, 3, 3), 16),
    "resnet32": _Spec(BasicBlock, (5, 5, 5), 16),
    "resnet56": _Spec(BasicBlock, (9, 9, 9), 16),
    "resnet18": _Spec(BasicBlock, (2, 2, 2, 2), 64),
    "resnet34": _Spec(BasicBlock, (3, 4, 6, 3), 64),
    "resnet50": _Spec(Bottleneck, (3, 4, 6, 3), 64),
    "preact_resnet18": _Spec(PreActBlock, (2, 2, 2, 2), 64),
    **vit.PRESETS,
}


def family(name: str) -> str:
  """'vit' or 'resnet': which recipe (optimiser, schedule) a model trains
  with by default."""
  return "vit" if name in vit.PRESETS else "resnet"


def create_model(
    name: str,
    num_classes: int,
    *,
    in_channels: int,
    image_size: int,
    width: Optional[int] = None,
    axis_name: Optional[str] = None,
    dtype: str = "float32",
    seed: int = 0,
) -> nnx.Module:
  """Builds a ResNet or a ViT by name (see `MODELS`).

  Args:
    name: one of `MODELS`.
    num_classes: number of classes.
    in_channels: image channels.
    image_size: the smaller image side; ImageNet-style nets use the small
      3x3 stem below 64 pixels, as is usual for CIFAR. A ViT takes square
      images of this side.
    width: first-stage channels (a ViT's token width); None for the
      model's standard width.
    axis_name: BatchNorm's `pmap` axis, or None (a ViT has no BatchNorm).
    dtype: the computation dtype, "float32" or "bfloat16".
    seed: the initialisation seed.

  Returns:
    The model, with parameters initialised.
  """
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}.")
  if family(name) == "vit":
    return vit.create(name, num_classes, in_channels=in_channels,
                      image_size=image_size, width=width, dtype=dtype,
                      seed=seed)
  spec = MODELS[name]
  return ResNet(
      spec.block, spec.stage_sizes, num_classes, in_channels=in_channels,
      width=width or spec.width, small_inputs=image_size <= 64,
      axis_name=axis_name, dtype=jnp.dtype(dtype), rngs=nnx.Rngs(seed),
  )
