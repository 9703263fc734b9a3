"""`python -m train.experiments` on a tiny imagefolder, and the occlusion boxes."""

import json
import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from train import evaluation
from train import experiments
from train import occlusion
from train import report
from train import runs
from train import study_data


# ---------------------------------------------------------------------------
# Occlusion on known cases


def test_centre_box_covers_exactly_a_quarter_of_32x32():
  assert occlusion.box_size(0.25, 32, 32) == (16, 16)
  boxes = occlusion.make_boxes("centre", 0.25, 3, 32, 32)
  np.testing.assert_array_equal(boxes, [[8, 8, 24, 24]] * 3)
  images = np.full((3, 32, 32, 3), 200, np.uint8)
  out = occlusion.occlude(images, boxes, 0)
  assert out.dtype == np.float32
  zero = (out == 0).all(-1)
  # All zero inside exactly the centre 16x16 box, untouched outside.
  assert zero.sum((1, 2)).tolist() == [256] * 3
  assert zero[:, 8:24, 8:24].all()
  assert (out[~zero] == 200).all()
  assert zero.mean() == 0.25


@pytest.mark.parametrize("fraction,hw", [(0.25, (16, 16)), (0.5, (23, 22))])
def test_random_boxes_have_exact_area_inside_the_image(fraction, hw):
  n = 500
  boxes = occlusion.make_boxes("random", fraction, n, 32, 32, seed=0)
  top, left, bottom, right = boxes.T
  assert (bottom - top == hw[0]).all() and (right - left == hw[1]).all()
  assert (top >= 0).all() and (left >= 0).all()
  assert (bottom <= 32).all() and (right <= 32).all()
  # Every position where the box fits is reachable: both extremes occur.
  assert top.min() == 0 and bottom.max() == 32
  # Not one shared box (there are 110 positions for 23x22, 289 for 16x16).
  assert len({tuple(b) for b in boxes}) >= 100
  # Fixed by (seed, fraction): the same occluded test set for every model.
  np.testing.assert_array_equal(
      boxes, occlusion.make_boxes("random", fraction, n, 32, 32, seed=0))
  out = occlusion.occlude(np.ones((n, 32, 32, 3), np.uint8), boxes, 0)
  assert ((out == 0).all(-1).sum((1, 2)) == hw[0] * hw[1]).all()
  # The traced path (as used inside the jitted eval) agrees.
  fill = np.array([1.5, 2.5, 3.5], np.float32)
  np.testing.assert_array_equal(
      occlusion.occlude(jnp.ones((n, 32, 32, 3)), jnp.asarray(boxes), fill),
      occlusion.occlude(np.ones((n, 32, 32, 3)), boxes, fill))


def test_mean_fill_is_zero_after_normalisation_and_empty_box_is_identity():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (4, 8, 8, 3)).astype(np.uint8)
  mean, std = np.array([10., 20., 30.], np.float32), np.float32(7)
  boxes = occlusion.make_boxes("centre", 0.25, 4, 8, 8)
  normalised = (occlusion.occlude(x, boxes, mean) - mean) / std
  assert (normalised[:, 2:6, 2:6] == 0).all()
  np.testing.assert_array_equal(
      occlusion.occlude(x, np.zeros((4, 4), np.int32), 0), x)
  assert occlusion.box_size(0.0, 32, 32)[0] == 0
  assert occlusion.box_size(1.0, 32, 32) == (32, 32)
  with pytest.raises(ValueError):
    occlusion.make_boxes("corner", 0.25, 1, 32, 32)


# ---------------------------------------------------------------------------
# The experiment command end to end


def _write_tiny_zip(tmp_path, size=16, swap_test=False):
  """cifar10/{train,test}/<class>/NNNN.jpg with two easy classes; with
  `swap_test`, the first class's test images look like the second class."""
  root = tmp_path / "src"
  rng = np.random.default_rng(0)
  counts = {"train": 8, "test": 4}
  for split, n in counts.items():
    for c, (name, level) in enumerate((("dark", 40), ("light", 210))):
      if swap_test and split == "test" and c == 0:
        level = 250 - level
      folder = root / "cifar10" / split / name
      folder.mkdir(parents=True)
      for i in range(n):
        pixels = np.clip(level + rng.integers(-20, 20, (size, size, 3)), 0, 255)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i:04d}.jpg")
  path = tmp_path / "tiny.zip"
  with zipfile.ZipFile(path, "w") as z:
    for dirpath, _, files in os.walk(root):
      for f in files:
        full = os.path.join(dirpath, f)
        z.write(full, os.path.relpath(full, root))
  return str(path)


