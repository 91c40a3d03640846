"""Which parts of two safetensors weight files differ: per name prefix (`compressor`, `decoder`,
`refiner`, ...), how many tensors are bit-identical and how many differ.

    python -m scripts.compare_weights A.safetensors B.safetensors

How the finding "runs r1-r8 never trained the decoder" was checked (docs/latent-codec.md): every
run's `decoder.*` tensors against s4's (git show 69d32c7:rd/latent-codec/dpc-v3-preview.safetensors).
"""

import argparse
from collections import Counter
from pathlib import Path

import torch
from safetensors.torch import load_file


def compare(a: dict, b: dict) -> dict[str, Counter]:
    """prefix -> Counter of 'same', 'differ', 'only in A', 'only in B' over the tensor names."""
    out: dict[str, Counter] = {}
    for name in sorted(set(a) | set(b)):
        if name not in b:
            kind = "only in A"
        elif name not in a:
            kind = "only in B"
        else:
            same = a[name].shape == b[name].shape and torch.equal(a[name], b[name])
            kind = "same" if same else "differ"
        out.setdefault(name.split(".")[0], Counter())[kind] += 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    args = ap.parse_args()
    for prefix, counts in compare(load_file(str(args.a)), load_file(str(args.b))).items():
        print(f"{prefix:12s} " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
