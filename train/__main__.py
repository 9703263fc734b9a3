"""`python -m train`: see `python -m train --help`."""

import sys

from train import config
from train import data
from train import train


def main(argv=None) -> None:
  cfg = config.parse_args(argv)
  try:
    train.train_and_evaluate(cfg)
  except train.Interrupted as e:
    print(f"{e}", file=sys.stderr)
    # The shell's code for a process a signal ended: 143 for SIGTERM, so
    # that a scheduler sees the run did not finish.
    sys.exit(128 + (e.signum or 15))
  except (data.DataError, train.TrainError) as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  main()