@pytest.mark.slow
def test_experiments_end_to_end_resume_and_summary(tmp_path, capsys,
                                                   monkeypatch, fast_compile):
  zip_path = _write_tiny_zip(tmp_path)
  out, cache = str(tmp_path / "results"), str(tmp_path / "cache")

  def args(methods="cutmix", seeds="0", epochs="1"):
    return ["--zip", zip_path, "--cache-dir", cache, "--out", out,
            "--methods", methods, "--seeds", seeds, "--epochs", epochs,
            "--model", "tiny", "--width", "4", "--batch-size", "8",
            "--train-subset", "8", "--warmup-epochs", "0"]

  # Spy on the occlusion evaluation: its clean accuracy must be the
  # trainer's own (the runs take "clean" from the trainer).
  clean_by_eval = []
  evaluate = evaluation.evaluate_occlusion

  def spy(cfg, state, ds, *rest, **kwargs):
    clean_by_eval.append(
        evaluate(cfg, state, ds, conditions=("clean",))["clean"])
    return evaluate(cfg, state, ds, *rest, **kwargs)

  monkeypatch.setattr(evaluation, "evaluate_occlusion", spy)
  experiments.main(args())

  # The decoded data is cached (outside --out) with a class-balanced subset.
  npz = [f for f in os.listdir(cache) if f.endswith("-train8.npz")]
  assert len(npz) == 1
  with np.load(os.path.join(cache, npz[0])) as f:
    assert np.bincount(f["y_train"]).tolist() == [4, 4]
    assert f["x_test"].shape == (8, 16, 16, 3)
  # Checkpoints stay in the cache, never in --out.
  assert not any("checkpoints" in d for d, _, _ in os.walk(out))
  assert any("checkpoints" in d for d, _, _ in os.walk(cache))

  records = {}
  with open(os.path.join(out, "runs", "cutmix-s0.json")) as f:
    records["cutmix"] = r = json.load(f)
  assert set(r["accuracy"]) == set(evaluation.CONDITIONS)
  assert all(0 <= a <= 1 for a in r["accuracy"].values())
  assert r["settings"]["prob"] == runs.DEFAULT_PROB["cutmix"] == 0.5
  assert r["machine"]["jax"] and r["machine"]["cores"]
  assert r["command"].startswith("python -m train.experiments --zip")
  assert [c["epoch"] for c in r["curve"]] == [1]
  assert clean_by_eval == [r["accuracy"]["clean"]]

  with open(os.path.join(out, "results.json")) as f:
    summary = json.load(f)
  assert summary["runs"] == 1
  assert summary["methods"]["cutmix"]["clean"]["std"] is None  # one seed
  assert summary["box_sizes"]["25"] == dict(h=8, w=8, fraction=0.25)
  with open(os.path.join(out, "results.md")) as f:
    table = f.read()
  assert "| CutMix | 1 | 0.5 |" in table
  assert os.path.getsize(os.path.join(out, "results.png")) > 0

  # A second seed's run (faked from the first, to save a training run), then
  # a rerun: both finished runs are skipped and the summary merges them.
  second = dict(records["cutmix"], seed=1,
                settings=dict(records["cutmix"]["settings"], seed=1),
                accuracy={c: a / 2 for c, a in
                          records["cutmix"]["accuracy"].items()})
  with open(os.path.join(out, "runs", "cutmix-s1.json"), "w") as f:
    json.dump(second, f)
  capsys.readouterr()
  experiments.main(args(seeds="0,1"))
  printed = capsys.readouterr().out
  assert "cutmix seed 0: done already" in printed
  assert "cutmix seed 1: done already" in printed
  assert "training in" not in printed
  with open(os.path.join(out, "results.json")) as f:
    summary = json.load(f)
  assert summary["methods"]["cutmix"]["seeds"] == [0, 1]
  clean = summary["methods"]["cutmix"]["clean"]
  first = records["cutmix"]["accuracy"]["clean"]
  assert clean["values"] == [first, first / 2]
  assert clean["mean"] == pytest.approx(0.75 * first)
  assert clean["std"] == pytest.approx(np.std([first, first / 2], ddof=1))
  with open(os.path.join(out, "results.md")) as f:
    assert "| CutMix | 2 | 0.5 |" in f.read()

  # Other settings in the same --out are refused, not mixed.
  with pytest.raises(SystemExit, match="other settings"):
    experiments.main(args(epochs="2"))


