"""Smoke runs of `twotower bench / eval / sweep` on the tiny random model: the JSON fields exist and
agree with each other (ratios, tokens per pass, grid size). Bad input: test_bench_eval_bad_input.py; the
arithmetic on hand-made records: test_bench_numbers.py.

Speculative mode is replaced by a stand-in module (AR under the speculative name, which is what greedy
speculative decoding must produce), or by a module without iter_speculative to exercise the skip path,
so these tests do not depend on spec_decode's state.
"""

import ast
import json
import sys
import types

import pytest
import torch

from twotower import bench, eval_prompts, eval_report, metrics, run_setup, training
from twotower.cli import main
from twotower.decoding import iter_ar
from twotower.tokenizer import ByteTokenizer

TINY = ["--preset", "tiny", "--max-prompt-tokens", "48"]  # test_sweep.py imports TINY and run_json from here


@pytest.fixture
def stand_in_speculative(monkeypatch):
    def iter_speculative(model, prompt_ids, *, max_new_tokens, eos_token_id, seed, **_settings):
        return iter_ar(model, prompt_ids, max_new_tokens, eos_token_id=eos_token_id, seed=seed)

    module = types.ModuleType("spec_decode")
    module.iter_speculative = iter_speculative
    monkeypatch.setitem(sys.modules, "spec_decode", module)


@pytest.fixture
def no_speculative(monkeypatch):
    monkeypatch.setitem(sys.modules, "spec_decode", types.ModuleType("spec_decode"))


def run_json(capsys, argv) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def check_record(record, ar_record, new_tokens):
    assert record["status"] == "ok"
    assert record["tokens_per_s"] > 0 and record["time_to_first_token_s"] > 0
    assert record["ratio_vs_ar"] == pytest.approx(record["tokens_per_s"] / ar_record["tokens_per_s"], rel=1e-12)
    assert record["tokens_per_s"] == metrics.median(record["tokens_per_s_repeats"])
    # each round's pair: the mode's tokens/s over AR's in the same round
    pairs = zip(record["tokens_per_s_repeats"], ar_record["tokens_per_s_repeats"], strict=True)
    assert record["ratio_vs_ar_rounds"] == pytest.approx([x / y for x, y in pairs], rel=1e-12)
    assert record["new_tokens"] == new_tokens  # EOS ignored: every mode makes the same number of tokens
    if record["nfe"]:
        assert record["tokens_per_pass"] == pytest.approx(record["new_tokens"] / record["nfe"])
    else:
        assert record["tokens_per_pass"] is None


def test_bench_json_fields_agree(capsys, stand_in_speculative):
    report = run_json(capsys, ["bench", *TINY, "--n-prompts", "2", "--max-new-tokens", "6", "--repeats", "2",
                               "--batch-size", "2", "--block-size", "3", "--steps", "3", "--json"])
    for key in ("device", "model", "dtype", "gamma", "block_size", "steps_per_block", "batch_size", "modes"):
        assert key in report
    assert (report["block_size"], report["steps_per_block"], report["batch_size"], report["dtype"]) == (3, 3, 2, "fp32")
    assert report["device"]["ctx_device"] == "cpu" and report["n_prompts"] == 2
    import transformers  # what computed the numbers: its NemotronH internals move between minor versions

    assert report["device"]["transformers"] == transformers.__version__
    modes = report["modes"]
    assert list(modes) == ["ar", "mock_ar", "diffusion", "speculative"]
    for mode, record in modes.items():
        check_record(record, modes["ar"], new_tokens=6)
        assert record["generations"] == 2 * 2  # prompts x repeats
    assert modes["ar"]["ratio_vs_ar"] == 1.0
    assert modes["ar"]["identical_to_ar"] is None
    assert modes["speculative"]["identical_to_ar"] == 1.0  # the stand-in is AR under another name
    assert modes["mock_ar"]["identical_to_ar"] in (0.0, 0.25, 0.5, 0.75, 1.0)  # 4 generations
    assert (modes["ar"]["nfe"], modes["ar"]["context_passes"]) == (0, 6)  # prefill + one pass per later token
    assert (modes["mock_ar"]["nfe"], modes["mock_ar"]["context_passes"]) == (6, 6)
    assert modes["diffusion"]["context_passes"] == 2  # prefill + the first of two blocks
    assert 2 <= modes["diffusion"]["nfe"] <= 6
    for mode in ("ar", "mock_ar", "diffusion"):
        batch = modes[mode]["batch"]
        check_record(batch, modes["ar"]["batch"], new_tokens=6)
        assert batch["generations"] == 1 * 2  # ceil(2 / 2) batches x repeats
    assert modes["speculative"]["batch"]["status"] == "n/a"
    assert modes["speculative"]["batch"]["tokens_per_s"] is None


