"""Roofline: the memory bandwidth each op reaches, with dispatch amortised.

One call of an op on a GPU is a few kernel launches, so timing single calls
(the rest of `python -m bench`) measures dispatch. Here each op is applied
`n` times inside ONE jitted `lax.fori_loop`, each iteration's output images
being the next iteration's input and its key `fold_in(key, i)`, so XLA can
neither drop nor hoist an iteration. The trip count `n` is a traced argument:
the loop is a real while loop that XLA cannot unroll and simplify across
iterations (a reversal followed by a reversal would otherwise cancel), and
one compile serves every `n`. A copy (`lax.rev` along the batch axis, to a
fresh buffer) is timed the same way, in alternation with each op.

Achieved bandwidth is `passes x batch bytes x n / time`, with each op's
stated pass count (`PASSES`): a copy reads the batch once and writes it once
(2); a select or a blend of each image with its partner reads two images
and writes one (3); Cutout reads one and writes one (2). The targets (`[B,
classes]` floats, a few KB) are not counted and, being unused by the loop,
not computed. `% copy` is an op's bandwidth over the copy's, same shape and
dtype, timed just before it. The spec-sheet HBM bandwidth of known devices
(`SPEC_HBM`) puts the copy itself in context.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

import cutmix_jax as cm

OPS = ("cutmix", "mixup", "cutout", "mix", "resizemix", "fmix", "multibox")
MODES = ("batch", "elem")
DTYPES = ("uint8", "bfloat16", "float32")
# Accelerators: CIFAR size (cache-resident: a floor for small batches) and
# the largest the issue asks for, 154-617 MB, well above a 50-60 MB L2 once
# the input and output buffers are counted.
SHAPES = ("256x32x32x3", "1024x224x224x3")
# CPU (2 cores): CIFAR size and a moderate 224 size that runs in minutes.
CPU_SHAPES = ("256x32x32x3", "64x224x224x3")
QUICK_SHAPES = ("8x8x8x3",)
MULTIBOX_BOXES = 3
# The longest a timed call may last: fewer iterations for slower ops.
CALL_S = 1.0

# Bytes moved per batch byte: reads plus writes of the images.
PASSES = {
    "copy": 2, "cutmix": 3, "mixup": 3, "mix": 3, "cutout": 2,
    "resizemix": 3, "fmix": 3, "multibox": 3,
}
# Held to no bandwidth goal: their masks need a sort and an FFT (FMix) or a
# union of boxes per pixel (multi-box), which are compute, not memory.
NO_GOAL = ("fmix", "multibox")

# Spec-sheet HBM bandwidth by JAX `device_kind` (first match of a substring,
# so the more specific names come first). TB/s, and the source.
_H100 = ("NVIDIA H100 Tensor Core GPU datasheet, "
         "https://www.nvidia.com/en-us/data-center/h100/")
_H200 = ("NVIDIA H200 Tensor Core GPU datasheet, "
         "https://www.nvidia.com/en-us/data-center/h200/")
_A100 = ("NVIDIA A100 Tensor Core GPU datasheet, "
         "https://www.nvidia.com/en-us/data-center/a100/")
SPEC_HBM = (
    ("H200", 4.8, "H200 SXM/NVL: 4.8 TB/s; " + _H200),
    ("H100 PCIe", 2.0, "H100 PCIe: 2 TB/s; " + _H100),
    ("H100 NVL", 3.9, "H100 NVL: 3.9 TB/s; " + _H100),
    ("H100", 3.35, "H100 SXM: 3.35 TB/s; " + _H100),
    ("A100-SXM4-80GB", 2.039, "A100 80GB SXM: 2,039 GB/s; " + _A100),
    ("A100 80GB PCIe", 1.935, "A100 80GB PCIe: 1,935 GB/s; " + _A100),
    ("A100", 1.555, "A100 40GB: 1,555 GB/s; " + _A100),
)
# The goals (benchmark output, never tests), on these devices only.
GOAL_DEVICES = ("H100", "H200")
GOAL_COPY_FRACTION = 0.8
GOAL_COPY_OPS = ("cutmix", "mixup", "mix")
GOAL_COPY_DTYPES = ("uint8", "bfloat16")
GOAL_MIX_IMG_S = 7e6
GOAL_MIX_SHAPE = (1024, 224, 224, 3)


def spec_hbm(device_kind: str) -> tuple[Optional[float], str]:
  """`(TB/s, source)` for a device kind, or `(None, why)`."""
  for pattern, tbps, source in SPEC_HBM:
    if pattern.lower() in device_kind.lower():
      return tbps, source
  return None, f"no spec-sheet HBM figure recorded for {device_kind!r}"


def add_args(p: argparse.ArgumentParser) -> None:
  """The roofline section's flags, on `python -m bench`'s parser."""
  g = p.add_argument_group("roofline (bandwidth with dispatch amortised)")
  g.add_argument("--only-roofline", action="store_true",
                 help="run only the roofline section")
  g.add_argument("--no-roofline", action="store_true",
                 help="skip the roofline section")
  g.add_argument("--roofline-ops", nargs="+", default=list(OPS), choices=OPS)
  g.add_argument("--roofline-modes", nargs="+", default=list(MODES),
                 choices=MODES)
  g.add_argument("--roofline-dtypes", nargs="+", default=None, choices=DTYPES,
                 help="default: uint8 bfloat16 float32 (uint8 float32 with "
                 "--quick)")
  g.add_argument("--roofline-shapes", nargs="+", default=None,
                 help=f"BxHxWxC (default {' '.join(SHAPES)} on an "
                 f"accelerator, {' '.join(CPU_SHAPES)} on CPU, "
                 f"{' '.join(QUICK_SHAPES)} with --quick)")
  g.add_argument("--roofline-iters", type=int, default=None,
                 help="applications per timed call, inside one loop "
                 "(default 100; 3 with --quick)")
  g.add_argument("--roofline-call-s", type=float, default=CALL_S,
                 help="an op slower than this over --roofline-iters "
                 "applications gets fewer (its row says how many)")
  g.add_argument("--roofline-reps", type=int, default=None,
                 help="timed calls per row, each after a timed copy "
                 "(default 5; 2 with --quick)")
  g.add_argument("--roofline-budget-s", type=float, default=None,
                 help="stop starting new rows after this many seconds "
                 "(the rows done are reported; default: no limit)")


def resolve_args(args: argparse.Namespace) -> None:
  """Fills the roofline defaults that depend on --quick and the backend."""
  if args.roofline_dtypes is None:
    args.roofline_dtypes = ["uint8", "float32"] if args.quick else list(DTYPES)
  if args.roofline_shapes is None:
    args.roofline_shapes = list(
        QUICK_SHAPES if args.quick else
        CPU_SHAPES if jax.default_backend() == "cpu" else SHAPES)
  if args.roofline_iters is None:
    args.roofline_iters = 3 if args.quick else 100
  if args.roofline_reps is None:
    args.roofline_reps = 2 if args.quick else 5
  if args.roofline_iters < 1 or args.roofline_reps < 1:
    raise SystemExit("--roofline-iters and --roofline-reps must be >= 1")


def op_images(op: str, mode: str, shape, *, num_classes: int = 10,
              pairing: str = "flip") -> Callable:
  """`(key, images, labels) -> images`: one application of `op`."""
  batch, height, width = shape[:3]
  common = dict(num_classes=num_classes, mode=mode, pairing=pairing)
  if op == "copy":
    return lambda k, x, y: lax.rev(x, (0,))
  if op == "cutmix":
    return lambda k, x, y: cm.cutmix(k, x, y, **common)[0]
  if op == "mixup":
    return lambda k, x, y: cm.mixup(k, x, y, **common)[0]
  if op == "mix":
    return lambda k, x, y: cm.mix(k, x, y, **common)[0]
  if op == "resizemix":
    return lambda k, x, y: cm.resizemix(k, x, y, **common)[0]
  if op == "cutout":
    return lambda k, x, y: cm.cutout(k, x, mode=mode)
  if op == "fmix":
    return lambda k, x, y: cm.apply_params(cm.sample_fmix(
        k, batch, height, width, mode=mode, pairing=pairing), x)
  if op == "multibox":
    return lambda k, x, y: cm.apply_params(cm.sample_multibox(
        k, batch, height, width, n_boxes=MULTIBOX_BOXES, mode=mode,
        pairing=pairing), x)
  raise ValueError(f"unknown op {op!r}; expected one of {('copy',) + OPS}")


def looped(fn: Callable) -> Callable:
  """A jitted `(key, images, labels, n) -> images`: `fn` applied `n` times.

  Iteration `i` draws with `fold_in(key, i)` and takes iteration `i - 1`'s
  images; `n` is traced, so XLA compiles a while loop it cannot unroll.
  """

  def run(key, x, y, n):
    body = lambda i, x: fn(jax.random.fold_in(key, i), x, y)
    return lax.fori_loop(0, n, body, x)

  return jax.jit(run)


def _time_call(f, *args) -> float:
  start = time.perf_counter()
  jax.block_until_ready(f(*args))
  return time.perf_counter() - start


def _goal(op: str, mode: str, dtype: str, shape, device_kind: str,
          fraction: float, img_s: float) -> tuple[str, str]:
  """`(goal text, met)`: met is yes/no on the goal's devices, else '-'."""
  on_goal_device = any(d in device_kind for d in GOAL_DEVICES)
  if op in NO_GOAL:
    return "none (compute-bound mask)", "-"
  goals, met = [], []
  if mode == "elem" and op in GOAL_COPY_OPS and dtype in GOAL_COPY_DTYPES:
    goals.append(f">= {GOAL_COPY_FRACTION:.0%} copy on H100/H200")
    met.append(fraction >= GOAL_COPY_FRACTION)
  if (op == "mix" and mode == "elem" and dtype == "uint8"
      and tuple(shape) == GOAL_MIX_SHAPE):
    goals.append(f">= {GOAL_MIX_IMG_S / 1e6:.0f} M img/s on H200")
    met.append(img_s >= GOAL_MIX_IMG_S if "H200" in device_kind else None)
  if not goals:
    return "-", "-"
  if not on_goal_device:
    return "; ".join(goals), "- (not an H100/H200)"
  return "; ".join(goals), "; ".join(
      "-" if m is None else ("yes" if m else "NO") for m in met)


