"""One `dpc bench` configuration, timed in a process of its own (so its peak memory is its own).

    python -m eval.bench_worker SPEC.json RESULT.json

SPEC: {"options": RunOptions fields, "steps": int | null, "tile": int, "repeats": int,
"warmup": int, "files": [{"dpc": path, "png_out": path, "size": int}, ...]}. Per file it
decodes `warmup` + `repeats` times with `Codec.decompress`, whose progress hook marks its
stages (entropy decoding, each refinement step, pixel decoding), and records per stage the
median latency and the peak memory: CUDA max allocated on a GPU; on the CPU the peak
resident set size, reset before each stage through /proc/self/clear_refs (Linux), so a
stage's peak is its own. Failures are recorded as the error's one line, not raised.
"""

import json
import statistics
import sys
import time
from pathlib import Path

import torch


def rss_mib() -> float:
    return _status_field("VmRSS")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS; False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    return _status_field("VmHWM")


def _status_field(name: str) -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource  # no /proc (macOS): the lifetime peak is the best there is

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


class StageMeter:
    """Latency and peak memory of one stage (a `with` block) on `device`."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            reset_peak_rss()
        self.start_mib = torch.cuda.memory_allocated() / 2**20 if self.cuda else rss_mib()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.t0
        self.peak_mib = torch.cuda.max_memory_allocated() / 2**20 if self.cuda else peak_rss_mib()
        self.working_mib = self.peak_mib - self.start_mib  # what the stage itself added at its peak
        return False


class StageClock:
    """A Codec.decompress progress hook: one StageMeter per stage, refinement step times."""

    def __init__(self, device: torch.device):
        self.device = device
        self.meters: dict[str, StageMeter] = {}
        self.current: StageMeter | None = None
        self.step_times: list[float] = []
        self.last = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if done == 0:  # a stage starts: the previous one has ended
            self.close()
            self.current = self.meters[stage] = StageMeter(self.device).__enter__()
            self.last = time.perf_counter()
        elif stage == "refine":
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            self.step_times.append(now - self.last)
            self.last = now

    def close(self) -> None:
        if self.current is not None:
            self.current.__exit__(None, None, None)
            self.current = None

    def stage(self, name: str) -> StageMeter:
        """The stage's meter; a stage that did not run (no refinement) took no time."""
        if name not in self.meters:
            with StageMeter(self.device) as meter:
                pass
            self.meters[name] = meter
        return self.meters[name]


def bench_file(codec, data: bytes, steps, tile: int, repeats: int, warmup: int, fidelity=False) -> tuple[dict, object]:
    """Decode `data` warmup + repeats times with Codec.decompress; its progress hook times each stage."""
    runs = []
    totals = []  # every run's seconds, warm-up included (the first shows compile / kernel set-up)
    image = None
    refine = {} if fidelity else {"steps": steps}
    for i in range(warmup + repeats):
        clock = StageClock(codec.device)
        t0 = time.perf_counter()
        image = codec.decompress(data, tile=tile, fidelity=fidelity, progress=clock, **refine)
        clock.close()
        total = time.perf_counter() - t0
        totals.append(total)
        if i >= warmup:
            runs.append((total, clock.stage("entropy"), clock.stage("refine"), clock.stage("pixels"), clock.step_times))
    header = codec.read_header(data)
    settings = header.refine.with_overrides(steps=0 if fidelity else steps)

    def med(values):
        return statistics.median(values) if values else 0.0

    def stage(k):
        return {
            "seconds": med([r[k].seconds for r in runs]),
            "peak_mib": max(r[k].peak_mib for r in runs),
            "working_mib": max(r[k].working_mib for r in runs),
        }

    stages = {"entropy": stage(1), "refine": stage(2), "pixels": stage(3)}
    stages["refine"]["step_s"] = [med([r[4][k] for r in runs if len(r[4]) > k]) for k in range(settings.steps)]
    result = {
        "steps": settings.steps,
        "sampler": settings.sampler,
        "decode_s": med([r[0] for r in runs]),
        "first_decode_s": totals[0],
        "peak_mib": max(s["peak_mib"] for s in stages.values()),
        "working_mib": max(s["working_mib"] for s in stages.values()),
        "stages": stages,
    }
    return result, image


def main(spec_path: str, result_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    import diffusers  # noqa: F401
    from diffusers import UNet2DModel  # noqa: F401

    # Imported before the baseline is read, so that "above start" counts models and
    # activations, not libraries (diffusers is imported lazily by the prior).
    import codec.quantization  # noqa: F401
    from codec import Codec, CodecError

    out = {"files": []}
    try:
        rss_start = rss_mib()  # after imports, before any model
        t0 = time.perf_counter()
        codec = Codec.load(**spec["options"])
        fidelity = spec.get("fidelity", False)
        codec.warm_up(("plain",) if fidelity else ("prior", "perceptual") if spec["steps"] != 0 else ("perceptual",))
        out["setup_s"] = time.perf_counter() - t0
        out["rss_start_mib"] = rss_start
        for f in spec["files"]:
            try:
                result, image = bench_file(
                    codec,
                    Path(f["dpc"]).read_bytes(),
                    spec["steps"],
                    spec["tile"],
                    spec["repeats"],
                    spec["warmup"],
                    fidelity,
                )
                image.save(f["png_out"])
                result["ok"] = True
            except (CodecError, RuntimeError, NotImplementedError, MemoryError) as exc:
                result = {"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
            result["size"] = f["size"]
            out["files"].append(result)
    except (CodecError, RuntimeError, NotImplementedError, ImportError) as exc:
        out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    Path(result_path).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