def test_bench_times_speculative_rounds_and_its_break_even(capsys):
    """With the real spec_decode: the sampler's clocks per round, the acceptance by draft position, and the
    break-even acceptance length = a round's milliseconds in AR decode steps."""
    report = run_json(capsys, ["bench", *TINY, "--modes", "ar,speculative", "--n-prompts", "2", "--max-new-tokens",
                               "9", "--repeats", "2", "--batch-size", "1", "--block-size", "4", "--json"])
    ar, spec = report["modes"]["ar"], report["modes"]["speculative"]
    assert ar["decode_ms_per_token"] > 0 and "draft_ms_per_round" not in ar
    assert spec["draft_ms_per_round"] > 0 and spec["verify_ms_per_round"] > 0
    assert spec["break_even_acceptance_length"] == pytest.approx(
        (spec["draft_ms_per_round"] + spec["verify_ms_per_round"]) / ar["decode_ms_per_token"])
    by_position = spec["acceptance_by_position"]
    assert [r["position"] for r in by_position] == [1, 2, 3, 4]
    assert by_position[0]["drafted"] >= 2 * 2  # two prompts' rounds (first repeat), at least two rounds each
    markdown = bench.format_markdown(report)
    assert "break-even mean acceptance length" in markdown and "by draft position 1, 2, …" in markdown
    assert report["snapshot_rollback"] is False and "snapshot rollback" not in markdown
    assert sum(spec["rollbacks"].values()) == by_position[0]["drafted"]  # one per round of the first repeat
    assert "snapshot" not in spec["rollbacks"] and "rescan" not in spec["rollbacks"]
    twin = run_json(capsys, ["bench", *TINY, "--modes", "ar,speculative", "--n-prompts", "2", "--max-new-tokens",
                             "9", "--repeats", "1", "--batch-size", "1", "--block-size", "4", "--snapshot-rollback",
                             "--json"])
    assert twin["snapshot_rollback"] is True and "snapshot rollback" in bench.format_markdown(twin)
    assert twin["modes"]["speculative"]["identical_to_ar"] == 1.0  # the twin is lossless too
    assert "positions" not in twin["modes"]["speculative"]["rollbacks"]


@pytest.mark.parametrize("command", ["bench", "sweep"])
def test_bench_and_sweep_read_the_held_out_prompts_through_the_models_tokenizer(capsys, monkeypatch, tmp_path,
                                                                                 command):
    """By default both time the eval's prompts on the loaded model's token boundaries (held_out_prompts, tested on
    the shipped tokenizer in test_eval_scoring.py); the report names them so."""
    read = []

    def spy(encode, n, seed=0):
        read.append((encode("a\n\n"), n, seed))
        return held_out(encode, n, seed)

    held_out = eval_prompts.held_out_prompts
    monkeypatch.setattr(eval_prompts, "held_out_prompts", spy)
    more = ["--modes", "ar"] if command == "bench" else ["--gammas", "0.8", "--block-sizes", "2", "--out-dir",
                                                        str(tmp_path)]
    report = run_json(capsys, [command, *TINY, "--n-prompts", "2", "--seed", "3", "--max-new-tokens", "2",
                               "--repeats", "1", "--json", *more])
    assert read == [(ByteTokenizer().encode("a\n\n"), 2, 3)]  # the tiny preset's byte tokenizer
    assert report["prompt_source"] == "test split, seed 3, ending on a token boundary" and report["n_prompts"] == 2


