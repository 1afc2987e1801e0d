"""`twotower sweep` and its API on the tiny random model: the grid's order and size, AR timed beside every point,
the CSV and HTML it writes (and the points it prints when it cannot write them), the progress callback."""

import csv
import json

import pytest

from test_bench_eval import TINY, run_json  # the smoke runs' CLI helpers
from twotower import metrics
from twotower.cli import main


def test_sweep_cli_writes_csv_and_html(capsys, tmp_path):
    report = run_json(capsys, ["sweep", *TINY, "--gammas", "0.5,0.9", "--block-sizes", "2,4", "--n-prompts", "1",
                               "--max-new-tokens", "4", "--out-dir", str(tmp_path), "--json"])
    points = report["points"]
    assert "baseline_warning" in report  # the text report's ⚠ line about AR's spread, None when there is none
    with open(tmp_path / "sweep.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(points) == 2 * 2
    assert {(float(r["gamma"]), int(r["block_size"])) for r in rows} == {(0.5, 2), (0.9, 2), (0.5, 4), (0.9, 4)}
    assert any(r["pareto"] == "True" for r in rows)
    assert [p["pareto"] for p in points] == metrics.pareto_front(points, "ratio_vs_ar", "agreement")
    for p in points:
        assert p["steps_per_block"] == p["block_size"]  # default: steps = S
        assert p["ratio_vs_ar"] == pytest.approx(p["tokens_per_s"] / p["ar_tokens_per_s"])
        assert p["tokens_per_pass"] * p["nfe"] == pytest.approx(4)
        assert 0.0 <= p["agreement"] <= 1.0 and p["ar_mean_loglik"] < 0
    assert "plotly" in (tmp_path / "sweep.html").read_text()[:200_000].lower()
    # a sweep's own files are written over by the next sweep; a file of another kind is not (it was, without a word)
    run_json(capsys, ["sweep", *TINY, "--gammas", "0.5", "--block-sizes", "2", "--n-prompts", "1",
                      "--max-new-tokens", "4", "--out-dir", str(tmp_path), "--json"])
    assert len((tmp_path / "sweep.csv").read_text().splitlines()) == 2
    for name in ("sweep.html", "sweep-interrupted.csv"):
        (tmp_path / name).write_text("precious notes\n")
        assert main(["sweep", *TINY, "--gammas", "0.5", "--block-sizes", "2", "--out-dir", str(tmp_path)]) == 2
        assert f"{str(tmp_path / name)!r} exists and is not a sweep's" in capsys.readouterr().err
        assert (tmp_path / name).read_text() == "precious notes\n"
        (tmp_path / name).unlink()


def test_the_sweep_grid_times_each_point_once_in_the_order_given():
    from twotower.sweep import sweep_grid

    assert sweep_grid([0.8, 0.5, 0.8], [4, 2, 4]) == [(0.8, 4, 4), (0.5, 4, 4), (0.8, 2, 2), (0.5, 2, 2)]
    assert sweep_grid([0.9], [4], [2, 2, 3]) == [(0.9, 4, 2), (0.9, 4, 3)]
    # the UI hands its steps slider (16) to every S: an 8-wide block takes at most 8 passes, and says so
    assert sweep_grid([0.9], [8, 32], [16]) == [(0.9, 8, 8), (0.9, 32, 16)]
    assert sweep_grid([0.9], [4], [4, 16]) == [(0.9, 4, 4)]


def test_a_sweep_whose_files_cannot_be_written_still_prints_its_points(capsys, tmp_path, monkeypatch):
    """The folder checked before the run can change while it runs (here sweep.csv becomes a folder): the
    points are on stdout before the write fails with one line, not lost behind a traceback."""
    from twotower import sweep

    real = sweep.run_sweep

    def run_then_block_the_csv(*args, **kwargs):
        points = real(*args, **kwargs)
        (tmp_path / "sweep.csv").mkdir()
        return points

    monkeypatch.setattr(sweep, "run_sweep", run_then_block_the_csv)
    assert main(["sweep", *TINY, "--gammas", "0.9", "--block-sizes", "2", "--n-prompts", "1", "--max-new-tokens", "2",
                 "--out-dir", str(tmp_path), "--json"]) == 2
    out, err = capsys.readouterr()
    assert len(json.loads(out)["points"]) == 1
    assert "sweep.csv' could not be written" in err and "Traceback" not in err


def test_the_sweep_times_ar_beside_every_point(monkeypatch):
    """AR was timed once before the grid: over a sweep of minutes the host drifts, and late points were compared
    with an AR speed measured long before them. Each point now has its own AR timing, taken just before it."""
    from twotower import bench
    from twotower.engine import load_engine
    from twotower.sweep import run_sweep

    real, modes = bench.timed_generation, []

    def recording(engine, mode, ids, max_new_tokens, settings):
        modes.append(mode)
        return real(engine, mode, ids, max_new_tokens, settings)

    monkeypatch.setattr(bench, "timed_generation", recording)
    points = run_sweep(load_engine(preset="tiny"), ["x = 1"], gammas=[0.5, 0.9], block_sizes=[2], max_new_tokens=4)
    assert modes == ["ar", "diffusion"] + ["ar", "diffusion"] * 2  # warm-up, then AR beside each point
    assert all(p["ratio_vs_ar"] == pytest.approx(p["tokens_per_s"] / p["ar_tokens_per_s"]) for p in points)


def test_run_sweep_api_steps_grid_and_progress():
    from twotower.engine import load_engine
    from twotower.sweep import run_sweep, sweep_figure

    engine = load_engine(preset="tiny")
    calls = []
    points = run_sweep(engine, ["def f(x):\n    return x\n"], gammas=[0.7], block_sizes=[2], steps=[1, 2],
                       max_new_tokens=4, progress=lambda i, n, point: calls.append((i, n, point["steps_per_block"])))
    assert calls == [(1, 2, 1), (2, 2, 2)]
    one_step = points[0]
    assert one_step["nfe"] == 2 and one_step["tokens_per_pass"] == 2.0  # one pass commits the whole block
    figure = sweep_figure(points)
    assert [trace.name for trace in figure.data] == ["S = 2", "Pareto frontier"]
    # anchored: with S = 2 and one step, the anchor fills a position and one pass the other
    anchored = run_sweep(engine, ["def f(x):\n    return x\n"], gammas=[0.7], block_sizes=[2], steps=[1],
                         max_new_tokens=4, anchor_first=True)
    assert anchored[0]["nfe"] == 2 and anchored[0]["tokens_per_pass"] == 2.0
    anchored = run_sweep(engine, ["def f(x):\n    return x\n"], gammas=[1.0], block_sizes=[4], steps=[4],
                         max_new_tokens=4, anchor_first=True)
    assert anchored[0]["nfe"] == 3  # γ = 1 on a random model: one token a pass for the 3 open positions


def test_a_bad_value_in_a_long_list_is_named_alone():
    """The message repeated the whole list: 12,000 characters for 3,000 values with one bad one."""
    from twotower.sweep import parse_list

    with pytest.raises(ValueError) as info:
        parse_list(",".join(["0.9"] * 3000) + ", x ,0.8", float, "--gammas")
    assert str(info.value) == "--gammas expects comma-separated floats: 'x' is not one"
    with pytest.raises(ValueError, match=r"^--gammas expects comma-separated floats: 'y{37}\.\.\.' is not one$"):
        parse_list("y" * 100, float, "--gammas")


def test_a_trailing_comma_is_no_value_but_an_empty_item_is_refused():
    from twotower.sweep import parse_list

    assert parse_list("0.5, 0.8,", float, "--gammas") == [0.5, 0.8]
    with pytest.raises(ValueError, match=r"^--gammas has an empty item \(value 1 of ',0.5'\)"):
        parse_list(",0.5", float, "--gammas")
    with pytest.raises(ValueError, match="^--gammas is empty$"):
        parse_list(" , ", float, "--gammas")


def test_grid_values_take_no_digit_grouping_but_any_script_s_digits():
    """int() read "1_0" as 10 (Python's digit grouping), a typo more likely than a 10; digits of other scripts
    (a full-width ５, Arabic-Indic ٤) are the numbers their writers mean, as the fuzz test of the panel keeps."""
    from twotower.sweep import parse_list

    with pytest.raises(ValueError, match="--block-sizes expects comma-separated ints: '1_0' is not one"):
        parse_list("4, 1_0", int, "--block-sizes")
    assert parse_list("５, ٤", int, "--block-sizes") == [5, 4]


def test_sweep_heal_reaches_run_sweep_and_the_report(capsys, tmp_path, monkeypatch):
    """--heal heals the prompts as the app's Sweep does (tests/test_token_healing.py checks what run_sweep does
    with it); without it the prompts' tokens are read as they are, as bench and eval read theirs."""
    from twotower import sweep

    seen = []
    real = sweep.run_sweep

    def recorded(*args, **kwargs):
        seen.append(kwargs.get("heal"))
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep, "run_sweep", recorded)
    argv = ["sweep", *TINY, "--gammas", "0.9", "--block-sizes", "2", "--n-prompts", "1", "--max-new-tokens", "2",
            "--out-dir", str(tmp_path)]
    assert main(argv + ["--heal", "--json"]) == 0 and json.loads(capsys.readouterr().out)["heal"] is True
    assert main(argv) == 0 and "each prompt healed" not in capsys.readouterr().out
    assert seen == [True, False]


