#!/usr/bin/env bash
# One command for a GPU machine, at most 7 minutes with compiles (run it with
# a 420 s limit): the roofline table, the k-way loss table, trainer
# throughput per loader and the confirmatory study's GPU protocol, each
# part with its own budget and packed into $OUT as it ends. The parts are
# described in results/gpu/device_check.py.
#
# What must travel with the working tree (64 MiB in all; both folders are
# git-ignored through .git/info/exclude, never committed):
#   .devdata/cifar10-jpg.npz  CIFAR-10's JPEG bytes, 53.5 MiB, made here by
#       python -m bench.devdata pack ../shared/data/cifar10-jpg.zip .devdata/cifar10-jpg.npz
#     (the zip itself is 61 MiB with its headers and would not fit beside
#     the wheels; decoded it is 184 MB). The script unpacks it into an image
#     folder for Grain and a decoded .npz for the memory and device loaders.
#   .whl/  Grain and the two packages it needs that the device image lacks
#     (4.4 MiB), downloaded here for the device's Python 3.12 with
#       echo /.whl/ >> .git/info/exclude; echo /.devdata/ >> .git/info/exclude
#       python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#         --implementation cp --platform manylinux_2_28_x86_64 \
#         --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
#         --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
#         -d .whl grain==0.2.18 array-record==0.8.6 portpicker==1.6.0
#     (the image has Grain's other needs: absl-py, cloudpickle, etils,
#     numpy, protobuf, psutil).
#
# On the device (the tool's call; carry both folders):
#   bash results/gpu/device_check.sh            # writes under $OUT
# Here, a CPU check of every part end to end in a few minutes:
#   OUT=/tmp/device-check bash results/gpu/device_check.sh --quick
# Other flags: see `python3 results/gpu/device_check.py --help`.
set -uo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
if compgen -G ".whl/*.whl" > /dev/null && ! "$PYTHON" -c "import grain" 2>/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
exec "$PYTHON" results/gpu/device_check.py "$@"