def test_summary_names_each_methods_own_mixing_settings():
  settings = dict(alpha=1.0, mixup_alpha=0.8, switch_prob=0.5, cutout_size=None)
  table = {m: dict(mode="elem" if m == "cutout" else "batch")
           for m in ("none", "cutmix", "mixup", "cutout", "mix")}
  assert report._method_settings_line(table, settings, 32, 24) == (
      "- CutMix α = 1.0, mode batch; MixUp α = 1.0, mode batch; Cutout 16×12 "
      "box (half the side), mode elem; MixUp/CutMix switch: MixUp α = 0.8, "
      "CutMix α = 1.0, CutMix with chance 0.5, mode batch; prob as in the "
      "table.")
  assert report._method_settings_line(
      {"none": dict(mode="batch"), "cutout": dict(mode="elem")},
      dict(settings, cutout_size=8), 32, 32) == (
          "- Cutout 8×8 box, mode elem; prob as in the table.")
  assert report._method_settings_line(
      {"none": dict(mode="batch")}, settings, 32, 32) == "- No mixing method."


def test_vit_runs_take_deits_recipe_and_resnet_runs_the_studys():
  vit = experiments.make_parser().parse_args(
      ["--model", "vit_small_cpu", "--batch-size", "256"])
  cfg = runs.run_config(vit, "transmix", 0, "x.npz").resolved("npz", 32)
  assert (cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.warmup_epochs,
          cfg.label_smoothing, cfg.width, cfg.prob, cfg.aug) == (
              "adamw", 2.5e-4, 0.05, 5.0, 0.1, None, 1.0, "transmix")
  settings = runs._settings(cfg, vit)
  assert settings["optimizer"] == "adamw"
  # A ResNet run keeps the study's settings, and its recorded settings keep
  # the keys that runs made before --optimizer have.
  resnet = experiments.make_parser().parse_args([])
  cfg = runs.run_config(resnet, "cutmix", 0, "x.npz").resolved("npz", 32)
  assert (cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.warmup_epochs,
          cfg.width, cfg.label_smoothing) == ("sgd", 0.1, 5e-4, 1.0, 8, 0.0)
  assert "optimizer" not in runs._settings(cfg, resnet)
  line = report._method_settings_line(
      {"none": dict(mode="batch"), "transmix": dict(mode="batch")},
      dict(alpha=1.0, mixup_alpha=0.8, switch_prob=0.5), 32, 32)
  assert line == ("- TransMix: MixUp α = 0.8, CutMix α = 1.0, CutMix with "
                  "chance 0.5 with TransMix's labels from the last block's "
                  "attention, mode batch; prob as in the table.")


def test_machines_differing_only_in_platform_are_told_apart():
  base = dict(cpu="Xeon", cores="2", python="3.11.7", jax="0.10.2",
              devices="['cpu:0']")
  line = report._machines_line(
      [dict(base, platform="Linux-a"), dict(base, platform="Linux-b")])
  assert line == ("- Machine(s): Xeon, 2 cores, Linux-a, Python 3.11.7, jax "
                  "0.10.2, ['cpu:0']; Xeon, 2 cores, Linux-b, Python 3.11.7, "
                  "jax 0.10.2, ['cpu:0']")


def test_machines_line_leaves_out_fields_an_older_record_lacks():
  line = report._machines_line(
      [dict(cpu="Xeon", cores="2", jax="0.10.2", devices="['cpu:0']")])
  assert line == "- Machine(s): Xeon, 2 cores, jax 0.10.2, ['cpu:0']"


_RESULTS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "results")


