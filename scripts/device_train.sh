#!/usr/bin/env bash
# The GPU-window training run behind the shipped weights (see docs/model_card.md).
# Runs on the lent GPU machine from the repository root, with the data pack
# (python -m scripts.pack_data) in .data/ and cp312 wheels of compressai and
# pytorch-msssim in .whl/. Writes the weights and logs to $OUT (or ./out).
# Extra arguments go to `python -m scripts.train` (e.g. --msssim-weight 0.3 --amp bf16 --compile).
set -euo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -W ignore -m scripts.train --data .data/trainpack.npz --out "$OUT/dpc-v1.safetensors" \
    --ae-seconds "${AE_SECONDS:-200}" --compressor-seconds "${COMPRESSOR_SECONDS:-300}" \
    --batch 16 --crop 256 --device cuda "$@" 2>&1 | tee "$OUT/train.log"
