"""The device check's data path: a zip of JPEG folders packed into one file
and unpacked into the same image folder and the same decoded arrays."""

import os
import pathlib
import zipfile

import numpy as np
import pytest
from PIL import Image

from bench import devdata
from train import data

ZIP = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / (
    "cifar10-jpg.zip")


def _zip(tmp_path, classes=("cat", "dog", "ant"), per_class=(5, 2)):
  rng = np.random.default_rng(0)
  path = tmp_path / "images.zip"
  with zipfile.ZipFile(path, "w") as z:
    for split, n in zip(("train", "test"), per_class):
      for c in classes:
        for i in range(n):
          im = Image.fromarray(rng.integers(0, 256, (6, 5, 3), np.uint8))
          im.save(tmp_path / "x.jpg", quality=80)
          z.write(tmp_path / "x.jpg", f"set/{split}/{c}/{i:04d}.jpg")
  z = zipfile.ZipFile(path)
  z.extractall(tmp_path / "extracted")
  return path, tmp_path / "extracted" / "set"


def test_pack_unpack_is_the_zips_image_folder(tmp_path):
  path, extracted = _zip(tmp_path)
  packed = tmp_path / "pack.npz"
  assert devdata.pack(str(path), str(packed)) == {"train": 15, "test": 6}
  root, npz = devdata.unpack(str(packed), str(tmp_path / "out"), workers=1)
  for dirpath, _, files in os.walk(extracted):
    for f in files:
      a = os.path.join(dirpath, f)
      b = os.path.join(root, os.path.relpath(a, extracted))
      assert open(a, "rb").read() == open(b, "rb").read()
  expected = data.load_imagefolder(str(extracted))
  got = data.load_npz(npz)
  for k in ("x_train", "y_train", "x_test", "y_test"):
    np.testing.assert_array_equal(getattr(got, k), getattr(expected, k))
  with np.load(npz) as f:
    assert list(f["class_names"]) == ["ant", "cat", "dog"]


def test_a_subset_is_balanced_over_classes(tmp_path):
  path, _ = _zip(tmp_path)
  packed = tmp_path / "pack.npz"
  assert devdata.pack(str(path), str(packed), train=7, test=3) == {
      "train": 7, "test": 3}
  with np.load(packed) as f:
    assert np.bincount(f["train_labels"]).tolist() == [3, 2, 2]
    assert np.bincount(f["test_labels"]).tolist() == [1, 1, 1]


@pytest.mark.skipif(not ZIP.exists(), reason=f"no {ZIP} (../shared absent)")
def test_real_cifar_subset(tmp_path):
  packed = tmp_path / "pack.npz"
  assert devdata.pack(str(ZIP), str(packed), train=20, test=10) == {
      "train": 20, "test": 10}
  _, npz = devdata.unpack(str(packed), str(tmp_path / "out"), workers=1)
  ds = data.load_npz(npz)
  assert ds.x_train.shape == (20, 32, 32, 3) and ds.x_train.dtype == np.uint8
  assert np.bincount(ds.y_train).tolist() == [2] * 10