@pytest.mark.parametrize("study", sorted(
    os.path.relpath(os.path.dirname(runs), _RESULTS)
    for runs, _, _ in os.walk(_RESULTS) if os.path.basename(runs) == "runs"))
def test_committed_summary_is_what_summary_only_rebuilds_from_the_runs(
    tmp_path, study):
  committed = os.path.join(_RESULTS, study)
  os.symlink(os.path.join(committed, "runs"), tmp_path / "runs")
  report.summarize(str(tmp_path))
  for name in ("results.md", "results.json"):
    with open(os.path.join(committed, name)) as f:
      expected = f.read()
    assert (tmp_path / name).read_text() == expected, (
        f"results/{study}/{name} is stale: rebuild it with `python -m "
        f"train.experiments --summary-only --out results/{study}`")


def test_results_guide_quotes_the_committed_study_exactly():
  with open(os.path.join(_RESULTS, "cifar10-5k", "results.json")) as f:
    table = json.load(f)["methods"]
  guide = os.path.join(os.path.dirname(_RESULTS), "docs", "guides",
                       "results.md")
  with open(guide) as f:
    text = f.read()
  for method, row in table.items():
    cells = [report._cell(row[c]) for c in evaluation.CONDITIONS]
    cells += [f"{row[loss]['mean']:.3f}" for loss in ("train_loss",
                                                       "test_loss")]
    quoted = next((line for line in text.splitlines()
                   if line.startswith(f"| {report.LABELS[method]} | ")
                   and "±" in line), None)
    assert quoted is not None, f"no row for {method} in {guide}"
    numbers = [c.strip().removesuffix(" (mixed)")
               for c in quoted.strip("|").split("|")[2:]]
    assert numbers == cells, (method, quoted)
    assert quoted.split("|")[2].strip() == str(len(row["seeds"]))


# ---------------------------------------------------------------------------
# The confirmatory study's evaluation pool (results/cifar10-5k-confirm)


def _image_keys(x):
  return {bytes(image) for image in np.ascontiguousarray(x)}


@pytest.mark.slow
def test_pool_run_records_per_image_correctness_that_an_independent_eval_of_the_checkpoint_reproduces(
    tmp_path, monkeypatch, fast_compile):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from train import data, models, steps  # pylint: disable=g-import-not-at-top

  # Test images of one class that look like the other: a model that learns
  # the training images is right on the pool's training half and on half
  # its test images, so neither a count nor a reordered vector passes for
  # another.
  zip_path = _write_tiny_zip(tmp_path, swap_test=True)
  out, cache = str(tmp_path / "results"), str(tmp_path / "cache")
  # Every image the trainer's loader hands the train step.
  trained_on = []
  batches = data.train_batches

  def spy(*args, **kwargs):
    for x, y in batches(*args, **kwargs):
      trained_on.append(np.array(x))
      yield x, y

  monkeypatch.setattr(data, "train_batches", spy)
  experiments.main(["--zip", zip_path, "--cache-dir", cache, "--out", out,
                    "--methods", "none", "--seeds", "0", "--epochs", "6",
                    "--model", "tiny", "--width", "4", "--batch-size", "8",
                    "--train-subset", "8", "--warmup-epochs", "0", "--pool"])
  pool_file = [f for f in os.listdir(cache) if f.endswith("-pool8.npz")]
  assert len(pool_file) == 1
  with np.load(os.path.join(cache, pool_file[0])) as f:
    x_pool, y_pool, files = f["x"], f["y"], [str(n) for n in f["files"]]
    sha = str(f["files_sha256"])
  # The 8 training images outside the subset, then the 8 test images, each
  # once, none of them an image the run trained on.
  assert len(x_pool) == len(files) == 16
  assert [n.split(os.sep)[0] for n in files] == ["train"] * 8 + ["test"] * 8
  assert len(set(files)) == 16 and len(_image_keys(x_pool)) == 16
  seen = _image_keys(np.concatenate(trained_on))
  assert len(seen) == 8  # the whole subset was trained on
  assert not seen & _image_keys(x_pool)
  assert sha == study_data.files_sha256(files)

  with open(os.path.join(out, "runs", "none-s0.json")) as f:
    record = json.load(f)
  assert record["settings"]["pool"] is True
  pool = record["pool"]
  assert pool["files_sha256"] == sha and pool["n"] == 16
  correct = evaluation.unpack_bits(pool["correct"]["pool"])
  test = evaluation.unpack_bits(pool["correct"]["test"])
  assert correct.shape == (16,) and test.shape == (8,)
  # A recount of the vectors; the test images are the pool's last 8.
  assert record["accuracy"]["pool"] == pool["accuracy"] == correct.sum() / 16
  np.testing.assert_array_equal(test, correct[8:])
  assert record["accuracy"]["clean"] == test.sum() / 8

  # An independent evaluation: the final checkpoint, restored from disk, run
  # through the trainer's own eval step over the pool.
  workdir = record["config"]["workdir"]
  last = max(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints"))
             if s.isdigit())
  saved = ocp.StandardCheckpointer().restore(
      os.path.join(workdir, "checkpoints", str(last), "default"))
  ds = data.load("npz", record["config"]["data_dir"])
  model = models.create_model("tiny", 2, in_channels=3, image_size=16,
                              width=4, seed=0)
  graphdef, _, _ = nnx.split(model, nnx.Param, nnx.BatchStat)
  eval_step = jax.jit(steps.make_eval_step(graphdef, ds.mean, ds.std))
  counted = eval_step(saved, x_pool, y_pool, np.ones(16, bool))
  assert int(counted["count"]) == 16
  assert int(counted["correct"]) == int(correct.sum())
  # The per-image vector is the model's, not a count spread over images.
  state = {k: saved[k] for k in ("params", "batch_stats")}
  logits = jax.jit(steps.make_logits_fn(graphdef, ds.mean, ds.std))(
      state, x_pool)
  np.testing.assert_array_equal(np.argmax(logits, -1) == y_pool, correct)


