"""A trained state evaluated image by image: clean and occluded test
accuracy (`occlusion`'s boxes), and each image's correctness on the
evaluation pool, stored bit-packed in the run's record."""

from __future__ import annotations

import base64
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from train import data
from train import models
from train import occlusion
from train import steps
from train.config import Config

FRACTIONS = (0.25, 0.5)


# The evaluation conditions, in table order.
CONDITIONS = ("clean",) + tuple(
    f"{kind}{round(f * 100)}" for kind in occlusion.KINDS for f in FRACTIONS)


class Classifier:
  """A trained state's per-image correctness, compiled once for all calls.

  Args:
    cfg: the run's configuration (model and width).
    state: the final training state (`train_and_evaluate(...)["state"]`).
    ds: the dataset the run trained on (its mean and std normalise).
    fill: occlusion fill: "mean" (zero in normalised space) or "black" (raw
      zero).
    batch_size: evaluation batch size; the last batch is padded.
  """

  def __init__(self, cfg: Config, state: Any, ds: data.Dataset,
               fill: str = "mean", batch_size: int = 1000):
    height, width, channels = ds.image_shape
    model = models.create_model(
        cfg.model, ds.num_classes, in_channels=channels,
        image_size=min(height, width), width=cfg.width, dtype=cfg.dtype,
        seed=cfg.seed)
    graphdef, _, _ = nnx.split(model, nnx.Param, nnx.BatchStat)
    logits_fn = steps.make_logits_fn(graphdef, ds.mean, ds.std)
    fill_value = ds.mean if fill == "mean" else np.zeros_like(ds.mean)

    @jax.jit
    def correct(state, images, labels, boxes):
      logits = logits_fn(state, occlusion.occlude(images, boxes, fill_value))
      return jnp.argmax(logits, -1) == labels

    self._correct = correct
    self._state = jax.device_put(
        {k: state[k] for k in ("params", "batch_stats")})
    self.batch_size = batch_size

  def correct(self, x: np.ndarray, y: np.ndarray,
              boxes: Optional[np.ndarray] = None) -> np.ndarray:
    """bool `[n]`: is each image of `x` `[n, H, W, C]` (uint8) classified as
    its label `y` `[n]`, with `boxes` int32 `[n, 4]` (top, left, bottom,
    right) occluded, or clean if None."""
    n = len(x)
    if boxes is None:
      boxes = np.zeros((n, 4), np.int32)
    out = [np.asarray(self._correct(self._state, xb, yb, bb))[mask]
           for (xb, yb, mask), (bb, _, _) in zip(
               data.eval_batches(x, y, self.batch_size),
               data.eval_batches(boxes, np.zeros(n, np.int32),
                                 self.batch_size))]
    result = np.concatenate(out) if out else np.zeros(0, bool)
    if len(result) != n:  # not an assert: it must hold under python -O too
      raise RuntimeError(f"evaluated {len(result)} images, expected {n}.")
    return result


def evaluate_occlusion(cfg: Config, state: Any, ds: data.Dataset,
                       fill: str = "mean", seed: int = 0,
                       batch_size: int = 1000,
                       conditions: Sequence[str] = CONDITIONS
                       ) -> dict[str, float]:
  """Test accuracy of a trained state on clean and occluded test images.

  Args:
    cfg: the run's configuration (model and width).
    state: the final training state (`train_and_evaluate(...)["state"]`).
    ds: the dataset the run trained on (its mean and std normalise).
    fill: "mean" (zero in normalised space) or "black" (raw zero).
    seed: seed of the random boxes.
    batch_size: evaluation batch size.
    conditions: which of `CONDITIONS` to evaluate.

  Returns:
    `{condition: accuracy}`.
  """
  n, height, width, _ = ds.x_test.shape
  classifier = Classifier(cfg, state, ds, fill, batch_size)
  results = {}
  for condition in conditions:
    boxes = None
    if condition != "clean":
      kind, percent = condition[:-2], int(condition[-2:])
      boxes = occlusion.make_boxes(kind, percent / 100, n, height, width, seed)
    results[condition] = int(classifier.correct(ds.x_test, ds.y_test,
                                                boxes).sum()) / n
  return results


def pack_bits(correct: np.ndarray) -> dict[str, Any]:
  """A bool vector as JSON: its length and `np.packbits` bytes in base64."""
  return dict(n=int(len(correct)), packbits_base64=base64.b64encode(
      np.packbits(correct).tobytes()).decode())


def unpack_bits(packed: dict[str, Any]) -> np.ndarray:
  """The bool vector that `pack_bits` stored."""
  raw = np.frombuffer(base64.b64decode(packed["packbits_base64"]), np.uint8)
  return np.unpackbits(raw, count=packed["n"]).astype(bool)


def evaluate_pool(cfg: Config, state: Any, ds: data.Dataset,
                  pool_path: str) -> dict[str, Any]:
  """Clean accuracy on the evaluation pool (`prepare_pool`) and on the test
  set, with each image's correctness, bit-packed (`pack_bits`)."""
  with np.load(pool_path) as f:
    x, y, sha = f["x"], f["y"], str(f["files_sha256"])
  classifier = Classifier(cfg, state, ds)
  pool = classifier.correct(x, y)
  test = classifier.correct(ds.x_test, ds.y_test)
  return dict(accuracy=int(pool.sum()) / len(pool), n=len(pool),
              files_sha256=sha, test_accuracy=int(test.sum()) / len(test),
              correct=dict(pool=pack_bits(pool), test=pack_bits(test)))