def test_bench_prompt_file_eval_and_skipped_speculative(capsys, tmp_path, no_speculative):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "def add(a, b):\n    return"}) + "\n\n" + json.dumps("import os\n") + "\n")
    out = tmp_path / "bench.md"
    report = run_json(capsys, ["bench", *TINY, "--prompts", str(prompts), "--max-new-tokens", "4", "--repeats", "1",
                               "--batch-size", "1", "--block-size", "2", "--steps", "2", "--eval", "--eval-prompts", "2",
                               "--json", "--out", str(out)])
    assert report["n_prompts"] == 2 and report["prompt_source"] == str(prompts)
    spec = report["modes"]["speculative"]
    assert spec["status"] == "skipped" and "iter_speculative" in spec["note"] and spec["tokens_per_s"] is None
    assert report["modes"]["diffusion"]["batch"] is None  # --batch-size 1: no batch run
    assert set(report["retention"]) == {"next_line_exact_match", "next_line_edit_similarity", "syntax_ok"}
    for task, value in report["retention"].items():
        ar, diffusion = report["eval_scores"]["ar"][task], report["eval_scores"]["diffusion"][task]
        if ar == 0:
            assert value is None and "AR scores 0" in report["retention_notes"][task]
        else:
            assert value == pytest.approx(diffusion / ar)
    table = out.read_text()
    assert "| mode | tokens/s |" in table and "| speculative | n/a |" in table and "retention" in table
    assert "n/a %" not in table  # an undefined retention reads n/a, with no unit
    assert "tokens / pass: new tokens ÷ denoiser passes" in table


def test_eval_json_retention_and_markdown(capsys, tmp_path, stand_in_speculative):
    out = tmp_path / "eval.md"
    report = run_json(capsys, ["eval", *TINY, "--modes", "diffusion,mock-ar,speculative", "--n-prompts", "3",
                               "--syntax-prompts", "2", "--next-line-tokens", "6", "--syntax-tokens", "12",
                               "--block-size", "3", "--steps", "3", "--json", "--out", str(out)])
    assert report["modes"] == ["ar", "mock_ar", "diffusion", "speculative"]  # AR added: it is the baseline
    assert report["n_prompts"] == {"next_line": 3, "syntax": 2} and report["files"]["next_line"] == 3
    assert report["dtype"] == "fp32" and report["settings"]["block_size"] == 3
    scores = report["scores"]
    assert scores["ar"]["agreement_with_ar"] == 1.0
    assert scores["speculative"] == scores["ar"]  # the stand-in produces AR's tokens: every score equal
    for mode, mode_scores in scores.items():
        for name in ("next_line_exact_match", "next_line_edit_similarity", "syntax_ok", "agreement_with_ar"):
            assert 0.0 <= mode_scores[name] <= 1.0
        assert mode_scores["ar_mean_loglik"] < 0
    # 3 prompts: the report's examples are all of them, so its next-line scores are their completions' against
    # their targets (a range check alone passed when the completions were scored against the wrong text)
    assert len(report["examples"]) == 3
    for mode, mode_scores in scores.items():
        pairs = [(e["completions"][mode], e["target"]) for e in report["examples"]]
        assert mode_scores["next_line_exact_match"] == pytest.approx(sum(metrics.exact_match(*p) for p in pairs) / 3)
        assert mode_scores["next_line_edit_similarity"] == pytest.approx(
            sum(metrics.edit_similarity(*p) for p in pairs) / 3)
    for mode in ("mock_ar", "diffusion", "speculative"):
        ret = report["retention"][mode]
        for name, value in ret["tasks"].items():
            if scores["ar"][name] == 0:
                assert value is None and name in ret["notes"]
            else:
                assert value == pytest.approx(scores[mode][name] / scores["ar"][name])
        defined = [v for v in ret["tasks"].values() if v is not None]
        assert ret["aggregate"] == (pytest.approx(sum(defined) / len(defined)) if defined else None)
        assert set(ret["ci"]["tasks"]) == set(ret["tasks"])  # bootstrap intervals, None where undefined
        for name, ci in ret["ci"]["tasks"].items():
            assert ci is None or ci[0] <= ci[1]
    # the stand-in speculative writes AR's tokens: every defined interval is the point 1
    assert all(ci in (None, [1.0, 1.0]) for ci in report["retention"]["speculative"]["ci"]["tasks"].values())
    assert 0.0 <= report["reference"]["syntax_ok"] <= 1.0
    table = out.read_text()
    assert "| task | n | AR | mock-AR | retention | diffusion | retention | speculative | retention |" in table
    # 3 and 2 files: too few to resample (metrics.MIN_CLUSTERS), and the table says so instead of an interval
    assert "aggregate (mean retention)" in table
    assert "no retention interval for next-line prompts, syntax prompts: fewer than 5 files to resample" in table
    passes = report["passes"]
    assert passes["ar"]["nfe"] == 0 and passes["ar"]["tokens_per_pass"] is None  # AR runs no denoiser
    assert passes["mock_ar"]["tokens_per_pass"] == 1.0 and passes["mock_ar"]["new_tokens"] > 0
    assert 1.0 <= passes["diffusion"]["tokens_per_pass"] <= 3  # at least one commit per pass, at most a block
    assert "tokens per denoiser pass" in table and "| mock-AR |" in table and "| 1.000 |" in table


