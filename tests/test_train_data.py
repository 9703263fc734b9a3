"""Dataset loaders (on fixtures the tests write) and the batch pipeline."""

import os
import pickle
import tarfile
import tracemalloc
import zipfile

import numpy as np
import pytest
from PIL import Image

from train import data

# The real CIFAR-10 JPEGs, next to the repository (or named by $CIFAR10_JPG_ZIP).
CIFAR_ZIP = os.environ.get("CIFAR10_JPG_ZIP") or os.path.join(
    os.path.dirname(__file__), "..", "..", "shared", "data", "cifar10-jpg.zip")


def _write_cifar10(root, n=4):
  """A tiny cifar-10-batches-py folder: 5 train batches and a test batch."""
  folder = os.path.join(root, "cifar-10-batches-py")
  os.makedirs(folder)
  rng = np.random.default_rng(0)
  for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
    batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"labels": list(rng.integers(0, 10, n))}
    with open(os.path.join(folder, name), "wb") as f:
      pickle.dump(batch, f)
  with open(os.path.join(folder, "batches.meta"), "wb") as f:
    pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f)
  return folder


def test_cifar10_folder_and_tarball(tmp_path):
  folder = _write_cifar10(str(tmp_path))
  with open(os.path.join(folder, "data_batch_1"), "rb") as f:
    first = pickle.load(f, encoding="bytes")
  tarball = tmp_path / "cifar-10-python.tar.gz"
  with tarfile.open(tarball, "w:gz") as tar:
    tar.add(folder, arcname="cifar-10-batches-py")
  for path in (folder, str(tmp_path), str(tarball)):
    ds = data.load("cifar10", path)
    assert ds.x_train.shape == (20, 32, 32, 3) and ds.x_test.shape[0] == 4
    assert ds.class_names[3] == "c3"
    # CHW rows of the pickle become HWC images.
    np.testing.assert_array_equal(
        ds.x_train[0], first[b"data"][0].reshape(3, 32, 32).transpose(1, 2, 0))
    np.testing.assert_array_equal(ds.y_train[:4], first[b"labels"])


def test_cifar100_folder(tmp_path):
  folder = tmp_path / "cifar-100-python"
  folder.mkdir()
  rng = np.random.default_rng(0)
  for name, n in (("train", 6), ("test", 3)):
    with open(folder / name, "wb") as f:
      pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                   b"fine_labels": list(range(n)),
                   b"coarse_labels": [0] * n}, f)
  with open(folder / "meta", "wb") as f:
    pickle.dump({b"fine_label_names": [f"f{i}".encode() for i in range(100)]},
                f)
  ds = data.load("cifar100", str(folder))
  assert ds.num_classes == 100 and ds.x_train.shape == (6, 32, 32, 3)
  assert list(ds.y_test) == [0, 1, 2]


def test_npz(tmp_path):
  path = tmp_path / "d.npz"
  rng = np.random.default_rng(0)
  np.savez(path, x_train=rng.random((10, 6, 6)), y_train=np.arange(10) % 3,
           x_test=rng.random((4, 6, 6)), y_test=np.arange(4) % 3)
  ds = data.load("npz", str(path))
  assert ds.image_shape == (6, 6, 1) and ds.num_classes == 3
  assert ds.mean.shape == (1,) and ds.std[0] > 0


def test_digits_fixed_split():
  ds = data.load("digits")
  assert ds.x_train.shape == (1438, 8, 8, 1) and ds.x_test.shape == (359, 8, 8, 1)
  assert ds.x_train.dtype == np.uint8 and ds.x_train.max() == 255
  assert np.array_equal(ds.y_test, data.load("digits").y_test)
  assert np.bincount(ds.y_test).min() >= 35  # stratified


@pytest.mark.skipif(not os.path.exists(CIFAR_ZIP),
                    reason=f"real CIFAR-10 JPEG zip not found at {CIFAR_ZIP}")
def test_imagefolder_from_the_real_cifar10_jpegs(tmp_path):
  with zipfile.ZipFile(CIFAR_ZIP) as z:
    per_class = {}
    for name in z.namelist():
      parts = name.split("/")  # cifar10/<split>/<class>/NNNN.jpg
      if len(parts) == 4 and parts[3].endswith(".jpg"):
        key = (parts[1], parts[2])
        if per_class.setdefault(key, 0) < 2:
          per_class[key] += 1
          z.extract(name, tmp_path)
  ds = data.load("imagefolder", str(tmp_path / "cifar10"))
  assert ds.num_classes == 10 and "airplane" in ds.class_names
  assert ds.x_train.shape == (20, 32, 32, 3) and ds.x_test.shape == (20, 32, 32, 3)
  assert ds.x_train.dtype == np.uint8
  assert sorted(np.bincount(ds.y_train)) == [2] * 10


def _png(path, size):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.zeros(size + (3,), np.uint8)).save(path)


