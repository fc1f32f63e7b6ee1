#!/usr/bin/env bash
# Pure-Python wheels the GPU machine lacks, downloaded here into .whl/ (git-ignored) for the device tool's `carry`.
#
#   bash training/gpu_wheels.sh          # then: run(..., carry=[".whl"]) as training/GPU.md shows
#
# The device image (/work/.library/device/KINDS.md, "Python packages already there") has torch, numpy, scipy,
# scikit-image, einops, safetensors and tqdm, but not nibabel or MONAI, which training imports. Both are pure
# Python (py3-none-any), so one download serves its Python 3.12. Versions are this project's venv's. pydicom,
# highdicom and SimpleITK are not needed: training and the GPU job never import them.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
WHEELS=(nibabel==5.4.2 monai==1.6.1)
mkdir -p .whl
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 --platform any -d .whl "${WHEELS[@]}"
# The tool carries at most 64 MiB with the working tree: refuse to go near it.
size=$(du -sk .whl | cut -f1)
ls -l .whl
echo "wheels: ${size} KiB in .whl (the working tree and carried paths together must stay under 64 MiB)"
if [ "$size" -gt 32768 ]; then echo "error: .whl holds over 32 MiB; remove old wheels (rm -r .whl) and rerun" >&2; exit 1; fi
