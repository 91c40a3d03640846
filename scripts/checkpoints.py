"""Training checkpoints without pickle: tensors in safetensors, everything else in its JSON metadata.

    save_checkpoint(path, {"ae": model, "opt": optimizer}, meta={"stage": ..., "step": ...})
    meta = load_checkpoint(path, {"ae": model, "opt": optimizer})
    meta = read_meta(path)                                     # the metadata alone

    ckpt = TimedCheckpoint(path, every=300)                    # a run with a wall-clock budget
    if ckpt.due():
        ckpt.save({"ae": model, "opt": optimizer}, meta={...})

Modules and optimizers are flattened to `name.key` tensors (optimizer state per
parameter index); non-tensor state (step counters, param groups, Python RNG state)
rides in the metadata as JSON. Written atomically, so an interrupted save leaves the
previous checkpoint intact.
"""

import json
import random
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    state = opt.state_dict()
    tensors, plain = {}, {"param_groups": state["param_groups"], "state": {}}
    for idx, entries in state["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                plain["state"].setdefault(str(idx), {})[key] = value
    return tensors, plain


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: dict, plain: dict) -> None:
    state: dict = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    for idx, entries in plain["state"].items():
        state.setdefault(int(idx), {}).update(entries)
    opt.load_state_dict({"state": state, "param_groups": plain["param_groups"]})


def save_checkpoint(path: Path, parts: dict, meta: dict, rng: random.Random | None = None) -> None:
    tensors, plain = {}, {}
    for name, part in parts.items():
        if isinstance(part, torch.optim.Optimizer):
            flat, plain[name] = _flatten_optimizer(part)
        else:
            flat = {k: v.detach().cpu().contiguous() for k, v in part.state_dict().items()}
        tensors.update({f"{name}.{k}": v for k, v in flat.items()})
    tensors["rng.torch"] = torch.get_rng_state()
    meta = dict(meta, optimizers=plain)
    if rng is not None:
        meta["rng.python"] = rng.getstate()
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"meta": json.dumps(meta)})
    tmp.replace(path)


def read_meta(path: Path) -> dict:
    """A checkpoint's JSON metadata (stage, step, ...), without loading its tensors."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()["meta"])


def load_checkpoint(path: Path, parts: dict, rng: random.Random | None = None, device="cpu") -> dict:
    meta = read_meta(path)
    tensors = load_file(str(path))
    for name, part in parts.items():
        own = {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(name + ".")}
        if isinstance(part, torch.optim.Optimizer):
            _restore_optimizer(part, {k: v.to(device) for k, v in own.items()}, meta["optimizers"][name])
        else:
            part.load_state_dict(own)
    torch.set_rng_state(tensors["rng.torch"])
    if rng is not None and "rng.python" in meta:
        state = meta["rng.python"]
        rng.setstate((state[0], tuple(state[1]), state[2]))
    return meta


class TimedCheckpoint:
    """The checkpoint file of a run with a wall-clock budget: `due()` once `every` seconds have
    passed since the last save (or since the start)."""

    def __init__(self, path: Path, every: float, rng: random.Random | None = None):
        self.path, self.every, self.rng = Path(path), every, rng
        self.last = time.time()

    def due(self) -> bool:
        return time.time() - self.last >= self.every

    def save(self, parts: dict, meta: dict) -> None:
        save_checkpoint(self.path, parts, meta, self.rng)
        self.last = time.time()

    def load(self, parts: dict, device="cpu") -> dict:
        return load_checkpoint(self.path, parts, self.rng, device)