def test_missing_path_names_the_expected_layout(tmp_path):
  for name in ("cifar10", "imagefolder", "npz"):
    with pytest.raises(data.DataError, match="does not exist.*expects"):
      data.load(name, str(tmp_path / "nope"))


def test_wrong_layout_errors(tmp_path):
  (tmp_path / "images").mkdir()
  with pytest.raises(data.DataError, match=r"no train/ and test/.*expects"):
    data.load("imagefolder", str(tmp_path / "images"))
  with pytest.raises(data.DataError, match=r"data_batch_1.*expects"):
    data.load("cifar10", str(tmp_path / "images"))
  np.savez(tmp_path / "bad.npz", x_train=np.zeros((2, 4, 4)))
  with pytest.raises(data.DataError, match=r"no array 'y_train'.*expects"):
    data.load("npz", str(tmp_path / "bad.npz"))
  (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
  with pytest.raises(data.DataError, match="(?s)could not read.*expected"):
    data.load("cifar10", str(tmp_path / "junk.tar.gz"))


def test_mismatched_image_sizes_error(tmp_path):
  _png(str(tmp_path / "train/a/1.png"), (8, 8))
  _png(str(tmp_path / "train/a/2.png"), (8, 9))
  _png(str(tmp_path / "test/a/1.png"), (8, 8))
  with pytest.raises(data.DataError, match=r"2.png is 9x8 .* one size"):
    data.load("imagefolder", str(tmp_path))
  os.remove(tmp_path / "train/a/2.png")
  _png(str(tmp_path / "val/a/1.png"), (8, 8))  # test/ is preferred to val/
  os.remove(tmp_path / "test/a/1.png")
  _png(str(tmp_path / "test/a/1.png"), (6, 6))
  with pytest.raises(data.DataError, match="one size"):
    data.load("imagefolder", str(tmp_path))


def _toy(n_train=10):
  x = np.arange(n_train, dtype=np.uint8).reshape(n_train, 1, 1, 1)
  return data.Dataset(x, np.arange(n_train), x[:3], np.arange(3), ["a"] * 10)


def test_train_batches_shuffle_per_epoch_drop_remainder_and_resume():
  ds = _toy()
  batches = list(data.train_batches(ds, 4, seed=1, start_step=0, num_steps=6))
  assert len(batches) == 6 and all(len(y) == 4 for _, y in batches)
  epoch0 = np.concatenate([y for _, y in batches[:2]])
  epoch1 = np.concatenate([y for _, y in batches[2:4]])
  assert len(set(epoch0)) == 8 and not np.array_equal(epoch0, epoch1)
  # Starting mid-epoch replays exactly the same batches.
  resumed = list(data.train_batches(ds, 4, seed=1, start_step=3, num_steps=6))
  for (_, a), (_, b) in zip(batches[3:], resumed):
    np.testing.assert_array_equal(a, b)
  other_seed = list(data.train_batches(ds, 4, seed=2, start_step=0,
                                       num_steps=1))
  assert not np.array_equal(other_seed[0][1], batches[0][1])


def test_eval_batches_cover_every_sample_once():
  x = np.arange(10).reshape(10, 1, 1, 1)
  batches = list(data.eval_batches(x, np.arange(10), 4))
  assert [len(m) for _, _, m in batches] == [4, 4, 4]
  seen = np.concatenate([y[m] for _, y, m in batches])
  np.testing.assert_array_equal(seen, np.arange(10))
  assert batches[-1][2].tolist() == [True, True, False, False]


def test_truncated_or_empty_cifar_files_name_the_file(tmp_path):
  folder = _write_cifar10(str(tmp_path / "src"))
  tarball = tmp_path / "cifar-10-python.tar.gz"
  with tarfile.open(tarball, "w:gz") as tar:
    tar.add(folder, arcname="cifar-10-batches-py")
  blob = tarball.read_bytes()
  for name, content in (("truncated", blob[: len(blob) // 2]),
                        ("empty", b"")):
    path = tmp_path / name / "cifar-10-python.tar.gz"
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(data.DataError, match=f"{path}.*truncated"):
      data.load("cifar10", str(path))
  # An empty batch file in the extracted folder.
  open(os.path.join(folder, "data_batch_3"), "wb").close()
  with pytest.raises(data.DataError, match="data_batch_3.*truncated"):
    data.load("cifar10", folder)


def test_a_folder_that_contains_the_tarball(tmp_path):
  folder = _write_cifar10(str(tmp_path / "src"))
  (tmp_path / "downloads").mkdir()
  with tarfile.open(tmp_path / "downloads" / "cifar-10-python.tar.gz",
                    "w:gz") as tar:
    tar.add(folder, arcname="cifar-10-batches-py")
  ds = data.load("cifar10", str(tmp_path / "downloads"))
  assert ds.x_train.shape == (20, 32, 32, 3)


def test_labels_out_of_range_are_refused_at_load_time(tmp_path):
  folder = _write_cifar10(str(tmp_path))
  with open(os.path.join(folder, "test_batch"), "rb") as f:
    batch = pickle.load(f, encoding="bytes")
  batch[b"labels"][1] = 10  # 10 classes in batches.meta
  with open(os.path.join(folder, "test_batch"), "wb") as f:
    pickle.dump(batch, f)
  with pytest.raises(data.DataError,
                     match=r"cifar-10-batches-py.*test labels.*\[10\].*\[0, 10\)"):
    data.load("cifar10", folder)
  path = tmp_path / "d.npz"
  np.savez(path, x_train=np.zeros((4, 2, 2)), y_train=[0, 1, -3, 1],
           x_test=np.zeros((2, 2, 2)), y_test=[0, 1])
  with pytest.raises(data.DataError, match=r"d.npz.*train labels.*\[-3\]"):
    data.load("npz", str(path))


def test_imagefolder_test_classes_missing_from_train(tmp_path):
  _png(str(tmp_path / "train/cat/1.png"), (4, 4))
  _png(str(tmp_path / "test/cat/1.png"), (4, 4))
  _png(str(tmp_path / "test/dog/1.png"), (4, 4))
  _png(str(tmp_path / "test/emu/1.png"), (4, 4))
  with pytest.raises(data.DataError,
                     match=r"test/ has classes not in .*train/: \['dog', 'emu'\]"):
    data.load("imagefolder", str(tmp_path))


def test_normalisation_statistics_in_float32_chunks():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (20000, 8, 8, 3), dtype=np.uint8)
  x[..., 2] //= 8  # channels of different scale
  reference = x.astype(np.float64)
  tracemalloc.start()
  ds = data.Dataset(x, np.zeros(20000, np.int32), x[:2], np.zeros(2, np.int32),
                    ["a"])
  _, peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  np.testing.assert_allclose(ds.mean, reference.mean(axis=(0, 1, 2)),
                             rtol=1e-6)
  np.testing.assert_allclose(ds.std, reference.std(axis=(0, 1, 2)), rtol=1e-5)
  assert ds.mean.dtype == ds.std.dtype == np.float32
  # Chunks: less than the uint8 set itself, let alone a float copy (4-8x).
  assert peak < x.nbytes, peak


def _jpeg_folder(root, size=16):
  """2 classes x 3 train and 1 test JPEGs of noise (which JPEG cannot
  compress much, so that a cut file loses image data, not just padding)."""
  rng = np.random.default_rng(0)
  for split, n in (("train", 3), ("test", 1)):
    for c in ("a", "b"):
      os.makedirs(root / split / c, exist_ok=True)
      for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), np.uint8)).save(
            root / split / c / f"{i}.jpg", quality=95)


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_a_damaged_jpeg_is_one_line_naming_the_file(tmp_path, damage):
  _jpeg_folder(tmp_path)
  bad = tmp_path / "train" / "b" / "1.jpg"
  raw = bad.read_bytes()
  # Truncated: the header survives, the image data is cut (PIL fails on
  # decoding). Corrupt: not a JPEG at all (PIL fails on opening).
  bad.write_bytes(raw[:len(raw) * 2 // 3] if damage == "truncated"
                  else b"\x00garbage" * 50)
  with pytest.raises(data.DataError) as e:
    data.load("imagefolder", str(tmp_path))
  message = str(e.value)
  assert message.startswith(f"{bad} cannot be decoded"), message
  assert "truncated or corrupt" in message and "\n" not in message


def test_validation_split_is_fixed_per_class_and_disjoint():
  labels = np.repeat(np.arange(3), [10, 20, 7]).astype(np.int32)
  train, val = data.validation_split(labels, 0.2)
  again = data.validation_split(labels, 0.2)
  np.testing.assert_array_equal(train, again[0])  # fixed by the labels
  assert np.bincount(labels[val]).tolist() == [2, 4, 1]  # round(0.2 * n)
  np.testing.assert_array_equal(np.sort(np.concatenate([train, val])),
                                np.arange(len(labels)))
  with pytest.raises(data.DataError, match="holds out no image"):
    data.validation_split(labels, 0.01)
  with pytest.raises(data.DataError, match="all 2 training images of class"):
    data.validation_split(np.array([0, 0, 1, 1, 1, 1, 1]), 0.8)
  # The statistics are those of the images left for training.
  x = np.arange(37, dtype=np.uint8).reshape(37, 1, 1, 1)
  src = data.in_memory(*data.hold_out(data.Dataset(
      x, labels, x[:3], labels[:3], ["a", "b", "c"]), 0.2))
  assert (src.num_train, src.num_val) == (len(train), len(val))
  np.testing.assert_allclose(src.mean, x[train].mean(), rtol=1e-6)
  seen = np.concatenate([xb[m] for xb, _, m in src.val_batches(4, None)])
  np.testing.assert_array_equal(seen.ravel(), x[val].ravel())