def test_a_host_whose_speed_moved_over_the_sweep_is_said_in_the_report():
    """AR timed beside each point at 80.3, 35.2, 51.6 and 62.8 tokens/s in one sweep (a host shared with other
    work): a point at 47.2 tokens/s read 1.34× AR and one at 58.7 read 0.73×, ranked by the host's speed, unmarked."""
    from twotower.sweep import BASELINE_SPREAD, baseline_note, format_header

    def points(*speeds):
        return [{"ar_tokens_per_s": s} for s in speeds]

    note = baseline_note(points(80.3, 35.2, 51.6, 62.8))
    assert "ranged from 35.2 to 80.3 tokens/s (2.28×)" in note and note.startswith("⚠")
    assert baseline_note(points(123.3, 146.8)) == ""  # 1.19×: the committed sweep's spread, not marked
    assert baseline_note(points(100.0, 100.0 * BASELINE_SPREAD * 0.99)) == ""
    assert baseline_note(points(100.0)) == "" and baseline_note([]) == "" and baseline_note(points(None, 5.0)) == ""
    from pathlib import Path

    committed = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "sweep.json").read_text())
    assert "ranged" not in format_header(committed)
    report = {**committed, "points": points(80.3, 35.2)}
    assert "ranged from 35.2 to 80.3" in format_header(report)
    assert "ranged" not in format_header({**report, "points": points(80.3, 79.0)})


def test_a_sweep_that_measures_nothing_leaves_no_folder_it_made(tmp_path, capsys):
    """A model that failed to load (or Ctrl-C before a point) left the --out-dir it had made, empty; a folder that
    was there before stays."""
    broken = tmp_path / "model"
    broken.mkdir()
    (broken / "config.json").write_text("{")
    made = tmp_path / "new" / "deeper" / "sweep"
    assert main(["sweep", "--model", str(broken), "--gammas", "0.5", "--block-sizes", "2", "--out-dir", str(made)]) == 2
    assert "config.json" in capsys.readouterr().err and not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    assert main(["sweep", "--model", str(broken), "--gammas", "0.5", "--block-sizes", "2", "--out-dir", str(kept)]) == 2
    assert kept.is_dir()