def _row(op, mode, dtype, shape, nbytes, n, reps, per_iter, fraction,
         device_kind, compile_s) -> dict:
  img_s = shape[0] / per_iter
  goal, met = (("the denominator", "-") if op == "copy" else
               _goal(op, mode, dtype, shape, device_kind, fraction, img_s))
  return dict(
      section="roofline", name=op, mode=mode, dtype=dtype,
      shape="x".join(map(str, shape)), batch_mb=nbytes / 1e6,
      passes=PASSES[op], iters=n, reps=reps, ms_per_iter=per_iter * 1e3,
      gb_s=PASSES[op] * nbytes / per_iter / 1e9, copy_fraction=fraction,
      img_s=img_s, compile_s=compile_s, goal=goal, met=met)


def section(args, log) -> tuple[list[dict], list[str]]:
  """Roofline rows: per shape and dtype, the copy, then every op x mode."""
  from bench import run as run_lib  # pylint: disable=g-import-not-at-top

  device_kind = jax.devices()[0].device_kind
  n, reps = args.roofline_iters, args.roofline_reps
  call_s = getattr(args, "roofline_call_s", CALL_S)
  start = time.perf_counter()
  rows, skipped = [], []
  key = jax.random.key(0)
  shapes = [run_lib.parse_shape(s) if isinstance(s, str) else tuple(s)
            for s in args.roofline_shapes]
  for shape in shapes:
    for dtype in args.roofline_dtypes:
      x = jax.device_put(run_lib.make_images(shape, dtype))
      y = jax.device_put(np.arange(shape[0], dtype=np.int32) % 10)
      nbytes = x.size * x.dtype.itemsize
      copy = looped(op_images("copy", "-", shape))
      _time_call(copy, key, x, y, 1)  # compile
      cases = [(op, mode) for op in args.roofline_ops
               for mode in args.roofline_modes]
      case_rows, copy_times = [], []
      for op, mode in cases:
        label = f"{'x'.join(map(str, shape))} {dtype} {op} {mode}"
        if (args.roofline_budget_s is not None
            and time.perf_counter() - start > args.roofline_budget_s):
          skipped.append(f"roofline {label}: over the "
                         f"{args.roofline_budget_s:.0f} s budget")
          continue
        log(f"  roofline {label} x{n} ...")
        f = looped(op_images(op, mode, shape))
        try:
          compile_s = _time_call(f, key, x, y, 1)
        except Exception as e:  # pylint: disable=broad-except
          skipped.append(f"roofline {label} failed: {type(e).__name__}: "
                         f"{str(e).splitlines()[0][:160]}")
          continue
        # A compute-bound op (FMix's per-sample sort) gets fewer iterations,
        # so that no call outlasts --roofline-call-s.
        one = min(_time_call(f, key, x, y, 1) for _ in range(2))
        n_op = max(1, min(n, int(call_s / one)))
        t_op, t_copy = [], []
        for _ in range(reps):
          t_copy.append(_time_call(copy, key, x, y, n_op) / n_op)
          t_op.append(_time_call(f, key, x, y, n_op) / n_op)
        copy_times += t_copy
        ratio = statistics.median(o / c for o, c in zip(t_op, t_copy))
        case_rows.append(_row(op, mode, dtype, shape, nbytes, n_op, reps,
                              statistics.median(t_op),
                              PASSES[op] / PASSES["copy"] / ratio,
                              device_kind, compile_s))
      if copy_times:
        rows.append(_row("copy", "-", dtype, shape, nbytes, n,
                         len(copy_times), statistics.median(copy_times),
                         1.0, device_kind, None))
      rows += case_rows
      del x
  return rows, skipped


