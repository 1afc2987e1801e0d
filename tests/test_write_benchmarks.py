"""BENCHMARKS.md's summary: each headline figure read from a measured report, tagged with its dtype when it
differs from the main bench's, and judged against the issue's target (hand-made reports, no model)."""

from scripts.write_benchmarks import summary, sweep_timing_note


def _bench(dtype, diffusion_ratio, spec_ratio, identical, **settings):
    modes = {
        "ar": {"tokens_per_s": 80.0, "ratio_vs_ar": 1.0},
        "diffusion": {"tokens_per_s": 80.0 * diffusion_ratio, "ratio_vs_ar": diffusion_ratio, "tokens_per_pass": 4.5},
        "speculative": {"tokens_per_s": 80.0 * spec_ratio, "ratio_vs_ar": spec_ratio, "mean_acceptance_length": 3.9,
                        "identical_to_ar": identical},
    }
    return {"device": {"name": "cpu (test)"}, "dtype": dtype, "gamma": 0.8, "block_size": 16, "draft_steps": 1,
            "modes": modes, **settings}


def _eval(dtype, worst):
    tasks = {"next_line_exact_match": worst, "syntax_ok": 0.99}
    return {"dtype": dtype, "retention": {"diffusion": {"tasks": tasks, "aggregate": (worst + 0.99) / 2}}}


def test_summary_tags_other_dtypes_and_judges_each_target():
    main = _bench("fp32", 1.02, 0.88, 1.0)
    cut = _bench("fp32", 0.0, 1.9, 1.0, min_draft_confidence=0.2)  # a speculative variant in the same dtype
    cut["modes"].pop("diffusion")
    bf16 = _bench("bf16", 2.1, 1.28, 0.75)
    text = "\n".join(summary(main, [_eval("fp32", 0.5), _eval("bf16", 0.96)], [cut, bf16]))
    assert "| diffusion tokens/s ÷ AR | 1.02× | ≥ 2.0× (#6) | **not met** |" in text
    assert "| diffusion tokens/s ÷ AR (bf16) | 2.10× | ≥ 2.0× (#6) | met |" in text
    assert "| diffusion tokens per denoiser pass | 4.50 | ≥ 4 (#3) | met |" in text
    assert text.count("diffusion tokens/s ÷ AR") == 2  # the same-dtype variant adds no diffusion row
    assert "(aggregate 74.5 %) | 50.0 % | ≥ 95 % on every task (#3, #6) | **not met** |" in text
    assert "(aggregate 97.5 %, bf16) | 96.0 % | ≥ 95 % on every task (#3, #6) | met |" in text
    assert "proposal cut below confidence 0.2, S = 16; mean acceptance length 3.90; output = AR on 100 % of" in text
    assert "| 1.90× | ≥ 1.8× (#4) | met |" in text
    assert "S = 16, bf16; mean acceptance length 3.90; output = AR on 75 % of generations) | 1.28× | ≥ 1.8× (#4) | " \
           "**not met** |" in text
    assert "over the eval's" not in text  # reports without pass counts give no such row


def test_summary_judges_each_target_just_below_and_at_it():
    """Each verdict against its issue's target, on both sides of it: diffusion ≥ 2.0× AR (#6), ≥ 4 tokens per
    denoiser pass in the bench and over the eval (#3), ≥ 95 % retention on every task, the worst one (#3, #6;
    an aggregate above 95 % does not make it met), speculative ≥ 1.8× AR (#4)."""
    below = _bench("fp32", 1.99, 1.79, 1.0)
    below["modes"]["diffusion"]["tokens_per_pass"] = 3.99
    at = _bench("bf16", 2.0, 1.8, 1.0)
    at["modes"]["diffusion"]["tokens_per_pass"] = 4.0
    passes = {"n_prompts": {"next_line": 5}}
    low = {**_eval("fp32", 0.949), **passes, "passes": {"diffusion": {"tokens_per_pass": 3.99}}}
    high = {**_eval("bf16", 0.95), **passes, "passes": {"diffusion": {"tokens_per_pass": 4.0}}}
    text = "\n".join(summary(below, [low, high], [at]))
    for row in ("| diffusion tokens/s ÷ AR | 1.99× | ≥ 2.0× (#6) | **not met** |",
                "| diffusion tokens/s ÷ AR (bf16) | 2.00× | ≥ 2.0× (#6) | met |",
                "| diffusion tokens per denoiser pass | 3.99 | ≥ 4 (#3) | **not met** |",
                "| diffusion tokens per denoiser pass (bf16) | 4.00 | ≥ 4 (#3) | met |",
                "| diffusion retention, worst task (aggregate 97.0 %) | 94.9 % | ≥ 95 % on every task (#3, #6) | **not met** |",
                "| diffusion retention, worst task (aggregate 97.0 %, bf16) | 95.0 % | ≥ 95 % on every task (#3, #6) | met |",
                "| diffusion tokens per denoiser pass over the eval's 5 generations | 3.99 | ≥ 4 (#3) | **not met** |",
                "| diffusion tokens per denoiser pass over the eval's 5 generations, bf16 | 4.00 | ≥ 4 (#3) | met |",
                "| 1.79× | ≥ 1.8× (#4) | **not met** |",
                "| 1.80× | ≥ 1.8× (#4) | met |"):
        assert row in text, row


