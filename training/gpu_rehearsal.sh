#!/usr/bin/env bash
# Rehearse the device call of training/GPU.md here, on the CPU, with the device image's Python packages, so that a
# lent GPU's 15 minutes are not spent finding an incompatibility (torch 2.11, numpy 2.5, Python 3.12 there; this
# project's venv has torch 2.13 and Python 3.11).
#
#   bash training/gpu_rehearsal.sh                                   # the plain call, --dry-run added
#   bash training/gpu_rehearsal.sh --domain randomized --init widened  # options go to training.gpu_job
#
# What it does, as the device tool would: copies the working tree (tracked and untracked files that git does not
# ignore) and .whl/ into a fresh folder, puts the rehearsal venv's python first on PATH as `python3`, sets $OUT to an
# empty folder and runs the fenced command under "## The call" in training/GPU.md verbatim, with only `--dry-run`
# and the options given here inserted after `-m training.gpu_job`. It passes when every phase in gpu_job.md says ok
# and the device tool would bring every file back (at most 8, 16 MiB each; with --init or --unet-config the dry
# run's U-Net has the real call's size).
#
# The first run builds the venv (DEVSIM, default ~/.cache/napari-sff/devsim; about 5 GB: PyPI's torch 2.11 wheel is
# the CUDA build) from DEVSIM_PACKAGES, the versions /work/.library/device/KINDS.md lists for the image ("pip list"
# row; scipy, scikit-image and the rest are there without a recorded version, so the newest is taken). It needs a
# Python 3.12 (DEVSIM_PYTHON, default python3.12 on PATH). Not part of CI: the venv is too big for it.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVSIM=${DEVSIM:-${XDG_CACHE_HOME:-$HOME/.cache}/napari-sff/devsim}
DEVSIM_PYTHON=${DEVSIM_PYTHON:-python3.12}
DEVSIM_PACKAGES=${DEVSIM_PACKAGES:-"torch==2.11.0 numpy==2.5.2 safetensors==0.8.0 scipy scikit-image einops tqdm matplotlib"}

if [ ! -x "$DEVSIM/bin/python" ]; then
    command -v "$DEVSIM_PYTHON" >/dev/null || { echo "error: $DEVSIM_PYTHON not found; set DEVSIM_PYTHON to a Python 3.12" >&2; exit 1; }
    echo "building the rehearsal venv in $DEVSIM (about 5 GB, several minutes)"
    "$DEVSIM_PYTHON" -m venv "$DEVSIM"
    # shellcheck disable=SC2086
    "$DEVSIM/bin/python" -m pip install -q $DEVSIM_PACKAGES
fi
[ -d .whl ] || bash training/gpu_wheels.sh

command=$(awk '/^## The call/{call=1} call && /^```/{if (inside) exit; inside=1; next} inside' training/GPU.md)
case "$command" in
    *"-m training.gpu_job"*) ;;
    *) echo "error: no fenced command with '-m training.gpu_job' under '## The call' in training/GPU.md" >&2; exit 1 ;;
esac
extra="--dry-run"
for arg in "$@"; do extra+=" $(printf '%q' "$arg")"; done
command=${command/"-m training.gpu_job"/"-m training.gpu_job $extra"}

stage=$(mktemp -d "${TMPDIR:-/tmp}/napari-sff-rehearsal.XXXXXX")
mkdir -p "$stage/tree" "$stage/out" "$stage/bin"
git ls-files -z -co --exclude-standard | xargs -0 cp --parents -t "$stage/tree"
cp -r .whl "$stage/tree/"
size=$(du -sk "$stage/tree" | cut -f1)  # the device tool carries at most 64 MiB with the working tree
[ "$size" -le 65536 ] || { echo "error: the tree and .whl hold ${size} KiB, over the tool's 64 MiB; remove untracked bulk" >&2; exit 1; }
printf '#!/bin/sh\nexec "%s" "$@"\n' "$DEVSIM/bin/python" > "$stage/bin/python3"  # a link would lose the venv
chmod +x "$stage/bin/python3"
echo "rehearsal in $stage (tree ${size} KiB): $("$DEVSIM/bin/python" -c 'import sys, numpy, torch; print(f"Python {sys.version.split()[0]}, torch {torch.__version__}, numpy {numpy.__version__}")')"
echo "command: $command"
status=0
(cd "$stage/tree" && PATH="$stage/bin:$PATH" OUT="$stage/out" bash -c "$command") || status=$?
report="$stage/out/gpu_job.json"  # rewritten after each phase; gpu_job.md is written once, at the end
[ -f "$stage/out/gpu_job.md" ] || { echo "error: the command exited $status without finishing (no gpu_job.md); see $stage/out/log.txt" >&2; exit 1; }
cat "$stage/out/gpu_job.md"
# phases not ok, and files the device tool would leave behind (training.gpu_job.runner.not_returnable)
bad=$("$DEVSIM/bin/python" - "$report" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
print("; ".join([f"{name}: {result['status']}" for name, result in report["phases"].items() if result["status"] != "ok"]
                + [f"left behind: {problem}" for problem in report.get("not_returnable", [])]))
PY
)
if [ "$status" -ne 0 ] || [ -n "$bad" ]; then
    echo "rehearsal FAILED (exit $status)${bad:+; not ok:$bad}; files in $stage/out" >&2
    exit 1
fi
echo "rehearsal passed: every phase ok; files in $stage/out"
