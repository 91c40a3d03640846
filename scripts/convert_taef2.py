"""Convert the pretrained TAEF2 weights (two zip-format torch state dicts, MIT licence) into the
package's fp16 safetensors file, with its SHA-256 record and the licence notice beside it.

    python -m scripts.convert_taef2 ../shared/data/pretrained/taef2
      -> codec/weights/taef2.safetensors (+ .sha256), codec/weights/TAEF2_LICENSE

The state dicts are read with `weights_only=True` (no pickle code runs) and must fill our own
modules (codec/models/taef2.py) key for key; every value is already fp16, so the conversion is
exact. Nothing here downloads anything.
"""

import argparse
import hashlib
import shutil
from pathlib import Path

import torch

from codec.model_files import DEFAULT_TAEF2_WEIGHTS, save_taef2
from codec.models.taef2 import Taef2

SOURCE = (
    "github.com/madebyollin/taesd @ 5cccb12dc72074a4be35680c3b108548a7c69978 (taef2_encoder.pth, taef2_decoder.pth)"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="folder with taef2_encoder.pth, taef2_decoder.pth and LICENSE")
    ap.add_argument("--out", type=Path, default=DEFAULT_TAEF2_WEIGHTS)
    args = ap.parse_args()

    model = Taef2()
    digests = {}
    for side in ("encoder", "decoder"):
        path = args.source / f"taef2_{side}.pth"
        state = torch.load(path, map_location="cpu", weights_only=True)
        if any(v.dtype != torch.float16 for v in state.values()):
            raise SystemExit(f"{path}: expected fp16 tensors only")
        getattr(model, side).load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
        digests[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    info = {"source": SOURCE, "source_sha256": digests, "licence": "MIT, Copyright (c) 2023 Ollin Boer Bohan"}
    digest = save_taef2(args.out, model, info)
    shutil.copyfile(args.source / "LICENSE", args.out.with_name("TAEF2_LICENSE"))
    print(f"{args.out} ({args.out.stat().st_size} bytes, sha256 {digest})")


if __name__ == "__main__":
    main()
