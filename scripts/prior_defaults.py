"""Choose the default refinement per quality level from measurements, and record it in the prior's weights.

    python -m scripts.refinement_table ../shared/data/kodak --levels 1 2 3 4 5 6 --samplers ddim \\
        --steps 0 1 2 4 8 --guidance 1 --images 8 --out rd/adaptive.csv
    python -m scripts.prior_defaults rd/adaptive.csv --sampler ddim --write

Rule ("adaptive step allocation"): per level, the fewest steps whose mean spectral
gap is within --tolerance of the best measured one; 0 steps (plain decoder) where no
step count lowers the gap by at least --min-gain against steps 0, since refinement
then costs time and PSNR for nothing. --write stores the chosen steps, sampler and
guidance in the prior weight file's config (its SHA-256 record is rewritten).
"""

import argparse
import csv
import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

from codec.model_files import DEFAULT_PRIOR_WEIGHTS, load_prior, save_prior


def choose(rows: list[dict], sampler: str, guidance: float, tolerance: float, min_gain: float) -> dict[int, int]:
    gaps: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        plain = r["steps"] == "0"
        if plain or (
            r["sampler"] == sampler
            and float(r["guidance"]) == guidance
            and r["start"] == "1"
            and r["early_exit"] == "0"
        ):
            gaps[int(r["level"])][int(r["steps"])].append(float(r["spectral_gap"]))
    chosen = {}
    for level, by_steps in sorted(gaps.items()):
        mean = {s: float(np.mean(v)) for s, v in by_steps.items()}
        best = min(mean.values())
        if 0 not in mean or best > mean[0] * (1 - min_gain):
            chosen[level] = 0
            continue
        chosen[level] = min(s for s, g in mean.items() if s > 0 and g <= best * (1 + tolerance))
        print(
            f"level {level}: gap "
            + ", ".join(f"{s} steps {g:.3f}" for s, g in sorted(mean.items()))
            + f" -> {chosen[level]} steps"
        )
    return chosen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", type=Path, help="rows from `python -m scripts.refinement_table`")
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--guidance", type=float, default=1.0)
    ap.add_argument("--tolerance", type=float, default=0.05, help="relative gap tolerance against the best")
    ap.add_argument("--min-gain", type=float, default=0.05, help="least relative gap reduction worth refining for")
    ap.add_argument("--weights", type=Path, default=DEFAULT_PRIOR_WEIGHTS)
    ap.add_argument("--write", action="store_true", help="store the defaults in the weight file")
    args = ap.parse_args()

    with open(args.csv) as f:
        rows = list(csv.DictReader(f))
    chosen = choose(rows, args.sampler, args.guidance, args.tolerance, args.min_gain)
    bundle = load_prior(args.weights)
    levels = bundle.prior.cfg.levels
    if sorted(chosen) != list(range(1, levels + 1)):
        raise SystemExit(f"measurements cover levels {sorted(chosen)}; need 1..{levels}")
    steps = tuple(chosen[q] for q in range(1, levels + 1))
    print(f"default steps per level: {steps}, sampler {args.sampler}, guidance {args.guidance:g}")
    if args.write:
        cfg = replace(
            bundle.prior.cfg, default_steps=steps, default_sampler=args.sampler, default_guidance=args.guidance
        )
        bundle.prior.cfg = cfg
        info = dict(
            bundle.info,
            defaults=dict(source=str(args.csv), rule=vars(args) | {"csv": str(args.csv), "weights": str(args.weights)}),
        )
        digest = save_prior(args.weights, bundle.prior, json.loads(json.dumps(info, default=str)))
        print(f"written to {args.weights} (sha256 {digest[:16]})")


if __name__ == "__main__":
    main()