def test_summary_quotes_tokens_per_pass_over_the_eval():
    report = {**_eval("fp32", 0.5), "n_prompts": {"next_line": 500, "syntax": 100},
              "passes": {"diffusion": {"tokens_per_pass": 1.29}}}
    text = "\n".join(summary(_bench("fp32", 1.0, 0.9, 1.0), [report], []))
    assert "| diffusion tokens per denoiser pass over the eval's 600 generations | 1.29 | ≥ 4 (#3) | **not met** |" in text
    undefined = {**report, "dtype": "bf16", "retention": {"diffusion": {"tasks": {"syntax_ok": None}, "aggregate": None}}}
    text = "\n".join(summary(_bench("fp32", 1.0, 0.9, 1.0), [undefined], []))  # no retention row, still its tag
    assert "| diffusion tokens per denoiser pass over the eval's 600 generations, bf16 | 1.29 |" in text


def test_summary_quotes_each_ratio_with_its_spread_over_paired_rounds():
    main = _bench("fp32", 1.0, 0.9, 1.0)
    modes = main["modes"]
    modes["ar"]["tokens_per_s_repeats"] = [100.0, 80.0, 90.0]
    modes["diffusion"]["tokens_per_s_repeats"] = [110.0, 72.0, 99.0]  # 1.10, 0.90, 1.10 of AR's round
    modes["speculative"]["tokens_per_s_repeats"] = [90.0, 72.0, 90.0]  # 0.90, 0.90, 1.00
    text = "\n".join(summary(main, [_eval("fp32", 0.5)], []))
    assert "| diffusion tokens/s ÷ AR (0.90–1.10 by round) | 1.00× |" in text
    assert "output = AR on 100 % of generations; 0.90–1.00 by round) | 0.90× |" in text
    modes["speculative"]["tokens_per_s_repeats"] = [95.0, 60.0]  # not paired with AR's rounds: no spread
    bf16 = _bench("bf16", 2.1, 1.3, 0.75)  # no rounds at all: the tag alone
    text = "\n".join(summary(main, [_eval("fp32", 0.5)], [bf16]))
    assert "by round" not in text.split("speculative tokens/s")[1]
    assert "| diffusion tokens/s ÷ AR (bf16) | 2.10× |" in text


def test_summary_quotes_the_break_even_acceptance_length_when_measured():
    main = _bench("fp32", 1.0, 0.96, 1.0)
    main["modes"]["speculative"]["break_even_acceptance_length"] = 3.71
    text = "\n".join(summary(main, [_eval("fp32", 0.5)], []))
    assert "S = 16; mean acceptance length 3.90, break-even 3.71; output = AR on 100 % of generations) | 0.96×" in text


def test_readme_tables_read_every_cell_from_the_reports_and_replace_only_the_marked_block():
    import pytest

    from scripts.write_benchmarks import README_END, README_START, readme_tables, replace_block

    main = {**_bench("fp32", 1.02, 0.88, 1.0), "max_new_tokens": 64, "date": "2026-12-03", "commit": "abc1234"}
    main["modes"]["speculative"]["break_even_acceptance_length"] = 3.71
    s8 = {**_bench("fp32", 0.0, 1.07, 1.0), "block_size": 8, "date": "2026-12-04", "commit": "abc1234"}
    s8["modes"].pop("diffusion")
    bf16 = {**_bench("bf16", 1.2, 1.27, 0.625), "date": "2026-12-04", "commit": "abc1234"}
    quality = {**_eval("fp32", 0.278), "n_prompts": {"next_line": 500, "syntax": 100},
               "passes": {"diffusion": {"tokens_per_pass": 1.29}}}
    quality["retention"]["diffusion"]["ci"] = {"aggregate": [0.45, 0.64]}
    text = "\n".join(readme_tables(main, [quality], [s8, bf16]))
    assert "| 1.02×; " not in text  # hand-made reports without rounds: the ratio alone
    main["modes"]["ar"]["tokens_per_s_repeats"] = [100.0, 80.0]
    main["modes"]["diffusion"]["tokens_per_s_repeats"] = [110.0, 72.0]
    assert "| fp32 | 80.0 | 81.6 (1.02×; 0.90–1.10) |" in "\n".join(readme_tables(main, [quality], [s8, bf16]))
    del main["modes"]["ar"]["tokens_per_s_repeats"]
    assert text.startswith("Measured 2026-12-03 to 2026-12-04 on cpu (test), commit `abc1234` ")
    assert "| fp32 | 80.0 | 81.6 (1.02×) | – | 70.4 (0.88×), 3.90 | 4.50 |" in text
    assert "| bf16 | 80.0 | 96.0 (1.20×) | – | 101.6 (1.27×), 3.90; output = AR on 62 % | 4.50 |" in text
    assert "| 1 draft pass, S = 8 | 80.0 | 85.6 (1.07×) | 3.90 | – | 100 % |" in text
    assert "| 1 draft pass, S = 16 | 80.0 | 70.4 (0.88×) | 3.90 | 3.71 | 100 % |" in text
    assert "bf16 | 80.0 | 101.6" not in text.split("| speculative variant")[1]  # other dtypes: first table only
    assert "| fp32, 600 generations | 63.4 % (45.0–64.0 %) | next line exact match 27.8 % | 1.29 |" in text
    readme = f"# T\n\nbefore\n{README_START}\nold table\n{README_END}\nafter\n"
    rewritten = replace_block(readme, ["new", "table"])
    assert rewritten == f"# T\n\nbefore\n{README_START}\nnew\ntable\n{README_END}\nafter\n"
    assert replace_block(rewritten, ["new", "table"]) == rewritten  # idempotent
    with pytest.raises(SystemExit, match="no .* block"):
        replace_block("# a README without the markers\n", ["x"])


