"""`python -m bench`: time cutmix-jax's ops against a jitted batch copy.

Every op is reported as its time divided by the time of the copy (a reversal
along the batch axis, written out: a mixing op must read two images and
write one, so this is the memory limit), measured in alternation in the same
process. See `python -m bench --help` for the flags.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any, Callable, Optional, Sequence

# Keras (a peer) must see its backend before it is first imported.
os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
from jax import lax
import numpy as np

import cutmix_jax as cm
from bench import loaders
from bench import losses
from bench import machine
from bench import peers as peers_lib
from bench import reference
from bench import roofline
from bench import timing

OPS = ("cutmix", "mixup", "cutout", "mix", "resizemix", "switch")
# The switch bench draws among all four ops with equal weights.
TRAIN_AUGS = ("cutmix", "mixup", "cutout", "mix")  # the trainer's --aug
SWITCH_PROBS = {"cutmix": 1.0, "mixup": 1.0, "cutout": 1.0, "resizemix": 1.0}
MODES = ("batch", "pair", "elem")
DTYPES = ("uint8", "bfloat16", "float32")
SHAPES = ("256x32x32x3", "128x224x224x3")
QUICK_SHAPES = ("16x8x8x3",)
QUICK_DTYPES = ("uint8", "float32")
DEFAULT_OUT = pathlib.Path(__file__).resolve().parent / "results"

COLUMNS = (
    ("section", "section", "{}"),
    ("name", "what", "{}"),
    ("mode", "mode", "{}"),
    ("dtype", "dtype", "{}"),
    ("shape", "shape", "{}"),
    ("ratio", "x copy", "{:.2f}"),
    ("median_ms", "median ms", "{:.3f}"),
    ("min_ms", "min ms", "{:.3f}"),
    ("max_ms", "max ms", "{:.3f}"),
    ("compile_ms", "compile ms", "{:.0f}"),
    ("note", "note", "{}"),
)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
      prog="python -m bench",
      description=(
          "Time cutmix-jax's cutmix/mixup/cutout/mix in batch/pair/elem mode "
          "against a jitted batch copy (reversal along the batch axis) of the "
          "same array, interleaved in one process; also a NumPy reference of "
          "the paper's algorithm, the parameter draw alone, peers (timm, "
          "torchvision, Keras 3) when importable and, when train/ is "
          "importable, the overhead of each augmentation in a jitted train "
          "step. Prints one table and writes results.md and results.json to "
          "--out."
      ),
      formatter_class=argparse.ArgumentDefaultsHelpFormatter,
  )
  p.add_argument("--quick", action="store_true",
                 help="tiny shapes, uint8/float32, 3 reps: an end-to-end "
                 "check in seconds, not a measurement")
  p.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT,
                 help="directory for results.md and results.json")
  p.add_argument("--shapes", nargs="+", default=None,
                 help=f"NHWC shapes as BxHxWxC (default {' '.join(SHAPES)})")
  p.add_argument("--dtypes", nargs="+", default=None, choices=DTYPES,
                 help=f"default: {' '.join(DTYPES)}")
  p.add_argument("--ops", nargs="+", default=list(OPS), choices=OPS)
  p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
  p.add_argument("--pairing", default="flip",
                 choices=("flip", "roll", "permute"))
  p.add_argument("--num-classes", type=int, default=10)
  p.add_argument("--reps", type=int, default=None,
                 help="timed repetitions per row (median, min, max are over "
                 "these); default 9, or 3 with --quick")
  p.add_argument("--target-ms", type=float, default=None,
                 help="wall time of one repetition; fast calls are repeated "
                 "inside it and averaged (default 20, or 2 with --quick)")
  p.add_argument("--no-numpy", action="store_true",
                 help="skip the NumPy reference rows")
  p.add_argument("--no-draw", action="store_true",
                 help="skip the parameter-draw rows")
  p.add_argument("--no-peers", action="store_true",
                 help="skip timm/torchvision/Keras even if importable")
  p.add_argument("--no-cross-device", action="store_true",
                 help="skip the cross-device pairing section (a subprocess "
                 "on 8 simulated CPU devices, or the real devices)")
  p.add_argument("--no-train", action="store_true",
                 help="skip the train-step section")
  p.add_argument("--train-models", nargs="+", default=None,
                 help="models for the train-step section (default: resnet20 "
                 "and tiny; tiny only with --quick)")
  p.add_argument("--train-augs", nargs="+", default=list(TRAIN_AUGS),
                 choices=TRAIN_AUGS,
                 help="augmentations compared with --aug none in the train "
                 "step")
  p.add_argument("--train-mode", default=None, choices=MODES,
                 help="mode of the augmentations in the train step (default: "
                 "the trainer's: batch, elem for cutout)")
  p.add_argument("--train-batch", type=int, default=None,
                 help="batch of the train-step section (default 128, 16 with "
                 "--quick)")
  p.add_argument("--no-loss", action="store_true",
                 help="skip the loss section (k-way labels and fused losses "
                 "against dense targets)")
  p.add_argument("--only-loss", action="store_true",
                 help="run the loss section only")
  p.add_argument("--loss-batches", nargs="+", type=int,
                 default=list(losses.BATCHES),
                 help="batch sizes of the loss section (16 with --quick)")
  p.add_argument("--loss-classes", nargs="+", type=int,
                 default=list(losses.CLASSES),
                 help="numbers of classes of the loss section (1000 with "
                 "--quick)")
  roofline.add_args(p)
  loaders.add_args(p)
  args = p.parse_args(argv)
  if args.only_loss and args.no_loss:
    p.error("--only-loss and --no-loss exclude each other")
  roofline.resolve_args(args)
  loaders.resolve_args(args)
  if args.only_roofline or args.only_loaders:
    args.shapes, args.no_cross_device, args.no_train = [], True, True
    args.no_roofline |= args.only_loaders
    args.no_loaders |= args.only_roofline
    args.no_loss = True
  if args.only_loss:
    args.no_roofline = args.no_loaders = True
  if args.shapes is None:
    args.shapes = list(QUICK_SHAPES if args.quick else SHAPES)
  if args.dtypes is None:
    args.dtypes = list(QUICK_DTYPES if args.quick else DTYPES)
  if args.reps is None:
    args.reps = 3 if args.quick else 9
  if args.target_ms is None:
    args.target_ms = 2.0 if args.quick else 20.0
  if args.train_batch is None:
    args.train_batch = 16 if args.quick else 128
  if args.train_models is None:
    args.train_models = ["tiny"] if args.quick else ["resnet20", "tiny"]
  args.shapes = [parse_shape(s) for s in args.shapes]
  return args


def parse_shape(text: str) -> tuple[int, int, int, int]:
  try:
    shape = tuple(int(v) for v in text.lower().split("x"))
  except ValueError:
    shape = ()
  if len(shape) != 4 or min(shape) < 1:
    raise SystemExit(f"--shapes: expected BxHxWxC, got {text!r}")
  return shape  # type: ignore[return-value]


# ---------------------------------------------------------------------------
# What is timed


def op_fn(op: str, mode: str, num_classes: int, pairing: str) -> Callable:
  """A jitted `(key, images, labels) -> outputs` for one op and mode."""
  if op == "cutmix":
    f = lambda k, x, y: cm.cutmix(
        k, x, y, num_classes=num_classes, mode=mode, pairing=pairing)
  elif op == "mixup":
    f = lambda k, x, y: cm.mixup(
        k, x, y, num_classes=num_classes, mode=mode, pairing=pairing)
  elif op == "mix":
    f = lambda k, x, y: cm.mix(
        k, x, y, num_classes=num_classes, mode=mode, pairing=pairing)
  elif op == "cutout":
    f = lambda k, x, y: cm.cutout(k, x, mode=mode)
  elif op == "resizemix":
    f = lambda k, x, y: cm.resizemix(
        k, x, y, num_classes=num_classes, mode=mode, pairing=pairing)
  elif op == "switch":
    f = lambda k, x, y: cm.switch(
        k, x, y, num_classes=num_classes, mode=mode, pairing=pairing,
        probs=SWITCH_PROBS)
  else:
    raise ValueError(op)
  return jax.jit(f)


def draw_fn(op: str, mode: str, shape, pairing: str) -> Callable:
  """A jitted `key -> MixParams`: the parameter draw alone."""
  batch, height, width = shape[:3]
  if op == "cutmix":
    f = lambda k: cm.sample_cutmix(k, batch, height, width, mode=mode,
                                   pairing=pairing)
  elif op == "mixup":
    f = lambda k: cm.sample_mixup(k, batch, mode=mode, pairing=pairing)
  elif op == "mix":
    f = lambda k: cm.sample_mix(k, batch, height, width, mode=mode,
                                pairing=pairing)
  elif op == "resizemix":
    f = lambda k: cm.sample_resizemix(k, batch, height, width, mode=mode,
                                      pairing=pairing)
  elif op == "switch":
    f = lambda k: cm.sample_switch(k, batch, height, width, mode=mode,
                                   pairing=pairing, probs=SWITCH_PROBS)
  else:
    f = lambda k: cm.sample_cutout(k, batch, height, width, mode=mode)
  return jax.jit(f)


@jax.jit
def batch_copy(x):
  """The denominator: the batch reversed, written to a fresh buffer."""
  return lax.rev(x, (0,))


class KeyCycle:
  """A fresh key on every call, as a training loop passes (no recompiles)."""

  def __init__(self, n: int = 64, seed: int = 0):
    self.keys = list(jax.random.split(jax.random.key(seed), n))
    self.i = 0

  def __call__(self):
    self.i += 1
    return self.keys[self.i % len(self.keys)]


def make_images(shape, dtype: str, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 256, size=shape, dtype=np.uint8)
  if dtype == "uint8":
    return x
  return (x.astype(np.float32) / 255.0).astype(jnp.dtype(dtype))


# ---------------------------------------------------------------------------
# Sections


def ops_section(args, shape, dtype, draws: bool, log) -> tuple[list, list]:
  """Copy, every op x mode, the NumPy reference, draws and peers for one case."""
  keys = KeyCycle()
  x_np = make_images(shape, dtype)
  labels_np = np.random.default_rng(1).integers(
      0, args.num_classes, size=shape[0]).astype(np.int32)
  x = jax.device_put(x_np)
  y = jax.device_put(labels_np)
  fns: dict[str, Callable[[], Any]] = {}
  meta: dict[str, tuple] = {}
  for op in args.ops:
    for mode in args.modes:
      f = op_fn(op, mode, args.num_classes, args.pairing)
      fns[f"op/{op}/{mode}"] = lambda f=f: f(keys(), x, y)
      meta[f"op/{op}/{mode}"] = ("op", op, mode, dtype, "")
  if draws:
    for op in args.ops:
      for mode in args.modes:
        f = draw_fn(op, mode, shape, args.pairing)
        fns[f"draw/{op}/{mode}"] = lambda f=f: f(keys())
        meta[f"draw/{op}/{mode}"] = (
            "draw", f"sample_{op}", mode, "-",
            f"parameters only; ratio to the {dtype} copy")
  if not args.no_numpy:
    rng = np.random.default_rng(2)
    x_ref = x_np.copy()
    onehot = np.eye(args.num_classes, dtype=np.float32)[labels_np]
    fns["ref/numpy"] = lambda: reference.cutmix_numpy(rng, x_ref, onehot)
    meta["ref/numpy"] = (
        "reference", "NumPy paper CutMix", "batch", dtype,
        "one box per batch, permuted slice assignment, in place, host")
    out_buf = np.empty_like(x_np)
    fns["ref/copyto"] = lambda: np.copyto(out_buf, x_np[::-1])
    meta["ref/copyto"] = (
        "reference", "np.copyto reversal", "-", dtype,
        "into a preallocated buffer (no page faults)")
  skipped = []
  if not args.no_peers:
    if dtype == "bfloat16":
      skipped.append("peers: not run on bfloat16 (no NumPy bridge to torch)")
    else:
      made, skipped = peers_lib.collect(x_np.copy(), labels_np, args.num_classes)
      for name, mode, call, note in made:
        fns[f"peer/{name}/{mode}"] = call
        meta[f"peer/{name}/{mode}"] = ("peer", name, mode, dtype, note)

  log(f"  {timing.shape_str(shape)} {dtype}: {len(fns)} functions ...")
  base, timed, failed = timing.interleaved(
      lambda: batch_copy(x), fns, reps=args.reps,
      target_s=args.target_ms / 1e3)
  rows = [timing.row("copy", "jitted batch copy (denominator)", "-", dtype,
                     shape, base.summary(),
                     "lax.rev along the batch axis, fresh output")]
  for name, t in timed.items():
    section, what, mode, dt, note = meta[name]
    summary = t.summary()
    if section in ("reference", "peer"):
      summary.pop("compile_ms", None)
    rows.append(timing.row(section, what, mode, dt, shape, summary, note))
  for name, error in failed.items():
    section, what, mode, dt, _ = meta[name]
    rows.append(timing.row(section, what, mode, dt, shape, {"ratio": None},
                           f"FAILED: {error}"))
    skipped.append(f"{name} failed: {error}")
  return rows, skipped


def cross_device_section(args, log) -> tuple[list, list]:
  """Cross-device pairing vs pairing inside the shard, in a subprocess.

  A subprocess, because simulated CPU devices must be requested before JAX
  starts; on a GPU or TPU host it uses the real devices.
  """
  shape = "256x32x32x3" if not args.quick else "16x8x8x3"
  cmd = [sys.executable, "-m", "bench.cross_device", "--shape", shape,
         "--reps", str(args.reps), "--target-ms", str(args.target_ms)]
  log(f"  cross-device: {' '.join(cmd[1:])} ...")
  root = pathlib.Path(__file__).resolve().parent.parent
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(
      p for p in (str(root), env.get("PYTHONPATH", "")) if p)
  done = subprocess.run(cmd, capture_output=True, text=True, cwd=root,
                        env=env, check=False)
  if done.returncode:
    return [], [f"cross-device section failed: {done.stderr[-400:]}"]
  return json.loads(done.stdout), []


def train_section(args, log) -> tuple[list, list]:
  """Train-step overhead of each augmentation, if `train/` is importable."""
  try:
    from bench import train_step  # pylint: disable=g-import-not-at-top
    return train_step.section(args, log)
  except ImportError as e:
    return [], [f"train-step section: {type(e).__name__}: {e}"]


# ---------------------------------------------------------------------------
# Output


def _fmt(value, spec) -> str:
  if value is None or value == "":
    return "" if value == "" else "-"
  try:
    return spec.format(value)
  except (ValueError, TypeError):
    return str(value)


def table_lines(rows: list[dict], markdown: bool) -> list[str]:
  heads = [h for _, h, _ in COLUMNS]
  cells = [[_fmt(r.get(k), spec) for k, _, spec in COLUMNS] for r in rows]
  if markdown:
    lines = ["| " + " | ".join(heads) + " |",
             "|" + "|".join("---" for _ in heads) + "|"]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    return lines
  widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
            for i, h in enumerate(heads)]
  fmt = lambda cs: "  ".join(c.ljust(w) for c, w in zip(cs, widths)).rstrip()
  return [fmt(heads), fmt(["-" * w for w in widths])] + [fmt(c) for c in cells]


def summary_lines(rows: list[dict]) -> list[str]:
  """A pivot for the README: `x copy` per op/mode (rows) and case (columns)."""
  cases, table = [], {}
  for r in rows:
    if r["section"] not in ("op", "reference", "peer", "draw"):
      continue
    if r.get("ratio") is None:
      continue
    case = f"{r['shape']} {r['dtype']}" if r["section"] != "draw" else (
        f"{r['shape']} params")
    label = (r["name"] if r["section"] == "op" else
             f"{r['name']} ({r['section']})")
    if case not in cases:
      cases.append(case)
    table.setdefault((label, r["mode"]), {})[case] = r["ratio"]
  if not table:
    return []
  lines = ["| what | mode | " + " | ".join(cases) + " |",
           "|---|---|" + "|".join("---" for _ in cases) + "|"]
  for (label, mode), vals in table.items():
    cells = [f"{vals[c]:.2f}" if c in vals else "" for c in cases]
    lines.append(f"| {label} | {mode} | " + " | ".join(cells) + " |")
  return lines


def write_outputs(out_dir: pathlib.Path, report: dict) -> None:
  out_dir.mkdir(parents=True, exist_ok=True)
  (out_dir / "results.json").write_text(json.dumps(report, indent=1) + "\n")
  m, v = report["machine"], report["versions"]
  md = [
      "# cutmix-jax benchmark",
      "",
      f"Command: `{report['command']}`  ",
      f"Date: {report['date']}  ",
      f"Machine: {m['cpu_model']}, {m['cpus_usable']} usable of "
      f"{m['cpu_count']} cores, JAX backend {m['jax_backend']} "
      f"({m['device_kind']}), load at start {m['load_avg_at_start']}  ",
      "Versions: " + ", ".join(
          f"{k} {val}" for k, val in v.items() if val is not None) + "  ",
      "Not installed: " + (", ".join(k for k, val in v.items() if val is None)
                           or "-"),
      "",
  ]
  if report["rows"]:
    md += [
        "`x copy` is the median over repetitions of (time / time of a jitted "
        "batch copy timed just before it, same shape and dtype). Times are "
        f"per call; {report['config']['reps']} repetitions; compile ms is "
        "the first call less a steady one. Train rows: `x copy` is the ratio "
        "to the train step with `--aug none`; loaders rows: to the step "
        "with `--loader memory`. Loss rows: `x copy` is k-way time over "
        "dense time, and the times are k-way's.",
        "",
    ]
  summary = summary_lines(report["rows"])
  if summary:
    md += ["## Time / copy time (median of per-repetition ratios)", ""]
    md += summary + [""]
  loss_table = losses.table_lines(report["rows"])
  if loss_table:
    md += ["## Loss: k-way labels against dense targets", ""]
    md += loss_table + [""]
  if summary or loss_table:
    md += ["## All rows", ""]
  if report["rows"]:
    md += table_lines(report["rows"], markdown=True)
  if report.get("roofline"):
    md += [""] + roofline.markdown(report["roofline"]["rows"],
                                   report["roofline"]["info"])
  if report["skipped"]:
    md += ["", "Skipped:", ""] + [f"- {s}" for s in report["skipped"]]
  (out_dir / "results.md").write_text("\n".join(md) + "\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(argv)
  log = lambda msg: print(msg, file=sys.stderr, flush=True)
  info, versions = machine.machine_info(), machine.versions()
  log(f"machine: {info}")
  log(f"versions: {versions}")
  rows, skipped = [], []
  for shape in [] if args.only_loss else args.shapes:
    for i, dtype in enumerate(args.dtypes):
      r, s = ops_section(args, shape, dtype, draws=not args.no_draw and i == 0,
                         log=log)
      rows += r
      skipped += [f"{timing.shape_str(shape)} {dtype}: {x}" for x in s]
  if not args.no_cross_device and not args.only_loss:
    r, s = cross_device_section(args, log)
    rows += r
    skipped += s
  if not args.no_train and not args.only_loss:
    r, s = train_section(args, log)
    rows += r
    skipped += s
  if not args.no_loss:
    r, s = losses.section(args, log)
    rows += r
    skipped += s
  if not args.no_loaders:
    r, s = loaders.section(args, log)
    rows += r
    skipped += s
  roof = None
  if not args.no_roofline:
    r, s = roofline.section(args, log)
    roof = {"info": roofline.summary(r), "rows": r}
    skipped += s
  report = {
      "command": "python -m bench " + " ".join(
          sys.argv[1:] if argv is None else list(argv)),
      "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
      "machine": info,
      "versions": versions,
      "config": {
          k: (v if not isinstance(v, pathlib.Path) else str(v))
          for k, v in vars(args).items()
      },
      "rows": rows,
      "roofline": roof,
      "skipped": skipped,
  }
  print(f"machine: {info['cpu_model']}, {info['cpus_usable']}/"
        f"{info['cpu_count']} cores, {info['jax_backend']} "
        f"({info['device_kind']})")
  print("versions: " + ", ".join(
      f"{k} {v}" for k, v in versions.items() if v is not None))
  if rows:
    print("\n".join(table_lines(rows, markdown=False)))
  if roof:
    print("\n".join(roofline.text(roof["rows"], roof["info"])))
  for s in skipped:
    print(f"skipped: {s}")
  write_outputs(args.out, report)
  print(f"wrote {args.out / 'results.md'} and {args.out / 'results.json'}")
  return 0