def test_pack_bits_round_trips_odd_lengths():
  rng = np.random.default_rng(0)
  for n in (0, 1, 7, 8, 9, 55_000):
    v = rng.random(n) < 0.7
    packed = evaluation.pack_bits(v)
    assert packed["n"] == n
    np.testing.assert_array_equal(evaluation.unpack_bits(packed), v)


# The pool of the 5,000-image subset: 45,000 training images, then 10,000
# test images, named by the SHA-256 of their paths.
CIFAR10_5K_POOL_SHA256 = (
    "01564b44aa05e490a806406b8eb4a5e92aca2ae4d07b589cfbbb505db3f1b8e6")
_ZIP = os.environ.get("CIFAR10_JPG_ZIP") or os.path.join(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data",
    "cifar10-jpg.zip")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(_ZIP),
                    reason="needs ../shared/data/cifar10-jpg.zip (CI has it; "
                           "user clones do not)")
def test_cifar10_pool_is_55000_distinct_images_disjoint_from_the_training_arrays(
    tmp_path):
  from train import config, loaders  # pylint: disable=g-import-not-at-top
  cache = str(tmp_path)
  subset = study_data.prepare_data(_ZIP, None, cache, 5000)
  pool_path = study_data.prepare_pool(_ZIP, None, cache, 5000)
  with np.load(pool_path) as f:
    x_pool, files, sha = f["x"], [str(n) for n in f["files"]], str(
        f["files_sha256"])
  assert x_pool.shape == (55_000, 32, 32, 3) and len(set(files)) == 55_000
  assert files[44_999:45_001] == ["train/truck/4998.jpg",
                                  "test/airplane/0000.jpg"]
  assert sha == CIFAR10_5K_POOL_SHA256
  # The pool the confirmatory protocol registers is this very pool.
  with open(os.path.join(_RESULTS, "cifar10-5k-confirm", "PROTOCOL.md")) as f:
    assert sha in f.read()
  assert len(_image_keys(x_pool)) == 55_000
  # The trainer's own training arrays: every image of one epoch-sized batch
  # that its loader yields for the subset.
  src = loaders.open_data(config.Config(dataset="npz", data_dir=subset))
  (x_train, _), = src.train_batches(5000, 0, 0, 1, None)
  assert len(_image_keys(x_train)) == 5000
  assert not _image_keys(x_train) & _image_keys(x_pool)
