"""The model card's record of a trained but unshipped model (scripts/model_card.py --unshipped): every figure read
from that model's measured files in benchmarks/, and the verdict computed from them, not typed in."""

import copy
import json
from pathlib import Path

import pytest

from scripts.model_card import (_stage_lines, comparison, measured_files, measured_on, merge_reports,
                               train_commands, unshipped_model)

ROOT = Path(__file__).resolve().parent.parent
LEASE = ROOT / "benchmarks" / "gpu_lease_20261204"


def _shipped():
    info = json.loads((ROOT / "assets" / "default" / "training_info.json").read_text())
    report = merge_reports([json.loads((ROOT / "benchmarks" / n).read_text())
                            for n in ("eval_diffusion.json", "eval_mock_ar.json")])
    bench = json.loads((ROOT / "benchmarks" / "bench.json").read_text())
    return info, report, bench


def test_unshipped_section_reads_its_files_and_judges_from_them():
    info, report, bench = _shipped()
    # the lease's evals ran on the eval's earlier prompts (its weights are not in the repository to re-measure): the shipped
    # report stands in as one of those too, or the comparison is refused (test_a_comparison_across_...)
    report.pop("passed_over")
    other_bench = json.loads((LEASE / "bench.json").read_text())
    bench["prompt_source"] = other_bench["prompt_source"]  # and its bench's (bench's own prompt rule, 2026-12-06)
    lines = unshipped_model(LEASE, info, report, bench, {"perplexity": 33.8})
    text = "\n".join(lines)
    other_ppl = json.loads((LEASE / "perplexity.json").read_text())
    assert f"**{other_ppl['perplexity']:.1f}**" in text and "(shipped model: 33.8;" in text
    row = (f"| diffusion tokens per denoiser pass | {other_bench['modes']['diffusion']['tokens_per_pass']:.2f} | "
           f"{bench['modes']['diffusion']['tokens_per_pass']:.2f} |")
    assert row in text
    assert "fewer tokens per denoiser pass and keeps less of AR's scores" in text

    # a shipped model that were worse on both figures would be told to make way
    worse_bench, worse_report = copy.deepcopy(bench), copy.deepcopy(report)
    worse_bench["modes"]["diffusion"]["tokens_per_pass"] = 1.0
    worse_report["retention"]["diffusion"]["aggregate"] = 0.1
    text = "\n".join(unshipped_model(LEASE, info, worse_report, worse_bench, {"perplexity": 33.8}))
    assert "it should replace the shipped one" in text


def test_training_commands_follow_each_models_record():
    """The card's commands are read from the training record: the CPU-trained model shipped until 2026-12-04 (its
    profile, a resume with distillation) and the GPU-trained one (the gpu profile on time budgets)."""
    cpu = json.loads((ROOT / "benchmarks" / "cpu_model_20261204" / "training_info.json").read_text())
    assert train_commands(cpu) == [
        "twotower train --stage context --profile cpu --out runs/default",
        "twotower train --stage denoiser --profile cpu --out runs/default",
        "twotower train --stage denoiser --profile cpu --out runs/default --resume --steps 1150 --distill-share 0.75",
        "twotower train --stage export --out runs/default --to assets/default"]
    # a step-count continuation of an export (--resume --init-from, Adam restarted): not a resume in the same folder
    continued = copy.deepcopy(cpu)
    seg = continued["denoiser_stage"]["segments"][-1]
    continued["denoiser_stage"]["segments"].append({
        "from_step": 1150, "to_step": 1450, "train_config": {**seg["train_config"], "total_steps": 1450, "lr": 1e-3},
        "init": {"from_export": "assets/default", "optimizer": "moments restarted", "rewarmup_steps": 60}})
    assert train_commands(continued)[3:] == [
        "twotower train --stage export --out runs/default --to runs/default_export",
        "twotower train --stage denoiser --profile cpu --out runs/default_part3 --lr 0.001 --resume --init-from "
        "runs/default_export --steps 1450 --distill-share 0.75",
        "twotower train --stage export --out runs/default_part3 --to assets/default"]
    gpu = copy.deepcopy(cpu)
    cfg = {"seq_len": 512, "batch_size": 64, "prefix_len": 128, "minutes": 7.5, "distill_share": 0.75,
           "distill_from": 0.6, "distill_batches": 48, "dtype": "bfloat16"}
    gpu["context_stage"] = {"steps": 964, "train_config": {**cfg, "minutes": 3.0, "distill_share": 0.0}}
    gpu["denoiser_stage"] = {"steps": 1690, "train_config": cfg, "segments": [
        {"from_step": 0, "to_step": 1690, "train_config": cfg, "init": {"context_from": "x", "context_steps": 964}}]}
    assert train_commands(gpu)[:2] == [
        "twotower train --stage context --profile gpu --device cuda --out runs/default --minutes 3",
        "twotower train --stage denoiser --profile gpu --device cuda --out runs/default --minutes 7.5 "
        "--distill-share 0.75 --distill-from 0.6 --distill-batches 48"]
    # a batch other than the profile's (--batch-size) is part of the command, and still the gpu profile's
    gpu["denoiser_stage"]["segments"][0]["train_config"]["batch_size"] = 256
    assert train_commands(gpu)[1] == ("twotower train --stage denoiser --profile gpu --device cuda --out runs/default "
                                      "--minutes 7.5 --batch-size 256 --distill-share 0.75 --distill-from 0.6 "
                                      "--distill-batches 48")
    # a later lease continued that export's denoiser on a time budget: export, then a run folder of its own
    more = {**cfg, "minutes": 8.0, "distill_from": 0.0, "lr": 1e-3}  # a lower peak than the profile's 2e-3
    gpu["denoiser_stage"]["segments"].append({"from_step": 1690, "to_step": 3900, "train_config": more, "init": {
        "from_export": ".gpu/context_from", "optimizer": "moments restarted", "rewarmup_steps": 0,
        "schedule": "warm-up and cosine again over 8.0 minutes"}})
    assert train_commands(gpu)[2:] == [
        "twotower train --stage export --out runs/default --to runs/default_export",
        "twotower train --stage denoiser --profile gpu --device cuda --out runs/default_part2 --minutes 8 --batch-size 256 "
        "--lr 0.001 --resume --init-from runs/default_export --distill-share 0.75 --distill-batches 48",
        "twotower train --stage export --out runs/default_part2 --to assets/default"]


