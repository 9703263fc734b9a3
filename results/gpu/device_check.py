"""The device check's parts, in order, each with its own time budget.

Run through `results/gpu/device_check.sh` (which installs the carried
wheels first); see its header for the command and what travels. Each part
runs as a child process with a hard time limit, so a part that hangs or
overruns costs its own budget only, and each packs its outputs into one tar
file under the output folder as soon as it ends:

  1. `1-roofline.tar`: `python -m bench --only-roofline` (the largest shape
     first, so a budget cut drops the CIFAR-size rows);
  2. `2-kway.tar`: the k-way loss table, `python -m bench --only-loss`,
     if this checkout's bench has that section, else a message;
  3. `3-loaders.tar`: trainer throughput (PreAct-ResNet-18 on CIFAR-10,
     bf16, batch 128, one process) with `--loader device`, `memory` and
     `grain`, one child each;
  4. `4-confirm.tar`: `python -m train.experiments` with the arguments in
     `results/gpu/confirm-args.txt` (the confirmatory study's GPU protocol),
     if that file exists, else a message. Its `{data_dir}`, `{npz}`,
     `{cache}`, `{out}` and `{budget_s}` are replaced by the unpacked image
     folder, its decoded .npz, a cache folder, the part's output folder and
     the seconds left.

Besides the tars: `device_check.log` (everything printed) and `summary.md`
(each part's status and time): at most 6 files.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Optional, Sequence

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACK = ROOT / ".devdata" / "cifar10-jpg.npz"
CONFIRM_ARGS = ROOT / "results" / "gpu" / "confirm-args.txt"
# The k-way loss section's flag on `python -m bench` (the k-way branch).
KWAY_FLAG = "--only-loss"
LOADER_ORDER = ("device", "memory", "grain")


@dataclasses.dataclass
class Part:
  name: str
  budget_s: float
  quick_budget_s: float


# --quick's budgets are generous: a shared 2-core machine may be loaded.
PARTS = (
    Part("1-roofline", 85, 120),
    Part("2-kway", 55, 60),
    # Three compiles of PreAct-ResNet-18's step, about 40 s per loader.
    Part("3-loaders", 120, 360),
    Part("4-confirm", 0, 60),  # 0: whatever is left of --total-s
)


class Log:
  """Prints and appends to the log file (which comes back even if cut)."""

  def __init__(self, path: pathlib.Path):
    self.path = path

  def __call__(self, msg: str) -> None:
    print(msg, flush=True)
    with open(self.path, "a") as f:
      f.write(msg + "\n")


def run_child(cmd: list[str], timeout_s: float, log: Log, cwd=ROOT) -> str:
  """Runs `cmd`, copying its output to the log; returns a status word."""
  log(f"$ {shlex.join(cmd)}   (limit {timeout_s:.0f} s)")
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  env["PYTHONPATH"] = os.pathsep.join(
      p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
  with open(log.path, "a") as f:
    # Its own process group: a timeout ends the child and any workers.
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=f,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
      rc = proc.wait(timeout=max(timeout_s, 1))
    except subprocess.TimeoutExpired:
      os.killpg(proc.pid, 9)
      proc.wait()
      log(f"  stopped at its {timeout_s:.0f} s limit")
      return "timeout"
  log(f"  exit {rc}")
  return "ok" if rc == 0 else f"exit {rc}"


def pack_part(out: pathlib.Path, name: str, folder: pathlib.Path) -> None:
  with tarfile.open(out / f"{name}.tar", "w") as tar:
    tar.add(folder, arcname=name)


def prepare_data(args, work: pathlib.Path, log: Log) -> Optional[tuple]:
  """`(image folder, npz)` unpacked from the carried pack, or with --quick
  from a pack of 512 + 128 images of --zip made here (the same path on
  less data); None when there is none."""
  pack = pathlib.Path(args.pack)
  if args.quick and args.zip and os.path.exists(args.zip):
    pack = work / "pack.npz"
    log(f"--quick: packing 512 + 128 images of {args.zip}")
    run_child([sys.executable, "-m", "bench.devdata", "pack", args.zip,
               str(pack), "--train", "512", "--test", "128"], 120, log)
  if not pack.exists():
    log(f"no data: {pack} is missing (see device_check.sh's header)")
    return None
  status = run_child([sys.executable, "-m", "bench.devdata", "unpack",
                      str(pack), str(work / "cifar10")], 180, log)
  if status != "ok":
    return None
  return work / "cifar10" / "images", work / "cifar10" / "data.npz"


def roofline(args, out_dir, budget, log, data) -> str:
  del data
  cmd = [sys.executable, "-m", "bench", "--only-roofline", "--out",
         str(out_dir), "--roofline-budget-s", str(max(budget - 25, 5))]
  if args.quick:
    cmd += ["--quick"]
  else:
    cmd += ["--roofline-shapes", "1024x224x224x3", "256x32x32x3",
            "--roofline-reps", "3"]
  return run_child(cmd, budget, log)


def kway(args, out_dir, budget, log, data) -> str:
  del data
  help_text = subprocess.run(
      [sys.executable, "-m", "bench", "--help"], cwd=ROOT,
      capture_output=True, text=True, check=False).stdout
  if not (ROOT / "bench" / "losses.py").exists() or KWAY_FLAG not in help_text:
    log(f"skipped: this checkout's bench has no k-way loss section "
        f"(bench/losses.py and `python -m bench {KWAY_FLAG}`)")
    return "skipped"
  # The other sections off, whatever --only-loss implies after a merge.
  cmd = [sys.executable, "-m", "bench", KWAY_FLAG, "--no-roofline",
         "--no-loaders", "--no-train", "--no-cross-device", "--out",
         str(out_dir)]
  return run_child(cmd + (["--quick"] if args.quick else []), budget, log)


def loaders(args, out_dir, budget, log, data) -> str:
  if data is None:
    log("skipped: no data")
    return "skipped"
  folder, npz = data
  statuses = []
  start = time.monotonic()
  for i, loader in enumerate(LOADER_ORDER):
    left = budget - (time.monotonic() - start)
    share = left / (len(LOADER_ORDER) - i)
    cmd = [sys.executable, "-m", "bench", "--only-loaders", "--loaders",
           loader, "--loader-data", str(folder), "--loader-npz", str(npz),
           "--out", str(out_dir / loader)]
    if args.quick:
      cmd += ["--quick", "--loader-workers", "1"]
    else:
      cmd += ["--loader-model", "preact_resnet18", "--loader-width", "64",
              "--loader-dtype", "bfloat16", "--loader-batch", "128",
              "--loader-steps", "20", "--loader-workers", "8"]
    statuses.append(f"{loader} {run_child(cmd, share, log)}")
  return ", ".join(statuses)


def confirm(args, out_dir, budget, log, data) -> str:
  if not CONFIRM_ARGS.exists():
    log(f"skipped: no {CONFIRM_ARGS.relative_to(ROOT)} (the confirmatory "
        "study's GPU protocol writes its arguments there)")
    return "skipped"
  if data is None:
    log("skipped: no data")
    return "skipped"
  lines = [l.split("#", 1)[0] for l in CONFIRM_ARGS.read_text().splitlines()]
  values = dict(data_dir=data[0], npz=data[1], cache=out_dir.parent / "cache",
                out=out_dir, budget_s=int(budget))
  argv = [a.format(**values) for a in shlex.split(" ".join(lines))]
  return run_child([sys.executable, "-m", "train.experiments", *argv],
                   budget, log)


def main(argv: Optional[Sequence[str]] = None) -> int:
  p = argparse.ArgumentParser(prog="results/gpu/device_check.sh",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--quick", action="store_true",
                 help="every part end to end on tiny settings (a CPU check "
                 "of the script, not a measurement)")
  p.add_argument("--out", default=os.environ.get("OUT") or
                 str(ROOT / "results" / "gpu" / "device-check"),
                 help="where the files go (default: $OUT)")
  p.add_argument("--total-s", type=float, default=None,
                 help="the whole check's budget; part 4 gets what is left "
                 "(default 400, 900 with --quick)")
  p.add_argument("--pack", default=str(PACK),
                 help="CIFAR-10 packed by `python -m bench.devdata pack`")
  p.add_argument("--zip", default=str(ROOT.parent / "shared" / "data" /
                                      "cifar10-jpg.zip"),
                 help="with --quick and no --pack: pack a subset of this")
  p.add_argument("--parts", nargs="+", default=[x.name for x in PARTS],
                 choices=[x.name for x in PARTS])
  args = p.parse_args(argv)
  if args.total_s is None:
    args.total_s = 900 if args.quick else 400
  start = time.monotonic()
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  log = Log(out / "device_check.log")
  summary = ["# Device check", "", f"Command: `{shlex.join(sys.argv)}`", "",
             "| part | status | seconds |", "|---|---|---|"]
  run_child([sys.executable, "-c",
             "import jax, platform; print(platform.node(), jax.__version__, "
             "jax.devices())"], 60, log)
  if not args.quick:
    run_child(["nvidia-smi"], 20, log)
  funcs = {"1-roofline": roofline, "2-kway": kway, "3-loaders": loaders,
           "4-confirm": confirm}
  with tempfile.TemporaryDirectory() as tmp:
    work = pathlib.Path(tmp)
    data = None
    if {"3-loaders", "4-confirm"} & set(args.parts):
      data = prepare_data(args, work, log)
    for part in PARTS:
      if part.name not in args.parts:
        continue
      left = args.total_s - (time.monotonic() - start)
      budget = part.quick_budget_s if args.quick else (
          part.budget_s or left)
      budget = min(budget, left)
      if budget < 10:
        log(f"== {part.name}: skipped, {left:.0f} s left")
        summary.append(f"| {part.name} | no time left | - |")
        continue
      log(f"== {part.name} (budget {budget:.0f} s)")
      part_dir = work / part.name
      part_dir.mkdir()
      t0 = time.monotonic()
      status = funcs[part.name](args, part_dir, budget, log, data)
      seconds = time.monotonic() - t0
      pack_part(out, part.name, part_dir)
      summary.append(f"| {part.name} | {status} | {seconds:.0f} |")
      (out / "summary.md").write_text("\n".join(summary) + "\n")
  summary.append(f"\nTotal: {time.monotonic() - start:.0f} s.")
  (out / "summary.md").write_text("\n".join(summary) + "\n")
  log("\n".join(summary))
  return 0


if __name__ == "__main__":
  sys.exit(main())