def test_the_sweep_table_says_how_its_ratios_were_timed():
    assert sweep_timing_note({"ar_timing": "per_point", "points": []}).startswith("AR is timed beside each point")
    assert "timed once, before the grid" in sweep_timing_note({"points": []})  # a report from before the field


def test_main_heads_each_section_with_its_own_reports_device_commit_and_command(tmp_path, monkeypatch, capsys):
    """BENCHMARKS.md quotes above each table the command, commit and device that measured it: each section's
    header from its own report (bench, its extra, the merged evals, the other-dtype eval, the sweep), and from
    the commands file and HEAD for a report that records neither. Written under a temporary ROOT."""
    import json
    import sys
    from pathlib import Path

    import scripts.write_benchmarks as wb
    from twotower import run_setup

    real = Path(wb.__file__).resolve().parent.parent / "benchmarks"
    args = []
    for flag, name, tag in (("--bench", "bench.json", "bench"), ("--bench-extra", "bench_bf16.json", "bench-bf16"),
                            ("--eval", "eval_diffusion.json", "eval"), (None, "eval_mock_ar.json", "eval-mock"),
                            ("--eval-extra", "eval_bf16_diffusion.json", "eval-bf16"), ("--sweep", "sweep.json", "sweep")):
        report = json.loads((real / name).read_text())
        report["device"]["name"] = f"{tag}-device"
        report.update(command=f"twotower {tag} --json", commit=f"{tag}-commit", date=f"{tag}-date")
        if tag == "sweep":  # an older report: the commands file and HEAD say how it was measured
            del report["command"], report["commit"], report["date"]
        (tmp_path / name).write_text(json.dumps(report))
        args += ([flag] if flag else []) + [str(tmp_path / name)]
    (tmp_path / "commands.json").write_text(json.dumps({"bench": "?", "eval": "?", "sweep": "twotower sweep (file)"}))
    monkeypatch.setattr(run_setup, "git", lambda *argv: {"rev-parse": "head123", "show": "2026-11-30"}[argv[0]])
    monkeypatch.setattr(wb, "ROOT", tmp_path)  # not the project's BENCHMARKS.md
    monkeypatch.setattr(sys, "argv", ["write_benchmarks.py", *args, "--commands", str(tmp_path / "commands.json")])
    assert wb.main() == 0
    text = (tmp_path / "BENCHMARKS.md").read_text()
    sections = {part.split("\n", 1)[0]: part for part in text.split("\n## ")[1:]}
    expected = {"Throughput": ("bench", "fp32"), "Throughput in bf16": ("bench-bf16", "bf16"),
                "Quality and retention": ("eval", "fp32"), "Quality and retention in bf16": ("eval-bf16", "bf16")}
    for title, (tag, dtype) in expected.items():
        assert f"- device: {tag}-device ({dtype}), torch " in sections[title], title
        assert f"- command: `twotower {tag} --json`" in sections[title], title
        assert f"- commit: `{tag}-commit`, measured {tag}-date\n" in sections[title], title
    # the merged evals were two runs: both commands are quoted (the header once quoted the first alone)
    assert "- command: `twotower eval --json`; `twotower eval-mock --json`\n" in sections["Quality and retention"]
    sweep = sections["Speed against quality (γ × S)"]
    assert "- device: sweep-device (fp32)" in sweep and "- command: `twotower sweep (file)`" in sweep
    assert "- commit: `head123`, measured on or after that commit's date, 2026-11-30" in sweep


def test_the_tables_name_the_host_of_the_evals_where_it_is_not_the_benches():
    """2026-12-06: the evals ran on an Intel Xeon, the timed runs of 2026-12-05 on an AMD EPYC, and the README's
    header and BENCHMARKS' summary named the AMD alone for every row."""
    from scripts.write_benchmarks import eval_host

    bench = {"device": {"name": "cpu (AMD EPYC)"}}
    assert eval_host(bench, [{"device": {"name": "cpu (AMD EPYC)"}}], ", on ") == ""
    assert eval_host(bench, [{"device": {"name": "cpu (Xeon)"}}, {"device": {"name": "cpu (Xeon)"}}], ", on ") == \
        ", on cpu (Xeon)"
    assert eval_host(bench, [{}], ", on ") == ""  # an older report without a device