def test_the_card_says_where_its_evals_ran():
    """The card's quality tables named their commands but not the device, dtype or commit they ran on."""
    cpu = {"name": "cpu (AMD EPYC, x86_64, AVX2, 1 thread)"}
    first = {"device": cpu, "dtype": "fp32", "commit": "1f9cc93", "date": "2026-12-05"}
    assert measured_on([first, dict(first)]) == ". Measured on cpu (AMD EPYC, x86_64, AVX2, 1 thread), fp32, commit 1f9cc93, 2026-12-05."
    later = {**first, "commit": "abc1234"}
    assert measured_on([first, later]).count("commit") == 2  # two runs, two records
    assert measured_on([{}]) == ""  # a report older than these fields


def test_a_continued_stage_says_each_segments_schedule_and_peak(tmp_path):
    """The stage line printed the last segment's peak lr for every step, and a time-budgeted continuation's
    segment as a cosine over its step count, re-warmed over 0 steps."""
    first = {"seq_len": 512, "batch_size": 64, "prefix_len": 128, "lr": 2e-3, "minutes": 7.5, "dtype": "bfloat16",
             "distill_share": 0.75, "total_steps": 1690}
    more = {**first, "lr": 1e-3, "minutes": 8.0, "total_steps": 3900}
    info = {"denoiser_stage": {"steps": 3900, "train_config": more, "segments": [
        {"from_step": 0, "to_step": 1690, "train_config": first},
        {"from_step": 1690, "to_step": 3900, "train_config": more, "init": {
            "from_export": "runs/default_export", "optimizer": "moments restarted", "rewarmup_steps": 0,
            "schedule": "warm-up and cosine again over 8.0 minutes"}}]}}
    (tmp_path / "train_denoiser_log.jsonl").write_text(
        "\n".join(json.dumps({"step": i, "loss": 2.0, "tokens_per_s": 1e5}) for i in (1, 2, 3)))
    lines = _stage_lines(info, tmp_path, "denoiser")
    assert "peak lr 0.002 then 0.001" in lines[0]
    assert "steps 1–1690: cosine schedule over 7.5-minute budget, peak lr 0.002" in lines[1]
    assert "steps 1691–3900: cosine schedule over 8-minute budget, peak lr 0.001" in lines[2]
    assert lines[2].endswith("moments restarted, warm-up and cosine again over 8.0 minutes")


def _raw(directory, name):
    return json.loads((directory / name).read_text())