def test_eval_in_worker_processes_gives_the_single_process_report(capsys):
    """--workers 2: the prompts are scored in two spawned processes, an engine each, and come back in order:
    every score, interval, pass count and example is the one process's."""
    argv = ["eval", *TINY, "--modes", "diffusion,mock-ar", "--n-prompts", "5", "--syntax-prompts", "3",
            "--next-line-tokens", "6", "--syntax-tokens", "10", "--block-size", "3", "--steps", "3", "--json"]
    alone = run_json(capsys, argv)
    shared = run_json(capsys, [*argv, "--workers", "2"])
    for key in ("scores", "retention", "passes", "reference", "examples", "n_prompts", "files", "settings"):
        assert shared[key] == alone[key], key
    assert alone["passes"]["diffusion"]["nfe"] > 0 and len(alone["examples"]) == 3


def test_prompt_selection_is_seeded_and_spread_over_files():
    items = eval_prompts.next_line_items(40, seed=1)
    assert items == eval_prompts.next_line_items(40, seed=1)
    assert items != eval_prompts.next_line_items(40, seed=2)
    texts = dict(eval_prompts.corpus_files("test"))
    assert len({it["file"] for it in items}) == min(40, len(texts))  # round robin reaches every file
    for it in items:
        assert it["prompt"].endswith("\n") and it["target"].strip()
        assert texts[it["file"]].startswith(it["prompt"] + it["target"])
    for it in eval_prompts.syntax_items(6, seed=1):
        compile(it["prompt"], "<prompt>", "exec")  # the prompt alone compiles: a failure is the continuation's fault
        assert it["prompt"].endswith("\n") and it["reference"][:1] not in (" ", "\t", "#", "")


def test_a_syntax_prompt_compiles_as_the_continuation_is_judged(monkeypatch):
    """A prefix only the compiler refuses (`return` at module level parses) is no syntax prompt: its every
    continuation would fail metrics.syntax_ok's whole-module check, whatever the mode wrote."""
    text = "x = 1\nreturn x\ny = 2\nz = 3\n"
    monkeypatch.setattr(eval_prompts, "corpus_files", lambda split: (("f.py", text),))
    prompts = {it["prompt"] for it in eval_prompts.syntax_items(5, seed=0)}
    assert prompts == {"x = 1\n"}  # "x = 1\nreturn x\n" and longer prefixes parse, but do not compile
    ast.parse("x = 1\nreturn x\n")


