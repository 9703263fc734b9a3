"""The loss section: k-way labels and fused losses against dense targets.

For each batch B, number of classes C and loss (softmax or sigmoid
cross-entropy), two jitted functions do what a user's step does with a
MixUp draw and integer labels, with label smoothing 0.1:

- dense: `mix_labels` builds the `[B, C]` target inside the function, then
  optax's loss (`softmax_cross_entropy`, `sigmoid_binary_cross_entropy`
  summed over classes);
- k-way: `mix_labels_kway`, then `softmax_cross_entropy_kway` or
  `sigmoid_binary_cross_entropy_kway`.

Two sets of rows: `logits`, the mean loss and its gradient with respect to
the logits alone; `head`, the same behind `logits = features @ W` with
D = 768, gradients with respect to the features and W (the head's backward
included). The ratio is k-way time over dense time, timed in alternation;
memory is `memory_analysis()`'s argument + temp + output bytes of each
compiled function.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

import cutmix_jax as cm
from bench import timing

BATCHES = (256, 1024)
CLASSES = (1000, 21843, 100000)
QUICK_BATCHES, QUICK_CLASSES = (16,), (1000,)
LOSSES = ("softmax", "sigmoid")
SETS = ("logits", "head")
FEATURES = 768
SMOOTHING = 0.1


def _losses(name: str) -> tuple[Callable, Callable]:
  """(k-way loss, dense loss), each `(logits, labels) -> [B]`."""
  import optax  # pylint: disable=g-import-not-at-top

  if name == "softmax":
    return cm.softmax_cross_entropy_kway, optax.softmax_cross_entropy
  return (cm.sigmoid_binary_cross_entropy_kway,
          lambda z, t: optax.sigmoid_binary_cross_entropy(z, t).sum(-1))


def make_fns(loss: str, which: str, num_classes: int) -> dict[str, Callable]:
  """The jitted `(inputs, labels, draw) -> (loss, grads)` of each path."""
  kway_loss, dense_loss = _losses(loss)

  def kway_targets(labels, draw):
    return cm.mix_labels_kway(draw, labels, num_classes=num_classes,
                              label_smoothing=SMOOTHING)

  def dense_targets(labels, draw):
    return cm.mix_labels(draw, labels, num_classes=num_classes,
                         label_smoothing=SMOOTHING)

  def build(loss_fn, targets_fn):
    if which == "logits":
      def fn(logits, labels, draw):
        targets = targets_fn(labels, draw)
        return jax.value_and_grad(
            lambda z: loss_fn(z, targets).mean())(logits)
    else:
      def fn(head, labels, draw):
        targets = targets_fn(labels, draw)
        return jax.value_and_grad(
            lambda h: loss_fn(h[0] @ h[1], targets).mean())(head)
    return jax.jit(fn)

  return {"dense": build(dense_loss, dense_targets),
          "kway": build(kway_loss, kway_targets)}


def make_inputs(which: str, batch: int, num_classes: int, seed: int = 0):
  """Random logits (or features and W), integer labels and a MixUp draw."""
  rng = np.random.default_rng(seed)
  labels = jnp.asarray(rng.integers(0, num_classes, batch), jnp.int32)
  draw = jax.jit(lambda k: cm.sample_mixup(k, batch, mode="elem"))(
      jax.random.key(seed))
  if which == "logits":
    inputs = jnp.asarray(rng.normal(size=(batch, num_classes)), jnp.float32)
  else:
    inputs = (
        jnp.asarray(rng.normal(size=(batch, FEATURES)), jnp.float32),
        jnp.asarray(rng.normal(size=(FEATURES, num_classes)) / FEATURES**0.5,
                    jnp.float32))
  return inputs, labels, draw


def memory_bytes(compiled) -> dict[str, int]:
  m = compiled.memory_analysis()
  out = {"argument": m.argument_size_in_bytes,
         "temp": m.temp_size_in_bytes,
         "output": m.output_size_in_bytes}
  out["total"] = sum(out.values())
  return out


def case(args, loss: str, which: str, batch: int, num_classes: int) -> dict:
  """One row: k-way against dense for one loss, set, B and C."""
  fns = make_fns(loss, which, num_classes)
  inputs, labels, draw = make_inputs(which, batch, num_classes)
  compiled = {name: fn.lower(inputs, labels, draw).compile()
              for name, fn in fns.items()}
  memory = {name: memory_bytes(c) for name, c in compiled.items()}
  calls = {name: (lambda c=c: c(inputs, labels, draw))
           for name, c in compiled.items()}
  # A compiled function has no first-call compile left: do not report one.
  dense, timed, failed = timing.interleaved(
      calls["dense"], {"kway": calls["kway"]}, reps=args.reps,
      target_s=args.target_ms / 1e3, warm=False)
  if failed:
    raise RuntimeError(failed["kway"])
  kway = timed["kway"].summary()
  dense_ms = dense.summary()["median_ms"]
  saved = memory["dense"]["total"] - memory["kway"]["total"]
  one_array = batch * num_classes * 4
  row = timing.row(
      "loss", f"{loss} {which}", "kway/dense", "float32",
      f"{batch}x{num_classes}", kway,
      f"memory dense {memory['dense']['total'] / 2**20:.1f} MiB, k-way "
      f"{memory['kway']['total'] / 2**20:.1f} MiB")
  row.update(
      loss=loss, set=which, batch=batch, classes=num_classes,
      dense_ms=dense_ms, kway_ms=kway["median_ms"],
      dense_bytes=memory["dense"], kway_bytes=memory["kway"],
      saved_bytes=saved, saved_arrays=saved / one_array,
      memory_goal=(saved >= 2 * one_array) if num_classes >= 21843 else None,
      time_goal=(kway["ratio"] <= 1.0) if which == "logits" else None)
  return row


def section(args, log) -> tuple[list, list]:
  """Every (B, C, loss, set) row; skipped, with the reason, without optax."""
  try:
    import optax  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    return [], [f"loss section: {type(e).__name__}: {e}"]
  batches = QUICK_BATCHES if args.quick else args.loss_batches
  classes = QUICK_CLASSES if args.quick else args.loss_classes
  rows, skipped = [], []
  for which in SETS:
    for batch in batches:
      for num_classes in classes:
        for loss in LOSSES:
          log(f"  loss: {loss} {which} B={batch} C={num_classes} ...")
          try:
            rows.append(case(args, loss, which, batch, num_classes))
          except Exception as e:  # pylint: disable=broad-except
            skipped.append(f"loss {loss} {which} {batch}x{num_classes}: "
                           f"{type(e).__name__}: {str(e)[:200]}")
  return rows, skipped


def _mib(n: float) -> str:
  return f"{n / 2**20:,.1f}"


def _goal(value) -> str:
  return "-" if value is None else ("yes" if value else "NO")


def table_lines(rows: list[dict]) -> list[str]:
  """The section's own table, for results.md (and RESULTS.md)."""
  rows = [r for r in rows if r.get("section") == "loss"]
  if not rows:
    return []
  lines = [
      "| set | loss | B | C | dense ms | k-way ms | k-way / dense | dense MiB "
      "| k-way MiB | saved, in B·C·4 | memory goal | time goal |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(
        f"| {r['set']} | {r['loss']} | {r['batch']} | {r['classes']:,} | "
        f"{r['dense_ms']:.2f} | {r['kway_ms']:.2f} | {r['ratio']:.2f} | "
        f"{_mib(r['dense_bytes']['total'])} | "
        f"{_mib(r['kway_bytes']['total'])} | {r['saved_arrays']:.2f} | "
        f"{_goal(r['memory_goal'])} | {_goal(r['time_goal'])} |")
  return lines