def test_comparison_reads_every_row_from_its_own_models_files():
    """Each row of the card's comparison, both columns, against the figures in the files it was read from
    (loaded here without merge_reports): a row reading another mode's figure, or the other model's, shows."""
    previous = ROOT / "benchmarks" / "cpu_model_20261204"
    shipped = ROOT / "benchmarks"
    info, report, bench = _shipped()
    lines = comparison(previous, info, report, bench)

    def expected(directory, bench):
        diff, mock = _raw(directory, "eval_diffusion.json"), _raw(directory, "eval_mock_ar.json")
        modes = bench["modes"]
        rows = {"diffusion tokens per denoiser pass": f"{modes['diffusion']['tokens_per_pass']:.2f}",
                "diffusion tokens/s ÷ AR": f"{modes['diffusion']['ratio_vs_ar']:.2f}",
                "mock-AR tokens/s ÷ AR": f"{modes['mock_ar']['ratio_vs_ar']:.2f}",
                "speculative tokens/s ÷ AR": f"{modes['speculative']['ratio_vs_ar']:.2f}",
                "speculative mean acceptance length": f"{modes['speculative']['mean_acceptance_length']:.2f}"}
        tasks = diff["retention"]["diffusion"]["tasks"]
        rows.update({f"AR score: {t}": f"{diff['scores']['ar'][t]:.3f}" for t in tasks})
        rows.update({f"diffusion retention: {t}": f"{100 * v:.1f} %" for t, v in tasks.items()})
        rows["diffusion retention: aggregate"] = f"{100 * diff['retention']['diffusion']['aggregate']:.1f} %"
        rows["mock-AR retention: aggregate"] = f"{100 * mock['retention']['mock_ar']['aggregate']:.1f} %"
        return rows

    before, after = expected(previous, _raw(previous, "bench.json")), expected(shipped, bench)
    # the figures a swapped read would confuse differ in these files, so the rows tell them apart
    assert after["diffusion tokens/s ÷ AR"] != after["mock-AR tokens/s ÷ AR"]
    assert before["diffusion retention: aggregate"] != before["mock-AR retention: aggregate"]
    assert after["diffusion retention: aggregate"] != after["mock-AR retention: aggregate"]
    table = lines[lines.index("|---|---|---|") + 1:-1]
    assert table == [f"| {label} | {before[label]} | {after[label]} |" for label in after]


def test_merged_evals_keep_each_modes_own_scores_retention_and_passes():
    """The card and BENCHMARKS.md read mock-AR's figures from the merged report: they must be the mock-AR run's."""
    diff, mock = _raw(ROOT / "benchmarks", "eval_diffusion.json"), _raw(ROOT / "benchmarks", "eval_mock_ar.json")
    merged = merge_reports([copy.deepcopy(diff), copy.deepcopy(mock)])
    assert merged["modes"] == ["ar", "diffusion", "mock_ar"]
    assert merged["commands"] == [diff["command"], mock["command"]]
    for mode, source in (("diffusion", diff), ("mock_ar", mock)):
        assert merged["retention"][mode] == source["retention"][mode], mode
        assert merged["scores"][mode] == source["scores"][mode], mode
        assert merged["passes"][mode] == source["passes"][mode], mode
    assert merged["retention"]["mock_ar"] != merged["retention"]["diffusion"]


def test_evals_of_other_settings_or_the_same_mode_twice_are_not_merged():
    """The merge compared only the prompts and AR's scores (AR reads no γ or S): a diffusion run at γ 0.5, S 8 was
    put under the first run's "γ = 0.8, S = 32", a mode in both runs lost its second column, and a mode one run
    skipped was noted as skipped beside the other run's column of it."""
    diff, mock = _raw(ROOT / "benchmarks", "eval_diffusion.json"), _raw(ROOT / "benchmarks", "eval_mock_ar.json")
    other = copy.deepcopy(diff)
    other["settings"]["gamma"] = 0.5
    with pytest.raises(SystemExit, match="eval runs differ in gamma"):
        merge_reports([copy.deepcopy(mock), other])
    bf16 = copy.deepcopy(diff)
    bf16["den_dtype"] = "bf16"  # a bf16 denoiser leaves AR's scores as they are: the baseline check passed it
    with pytest.raises(SystemExit, match="eval runs differ in den_dtype"):
        merge_reports([copy.deepcopy(mock), bf16])
    with pytest.raises(SystemExit, match="both hold diffusion"):
        merge_reports([copy.deepcopy(diff), copy.deepcopy(diff)])
    skipping = copy.deepcopy(mock)
    skipping["skipped"] = {"diffusion": "diffusion skipped here", "speculative": "speculative mode skipped"}
    merged = merge_reports([skipping, copy.deepcopy(diff)])
    assert merged["skipped"] == {"speculative": "speculative mode skipped"}  # diffusion is in the table


def test_a_comparison_across_the_two_prompt_rules_is_refused(tmp_path):
    """Since 2026-12-06 the eval's prompts end on a token boundary (reports count "passed_over"), and bench's too:
    a card comparing a report of each rule said "Same prompts" over two prompt sets."""
    info, report, bench = _shipped()
    older = copy.deepcopy(report)
    older.pop("passed_over", None)
    newer = {**copy.deepcopy(report), "passed_over": {"next_line": 222, "syntax": 3}}
    previous = ROOT / "benchmarks" / "cpu_model_20261204"
    prev_info, prev_bench, _ = measured_files(previous)
    with pytest.raises(SystemExit, match="different prompt sets"):
        comparison(previous, info, newer, bench, prev=(prev_info, prev_bench, older))
    assert comparison(previous, info, newer, bench, prev=(prev_info, prev_bench, copy.deepcopy(newer)))
    # and since the same day bench's own default prompts do (its report's "prompt_source" says which)
    moved = {**copy.deepcopy(prev_bench), "prompt_source": "another prompt set"}
    with pytest.raises(SystemExit, match="timed different prompts"):
        comparison(previous, info, newer, bench, prev=(prev_info, moved, copy.deepcopy(newer)))
