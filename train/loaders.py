"""The loader choice (`--loader`): which loader reads a dataset, and the
settings that are that loader's own."""

from __future__ import annotations

import dataclasses
import os

from train import data
from train import device_data
from train import grain_data
from train.config import Config


def open_data(cfg: Config) -> data.Source:
  """The dataset through the loader `cfg.loader` asks for.

  `memory` decodes everything into RAM; `device` also puts the training
  images on the devices (`device_data`); `grain` reads an image folder batch
  by batch (`grain_data`), by the recipe `--crop` names or the data's size
  implies; `auto` takes Grain for an image folder above
  `--loader-memory-gb` decoded, or for `--crop resized`, which only Grain
  does. The source's `settings` say what the choice fixed. With
  `--val-split`, part of the training images is held out for validation
  (`data.validation_split`).
  """
  if cfg.loader == "device":
    return device_data.source(*_load(cfg))
  if cfg.dataset != "imagefolder" or cfg.loader == "memory":
    return data.in_memory(*_load(cfg))
  if not os.path.isdir(cfg.data_dir or ""):
    data.load(cfg.dataset, cfg.data_dir)  # raises, naming the layout
  files = data.scan_imagefolder(cfg.data_dir)
  if (cfg.loader == "auto" and cfg.crop != "resized"
      and grain_data.decoded_bytes(files) <= cfg.loader_memory_gb * 2**30):
    return data.in_memory(*_load(cfg))
  val = None
  if cfg.val_split:
    train, held = data.validation_split(files.train_labels, cfg.val_split)
    val = ([files.train_paths[i] for i in held], files.train_labels[held])
    files = dataclasses.replace(
        files, train_paths=[files.train_paths[i] for i in train],
        train_labels=files.train_labels[train])
  recipe = grain_data.choose_recipe(files, cfg.crop, cfg.image_size,
                                    flip=cfg.flip is not False)
  return grain_data.source(files, recipe, cfg.workers, val=val)


def _load(cfg: Config):
  """The dataset in memory, and the held-out validation set (or None)."""
  ds = data.load(cfg.dataset, cfg.data_dir)
  return data.hold_out(ds, cfg.val_split) if cfg.val_split else (ds, None)
