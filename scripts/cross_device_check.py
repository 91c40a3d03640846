"""Encode on one device, decode on another, and compare: does every file decode, and
are the decoded latents the encoder's? (A measurement for issue #7.)

    python -m scripts.cross_device_check ../shared/data/kodak --encode-device cuda --decode-device cpu

Per image: whether the decoder reproduced the encoder's symbols (else the
symbol check refuses the file: DecoderDesyncError), and the largest difference
between the latent the encoder's device reconstructs and the decoder's.
"""

import argparse
import json
from pathlib import Path

import torch

from codec import Codec, CodecError, load_image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", type=Path)
    ap.add_argument("--encode-device", default="cuda")
    ap.add_argument("--decode-device", default="cpu")
    ap.add_argument("--quality", type=int, default=3)
    ap.add_argument("--no-tf32", action="store_true", help="disable TF32 in cuDNN/cuBLAS on the GPU")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.no_tf32:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    enc = Codec.load(device=args.encode_device)
    dec = Codec.load(device=args.decode_device)
    rows = []
    for path in sorted(args.images.glob("*.png")):
        data = enc.compress(load_image(path), args.quality)
        _, latent_enc = enc.stages.decode_latent(data)
        row = {"image": path.name, "bytes": len(data)}
        try:
            _, latent_dec = dec.stages.decode_latent(data)
            row["decoded"] = True
            row["latent_max_abs_diff"] = float((latent_dec.cpu() - latent_enc.cpu()).abs().max())
            row["latent_identical"] = bool(torch.equal(latent_dec.cpu(), latent_enc.cpu()))
        except CodecError as exc:
            row.update(decoded=False, error=f"{type(exc).__name__}: {exc}")
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {
        "encode_device": torch.cuda.get_device_name() if args.encode_device.startswith("cuda") else args.encode_device,
        "decode_device": args.decode_device,
        "tf32": not args.no_tf32,
        "images": len(rows),
        "decoded": sum(r["decoded"] for r in rows),
        "latents_identical": sum(r.get("latent_identical", False) for r in rows),
    }
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