def test_an_eval_without_the_syntax_task_ignores_its_counts(capsys):
    """--syntax-prompts 0 was refused although the syntax task was not asked for."""
    report = run_json(capsys, ["eval", *TINY, "--modes", "ar", "--tasks", "next_line", "--n-prompts", "1",
                               "--syntax-prompts", "0", "--next-line-tokens", "2", "--json"])
    assert report["tasks"] == ["next_line"] and report["modes"] == ["ar"]


def test_bench_hands_speculative_its_settings_and_quotes_its_command(capsys, monkeypatch):
    seen = []

    def iter_speculative(model, prompt_ids, *, max_new_tokens, eos_token_id, seed, **settings):
        seen.append(settings)
        return iter_ar(model, prompt_ids, max_new_tokens, eos_token_id=eos_token_id, seed=seed)

    module = types.ModuleType("spec_decode")
    module.iter_speculative = iter_speculative
    monkeypatch.setitem(sys.modules, "spec_decode", module)
    argv = ["bench", *TINY, "--modes", "ar,speculative", "--n-prompts", "1", "--max-new-tokens", "3", "--repeats", "1",
            "--batch-size", "1", "--draft-steps", "3", "--adaptive", "--json"]
    report = run_json(capsys, argv)
    assert seen and all(s["draft_steps"] == 3 and s["adaptive"] is True for s in seen)
    assert (report["draft_steps"], report["adaptive"]) == (3, True)
    assert report["command"].endswith("twotower " + " ".join(argv))
    assert report["commit"] is None or len(report["commit"].split("-")[0]) >= 7
    assert len(report["date"]) == 10 and report["date"][:2] == "20"  # YYYY-MM-DD: the page quotes it
    assert "3 draft passes per block, adaptive length" in bench.format_markdown(report)


def test_bench_reports_a_denoiser_dtype_of_its_own(capsys):
    report = run_json(capsys, ["bench", *TINY, "--den-dtype", "bf16", "--modes", "ar,diffusion", "--n-prompts", "1",
                               "--max-new-tokens", "4", "--repeats", "1", "--batch-size", "1", "--block-size", "2",
                               "--json"])
    assert (report["dtype"], report["den_dtype"]) == ("fp32", "bf16")
    assert run_setup.run_variant(report) == "fp32, denoiser bf16"
    assert "cpu (" in bench.format_markdown(report) and ", fp32, denoiser bf16;" in bench.format_markdown(report)
    assert report["device"]["name"].startswith(f"cpu ({run_setup.cpu_model()}")  # tokens/s compare on one CPU only
    # ... and one instruction set: the same host name has come with and without native bf16 matmuls
    assert f", {torch.backends.cpu.get_cpu_capability()}" in report["device"]["name"]
    assert report["device"]["cpu_bf16_native"] == training._cpu_runs_bf16_fast()
    assert run_setup.run_variant({"dtype": "bf16"}) == run_setup.run_variant({"dtype": "bf16", "den_dtype": "bf16"}) == "bf16"
    assert report["compiled"] is False
    assert run_setup.run_variant({"dtype": "fp32", "den_dtype": "bf16", "compiled": True}) == "fp32, denoiser bf16, torch.compile"


