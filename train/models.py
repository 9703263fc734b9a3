"""Flax NNX ResNets: CIFAR-style ResNet-20/32/56 and ImageNet-style 18/34/50.

All models take NHWC float images and a `train` flag that switches BatchNorm
between batch statistics (train) and running averages (eval).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

# PyTorch's BatchNorm defaults (momentum 0.1 there is 0.9 here), which the
# ResNet papers' recipes were tuned with.
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5


def _conv(cin, cout, kernel, stride, rngs):
  return nnx.Conv(
      cin, cout, (kernel, kernel), strides=stride, padding="SAME",
      use_bias=False, kernel_init=nnx.initializers.he_normal(), rngs=rngs,
  )


def _bn(features, axis_name, rngs, zero_init=False):
  return nnx.BatchNorm(
      features, momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON,
      axis_name=axis_name, rngs=rngs,
      scale_init=nnx.initializers.zeros if zero_init else nnx.initializers.ones,
  )


class BasicBlock(nnx.Module):
  """Two 3x3 convolutions with a residual connection (ResNet-18/34, CIFAR)."""

  expansion = 1

  def __init__(self, cin, width, stride, *, axis_name, rngs):
    cout = width * self.expansion
    self.conv1 = _conv(cin, width, 3, stride, rngs)
    self.bn1 = _bn(width, axis_name, rngs)
    self.conv2 = _conv(width, cout, 3, 1, rngs)
    # Zero-initialised last scale: each block starts as the identity, which
    # makes deep nets train stably at high learning rates (Goyal et al. 2017).
    self.bn2 = _bn(cout, axis_name, rngs, zero_init=True)
    self.shortcut = _projection(cin, cout, stride, axis_name, rngs)

  def __call__(self, x, train: bool):
    y = nnx.relu(self.bn1(self.conv1(x), use_running_average=not train))
    y = self.bn2(self.conv2(y), use_running_average=not train)
    return nnx.relu(y + _apply_shortcut(self.shortcut, x, train))


class Bottleneck(nnx.Module):
  """1x1 reduce, 3x3, 1x1 expand by 4, with a residual (ResNet-50)."""

  expansion = 4

  def __init__(self, cin, width, stride, *, axis_name, rngs):
    cout = width * self.expansion
    self.conv1 = _conv(cin, width, 1, 1, rngs)
    self.bn1 = _bn(width, axis_name, rngs)
    # Stride on the 3x3 convolution (ResNet v1.5), as torchvision does.
    self.conv2 = _conv(width, width, 3, stride, rngs)
    self.bn2 = _bn(width, axis_name, rngs)
    self.conv3 = _conv(width, cout, 1, 1, rngs)
    self.bn3 = _bn(cout, axis_name, rngs, zero_init=True)
    self.shortcut = _projection(cin, cout, stride, axis_name, rngs)

  def __call__(self, x, train: bool):
    y = nnx.relu(self.bn1(self.conv1(x), use_running_average=not train))
    y = nnx.relu(self.bn2(self.conv2(y), use_running_average=not train))
    y = self.bn3(self.conv3(y), use_running_average=not train)
    return nnx.relu(y + _apply_shortcut(self.shortcut, x, train))


def _projection(cin, cout, stride, axis_name, rngs):
  """A 1x1 conv + BN shortcut where the shape changes (option B), else None."""
  if stride == 1 and cin == cout:
    return None
  return nnx.List([_conv(cin, cout, 1, stride, rngs), _bn(cout, axis_name, rngs)])


def _apply_shortcut(shortcut, x, train):
  if shortcut is None:
    return x
  conv, bn = shortcut
  return bn(conv(x), use_running_average=not train)


class ResNet(nnx.Module):
  """A ResNet: stem, stages of residual blocks, global average pool, linear.

  Args:
    block: `BasicBlock` or `Bottleneck`.
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
      rngs: nnx.Rngs,
  ):
    self.small_inputs = small_inputs
    kernel, stride = (3, 1) if small_inputs else (7, 2)
    self.stem_conv = _conv(in_channels, width, kernel, stride, rngs)
    self.stem_bn = _bn(width, axis_name, rngs)
    blocks = []
    cin = width
    for i, size in enumerate(stage_sizes):
      for j in range(size):
        stride = 2 if i > 0 and j == 0 else 1
        blocks.append(
            block(cin, width * 2**i, stride, axis_name=axis_name, rngs=rngs)
        )
        cin = width * 2**i * block.expansion
    self.blocks = nnx.List(blocks)
    self.head = nnx.Linear(cin, num_classes, rngs=rngs)

  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = self.stem_bn(self.stem_conv(x), use_running_average=not train)
    x = nnx.relu(x)
    if not self.small_inputs:
      x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
    for block in self.blocks:
      x = block(x, train)
    return self.head(jnp.mean(x, axis=(1, 2)))


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
}


def create_model(
    name: str,
    num_classes: int,
    *,
    in_channels: int,
    image_size: int,
    width: Optional[int] = None,
    axis_name: Optional[str] = None,
    seed: int = 0,
) -> ResNet:
  """Builds a ResNet by name (see `MODELS`).

  Args:
    name: one of `MODELS`.
    num_classes: number of classes.
    in_channels: image channels.
    image_size: the smaller image side; ImageNet-style nets use the small
      3x3 stem below 64 pixels, as is usual for CIFAR.
    width: first-stage channels; None for the model's standard width.
    axis_name: BatchNorm's `pmap` axis, or None.
    seed: the initialisation seed.

  Returns:
    The model, with parameters initialised.
  """
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}.")
  spec = MODELS[name]
  return ResNet(
      spec.block, spec.stage_sizes, num_classes, in_channels=in_channels,
      width=width or spec.width, small_inputs=image_size <= 64,
      axis_name=axis_name, rngs=nnx.Rngs(seed),
  )