def summary(rows: list[dict]) -> dict:
  """The device, its spec-sheet bandwidth and the fastest copy measured."""
  kind = jax.devices()[0].device_kind
  tbps, source = spec_hbm(kind)
  copies = [r for r in rows if r["name"] == "copy"]
  best = max(copies, key=lambda r: r["gb_s"]) if copies else None
  return dict(
      device_kind=kind, backend=jax.default_backend(), spec_hbm_tb_s=tbps,
      spec_source=source,
      best_copy_gb_s=best["gb_s"] if best else None,
      best_copy_case=f"{best['shape']} {best['dtype']}" if best else None,
      best_copy_of_spec=(best["gb_s"] / (tbps * 1e3)
                         if best and tbps else None))


COLUMNS = (
    ("name", "op", "{}"), ("mode", "mode", "{}"), ("dtype", "dtype", "{}"),
    ("shape", "shape", "{}"), ("batch_mb", "batch MB", "{:.2f}"),
    ("passes", "passes", "{}"), ("iters", "iters", "{}"),
    ("ms_per_iter", "ms / iter", "{:.3f}"), ("gb_s", "GB/s", "{:.1f}"),
    ("copy_fraction", "% copy", "{:.0%}"), ("img_s", "img/s", "{:,.0f}"),
    ("goal", "goal", "{}"), ("met", "met", "{}"),
)