def test_reports_record_the_commit_a_run_started_from(capsys, monkeypatch):
    """A commit made while a long bench runs is not what it measured: provenance is read at the start."""
    state = {"ran": False}
    real_run = bench.run_bench

    def run_then_commit(*args, **kwargs):
        out = real_run(*args, **kwargs)
        state["ran"] = True  # from here on, git would answer with the new commit
        return out

    monkeypatch.setattr(run_setup, "git", lambda *argv: ("after" if state["ran"] else "before") if argv[0] == "rev-parse" else "")
    monkeypatch.setattr(bench, "run_bench", run_then_commit)
    report = run_json(capsys, ["bench", *TINY, "--modes", "ar", "--n-prompts", "1", "--max-new-tokens", "2",
                               "--repeats", "1", "--batch-size", "1", "--json"])
    assert state["ran"] and report["commit"] == "before"


def test_anchored_diffusion_is_recorded_and_said_in_bench_and_eval(capsys):
    """--anchor-first reaches the sampler (one anchored token per block: fewer denoiser passes for the same
    tokens) and every report says the variant ran."""
    common = [*TINY, "--modes", "ar,diffusion", "--block-size", "4", "--steps", "4", "--gamma", "1.0"]
    plain = run_json(capsys, ["bench", *common, "--n-prompts", "1", "--max-new-tokens", "8", "--repeats", "1",
                              "--batch-size", "1", "--json"])
    anchored = run_json(capsys, ["bench", *common, "--n-prompts", "1", "--max-new-tokens", "8", "--repeats", "1",
                                 "--batch-size", "1", "--anchor-first", "--json"])
    assert (plain["anchor_first"], anchored["anchor_first"]) == (False, True)
    # γ = 1 on a random model: one token per pass; the anchor saves one pass in each of the 2 blocks
    assert plain["modes"]["diffusion"]["nfe"] - anchored["modes"]["diffusion"]["nfe"] == 2
    assert "first token from the context tower" in bench.format_markdown(anchored)
    assert "first token from the context tower" not in bench.format_markdown(plain)
    report = run_json(capsys, ["eval", *common, "--n-prompts", "2", "--syntax-prompts", "1", "--next-line-tokens", "4",
                               "--syntax-tokens", "4", "--anchor-first", "--json"])
    assert report["settings"]["anchor_first"] is True
    assert "first token from the context tower" in eval_report.format_markdown(report)
    assert run_setup.run_variant(report) == run_setup.run_variant(anchored) == "fp32, anchored blocks"
    assert run_setup.run_variant(plain) == "fp32"


def test_bench_eval_scores_the_diffusion_variant_it_timed(capsys):
    """`bench --anchor-first --eval` times anchored diffusion, so its retention must be anchored diffusion's:
    the scores equal `eval --anchor-first`'s on the same prompts (they were plain diffusion's)."""
    common = [*TINY, "--block-size", "4", "--steps", "4", "--gamma", "1.0", "--anchor-first"]
    timed = run_json(capsys, ["bench", *common, "--modes", "ar,diffusion", "--n-prompts", "1", "--max-new-tokens", "4",
                              "--repeats", "1", "--batch-size", "1", "--eval", "--eval-prompts", "4", "--json"])
    anchored = run_json(capsys, ["eval", *common, "--modes", "ar,diffusion", "--n-prompts", "4", "--syntax-prompts", "1",
                                 "--json"])
    plain = run_json(capsys, ["eval", *[a for a in common if a != "--anchor-first"], "--modes", "ar,diffusion",
                              "--n-prompts", "4", "--syntax-prompts", "1", "--json"])
    assert plain["scores"]["diffusion"] != anchored["scores"]["diffusion"]  # the variants write different text
    assert timed["eval_scores"] == {m: anchored["scores"][m] for m in ("ar", "diffusion")}
    # --workers 2: the eval's prompts scored in two spawned processes, the same scores
    shared = run_json(capsys, ["bench", *common, "--modes", "ar", "--n-prompts", "1", "--max-new-tokens", "2",
                               "--repeats", "1", "--batch-size", "1", "--eval", "--eval-prompts", "4", "--workers", "2",
                               "--json"])
    assert shared["eval_scores"] == timed["eval_scores"] and shared["retention"] == timed["retention"]