def markdown(rows: list[dict], info: dict) -> list[str]:
  """The roofline section of results.md (and of the printed report)."""
  spec = (f"{info['spec_hbm_tb_s']} TB/s ({info['spec_source']})"
          if info["spec_hbm_tb_s"] else f"none ({info['spec_source']})")
  lines = [
      "## Roofline: bandwidth with dispatch amortised",
      "",
      f"Device: {info['device_kind']} ({info['backend']}). Spec-sheet HBM "
      f"bandwidth: {spec}.",
  ]
  if info["best_copy_gb_s"]:
    line = (f"Fastest copy measured: {info['best_copy_gb_s']:.1f} GB/s "
            f"({info['best_copy_case']})")
    if info["best_copy_of_spec"]:
      line += f", {info['best_copy_of_spec']:.0%} of the spec sheet"
    lines.append(line + ".")
  lines += [
      "",
      "Each row: `iters` applications inside one jitted `fori_loop` (each "
      "iteration's output is the next one's input, its key "
      "`fold_in(key, i)`; fewer for an op that would take over "
      f"{CALL_S:.0f} s a call), median of the timed calls. GB/s = passes x "
      "batch bytes / time per application (copy 2: read, write; select or "
      "blend with the partner 3: read two, write one; Cutout 2). `% copy`: "
      "the op's GB/s over the copy's of the same shape and dtype, timed "
      "just before it (median of per-call ratios). Goals (H100/H200 only): "
      f">= {GOAL_COPY_FRACTION:.0%} of the copy for per-sample (elem) "
      "cutmix, mixup and mix at uint8 and bf16; >= 7 M img/s for per-sample "
      "mix at uint8 1024x224x224x3 on an H200. FMix and multi-box "
      f"({MULTIBOX_BOXES} boxes) have no goal: their masks are compute.",
      "",
  ]
  lines += _table(rows, markdown_=True)
  lines += ["", "Spec-sheet HBM bandwidth, by JAX `device_kind` (first "
            "match; a CPU has none):", "",
            "| device_kind contains | TB/s | source |", "|---|---|---|"]
  lines += [f"| {p} | {t} | {s} |" for p, t, s in SPEC_HBM]
  return lines


def _table(rows, markdown_: bool) -> list[str]:
  heads = [h for _, h, _ in COLUMNS]
  cells = [[("-" if r.get(k) is None else spec.format(r[k]))
            for k, _, spec in COLUMNS] for r in rows]
  if markdown_:
    return (["| " + " | ".join(heads) + " |",
             "|" + "|".join("---" for _ in heads) + "|"]
            + ["| " + " | ".join(c) + " |" for c in cells])
  widths = [max([len(h)] + [len(c[i]) for c in cells])
            for i, h in enumerate(heads)]
  fmt = lambda cs: "  ".join(c.ljust(w) for c, w in zip(cs, widths)).rstrip()
  return [fmt(heads), fmt(["-" * w for w in widths])] + [fmt(c) for c in cells]


def text(rows: list[dict], info: dict) -> list[str]:
  """The printed form: the device lines, then a plain-text table."""
  md = markdown(rows, info)
  return [l for l in md[2:md.index("", 2)]] + _table(rows, markdown_=False)
