"""The eval's scoring wiring against outputs known in advance: a scripted engine writes chosen text, so each
score (next-line exact match and edit similarity against the target, syntax on prompt + continuation, AR's mean
log-likelihood, the report's means) is known before the eval runs. The smoke runs in test_bench_eval.py see only
a random model's outputs, where a score read against the wrong text still lies in [0, 1]."""

import copy
import math
import types

import pytest
import torch

from tiny_models import UniformTower
from twotower import eval_prompts, evaluation, metrics
from twotower.tokenizer import ByteTokenizer


class ScriptedEngine:
    """An engine whose every mode writes the text `write(mode, prompt_ids)` (byte tokens, one 'done' event), so
    the eval's scores are known before it runs."""

    name = "scripted"
    eos_token_id = ByteTokenizer.eos_token_id

    def __init__(self, write):
        self.tokenizer, self.model, self.write, self.streams = ByteTokenizer(), UniformTower(ByteTokenizer.vocab_size), write, []

    def decode(self, ids):
        return self.tokenizer.decode(ids)

    def stream(self, mode, prompt_ids, **kwargs):
        self.streams.append((mode, list(prompt_ids), kwargs))
        tokens = self.tokenizer.encode(self.write(mode, list(prompt_ids)))
        yield types.SimpleNamespace(kind="done", sequences=None, info={"new_tokens": [tokens]},
                                    stats={"new_tokens": len(tokens), "nfe": len(tokens)})


SCORING = dict(settings={}, budget={"next_line": 8, "syntax": 16}, max_prompt_tokens=64, syntax_tokens=16)


def test_score_item_scores_each_modes_first_line_against_the_target():
    """Writing the target line scores exact match and edit similarity 1; a line one character off scores 0 and
    1 - 1/5; echoing the prompt's own line scores 0 (it would score 1 if the prompt were the reference)."""
    item = {"prompt": "x = 1\n", "target": "y = 2"}
    outputs = {"ar": "y = 2  \nz = 3\n", "mock_ar": "y = 3\n", "diffusion": "x = 1"}  # trailing spaces: stripped
    engine = ScriptedEngine(lambda mode, ids: outputs[mode])
    record = evaluation.score_item(engine, "next_line", item, modes=["ar", "mock_ar", "diffusion"], **SCORING)
    scores = record["scores"]
    assert record["completions"] == {"ar": "y = 2  ", "mock_ar": "y = 3", "diffusion": "x = 1"}  # cut at "\n"
    assert (scores["ar"]["next_line_exact_match"], scores["ar"]["next_line_edit_similarity"]) == (1.0, 1.0)
    assert scores["mock_ar"]["next_line_exact_match"] == 0.0
    assert scores["mock_ar"]["next_line_edit_similarity"] == pytest.approx(1 - 1 / 5)  # one substitution in 5
    assert scores["diffusion"]["next_line_exact_match"] == 0.0
    assert scores["diffusion"]["next_line_edit_similarity"] == pytest.approx(1 - 2 / 5)  # x/y and 1/2
    # agreement, position by position over AR's 14 bytes: "y = 3\n" shares "y = " (4), "x = 1" shares " = " (3)
    assert [scores[m]["agreement_with_ar"] for m in ("ar", "mock_ar", "diffusion")] == [1.0, 4 / 14, 3 / 14]
    # every mode ran greedy from the prompt's ids with the task's budget ...
    prompt = engine.tokenizer.encode(item["prompt"])
    assert [(m, ids) for m, ids, _ in engine.streams] == [(m, prompt) for m in ("ar", "mock_ar", "diffusion")]
    assert all(kw["temperature"] == 0.0 and kw["max_new_tokens"] == 8 for _, _, kw in engine.streams)
    # ... and the AR tower read the prompt followed by each mode's own output
    assert engine.model.inputs == [prompt + engine.tokenizer.encode(outputs[m]) for m in ("ar", "mock_ar", "diffusion")]
    for mode in scores:
        assert scores[mode]["ar_mean_loglik"] == pytest.approx(-math.log(ByteTokenizer.vocab_size))
        assert record["stats"][mode]["new_tokens"] == len(outputs[mode].encode())


def test_score_item_judges_syntax_on_the_prompt_followed_by_the_continuation():
    """An indented body is valid only after the prompt's `def f():` (alone it is an unexpected indent); a
    stray bracket is an error anywhere; the reference is the item's true continuation, cut to the budget."""
    item = {"prompt": "def f():\n", "reference": "    return 1\n" + "x" * 40}
    outputs = {"ar": "    return 2\n", "diffusion": ")\n"}
    engine = ScriptedEngine(lambda mode, ids: outputs[mode])
    record = evaluation.score_item(engine, "syntax", item, modes=["ar", "diffusion"], **SCORING)
    assert record["scores"]["ar"]["syntax_ok"] == 1.0 and record["scores"]["diffusion"]["syntax_ok"] == 0.0
    assert record["reference_ok"] == 1.0 and "completions" not in record
    assert all(kw["max_new_tokens"] == 16 for _, _, kw in engine.streams)  # the syntax task's budget


@pytest.mark.parametrize("prompt, continuation, rows", [
    ([0, 1], [0, 1, 2], [1, 2, 3]),  # token k of the continuation is predicted by the row before it
    ([2], [1, 1], [0, 1]),  # a one-token prompt: its only row predicts the first new token
])
def test_ar_mean_loglik_is_the_mean_log_softmax_of_each_new_token_given_what_precedes_it(prompt, continuation, rows):
    """Hand-made next-token distributions, one row per position, each row shifted by a constant (logits, not
    log-probabilities): the result is the mean of log p(row before token k)[token k] over the continuation."""
    probs = torch.tensor([[0.2, 0.3, 0.5], [0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.25, 0.25, 0.5], [0.6, 0.2, 0.2]],
                         dtype=torch.float64)

    class FixedTower:
        def context_forward(self, ids, cache, last_only=True):
            assert not last_only and ids[0].tolist() == prompt + continuation
            logits = probs[: ids.shape[1]].log() + torch.arange(ids.shape[1])[:, None] * 3.0
            return logits.float()[None]

    expected = sum(math.log(probs[r, t]) for r, t in zip(rows, continuation, strict=True)) / len(continuation)
    assert evaluation.ar_mean_loglik(FixedTower(), prompt, continuation) == pytest.approx(expected, rel=1e-6)
    assert evaluation.ar_mean_loglik(FixedTower(), prompt, []) is None  # nothing written: no likelihood


def test_eval_report_averages_the_scores_of_known_outputs():
    """`evaluate` over the real next-line prompts with an engine that knows each prompt's target: AR writes it
    (scores 1), diffusion writes it for every other prompt and "#" otherwise (exact match 1/2, retention 1/2),
    and the report's means, retention and examples are those per-prompt scores."""
    items = eval_prompts.next_line_items(4, seed=0)
    engine = ScriptedEngine(None)
    index = {tuple(eval_prompts.prompt_ids(engine, it["prompt"], 64)): i for i, it in enumerate(items)}
    assert len(index) == len(items)  # each prompt's last 64 bytes tell it apart

    def write(mode, ids):
        i = index[tuple(ids)]
        return items[i]["target"] + "\n    pass\n" if mode == "ar" or i % 2 == 0 else "#\n"

    engine.write = write
    report = evaluation.evaluate(engine, modes="ar,diffusion", tasks="next_line", n_next_line=4, max_prompt_tokens=64)
    scores = report["scores"]
    assert report["n_prompts"] == {"next_line": 4} and [mode for mode, _, _ in engine.streams] == ["ar", "diffusion"] * 4
    assert (scores["ar"]["next_line_exact_match"], scores["ar"]["next_line_edit_similarity"]) == (1.0, 1.0)
    assert scores["diffusion"]["next_line_exact_match"] == 0.5
    similarity = [1.0 if i % 2 == 0 else metrics.edit_similarity("#", it["target"]) for i, it in enumerate(items)]
    assert scores["diffusion"]["next_line_edit_similarity"] == pytest.approx(sum(similarity) / 4)
    assert similarity[1] < 1 and similarity[3] < 1
    retention = report["retention"]["diffusion"]["tasks"]
    assert retention["next_line_exact_match"] == 0.5
    assert retention["next_line_edit_similarity"] == pytest.approx(sum(similarity) / 4)
    assert scores["ar"]["ar_mean_loglik"] == pytest.approx(-math.log(ByteTokenizer.vocab_size))
    assert [(e["target"], e["completions"]) for e in report["examples"]] == [
        (it["target"], {"ar": it["target"], "diffusion": it["target"] if i % 2 == 0 else "#"})
        for i, it in enumerate(items[:3])]


def test_eval_prompts_end_where_the_files_own_tokens_break():
    """This tokenizer merges across line breaks (':\\n        #'): a prompt cut at such a break ends inside a token
    the model never saw split (AR's next-line exact match was 1.3 % on those prompts, 10.7 % on the rest). Given
    the tokenizer, the eval's prompts are only line breaks where the file's tokens break too."""
    from twotower.engine import DEFAULT_MODEL_DIR
    from twotower.tokenizer import load_tokenizer

    encode = load_tokenizer(DEFAULT_MODEL_DIR).encode
    # ':\n        #' is one token: a prompt ending "if x:\n" before a comment stops inside it
    assert not eval_prompts.ends_on_a_token_boundary(encode, "def f(x):\n    if x:\n", "        # note\n")
    assert eval_prompts.ends_on_a_token_boundary(encode, "x = 1\n", "y = 2\n")
    assert eval_prompts.ends_on_a_token_boundary(encode, "class A:\n    def f(self):\n", "        return 1\n")
    plain = eval_prompts.next_line_items(60, seed=0)
    kept = eval_prompts.next_line_items(60, seed=0, encode=encode)
    assert len(kept) == 60 and all(eval_prompts.ends_on_a_token_boundary(encode, it["prompt"], it["target"] + "\n")
                                   for it in kept)
    assert any(not eval_prompts.ends_on_a_token_boundary(encode, it["prompt"], it["target"] + "\n") for it in plain)
    assert sum(it["passed_over"] for it in kept) > 0  # the report counts them
    syntax = eval_prompts.syntax_items(10, seed=0, encode=encode)
    assert all(eval_prompts.ends_on_a_token_boundary(encode, it["prompt"], it["reference"].split("\n")[0] + "\n")
               for it in syntax)
    # bytes never merge across anything: a byte-level model's prompts are the plain ones
    assert eval_prompts.next_line_items(20, seed=0, encode=ByteTokenizer().encode) == [
        {**it, "passed_over": 0} for it in eval_prompts.next_line_items(20, seed=0)]


def test_bench_and_sweep_default_to_the_evals_token_boundary_prompts():
    """held_out_prompts, what bench and sweep read by default, are the eval's next-line prompts under the model's
    own tokenizer: at seed 0 the fifth of bench's 8 plain prompts ended inside a token (a codec table's header,
    "gencodec.py.\n\n" before a line the tokenizer merges into), and now one on a boundary stands in its place."""
    from twotower.engine import DEFAULT_MODEL_DIR
    from twotower.tokenizer import load_tokenizer

    encode = load_tokenizer(DEFAULT_MODEL_DIR).encode
    prompts, source = eval_prompts.held_out_prompts(encode, 8, seed=0)
    assert prompts == [it["prompt"] for it in eval_prompts.next_line_items(8, seed=0, encode=encode)]
    assert source == "test split, seed 0, ending on a token boundary"
    plain = eval_prompts.next_line_items(8, seed=0)
    on_boundary = [eval_prompts.ends_on_a_token_boundary(encode, it["prompt"], it["target"] + "\n") for it in plain]
    assert on_boundary.count(False) == 1 and plain[4]["prompt"] not in prompts
    assert [p for p, ok in zip(prompts, on_boundary) if ok] == [it["prompt"] for it, ok in zip(plain, on_boundary)
                                                                 if ok]


def test_the_eval_report_says_how_its_prompts_were_chosen_and_resampled():
    from twotower import eval_report

    items = eval_prompts.next_line_items(4, seed=0)
    engine = ScriptedEngine(lambda mode, ids: "x = 1\n")
    report = evaluation.evaluate(engine, modes="ar,diffusion", tasks="next_line", n_next_line=4, max_prompt_tokens=64)
    assert report["retention"]["diffusion"]["ci"]["resampled"] == "files"
    assert report["passed_over"] == {"next_line": 0} and report["files"] == {"next_line": len({i["file"] for i in items})}
    text = eval_report.format_markdown({**report, "trained_on_python": "2.7.18"})
    # 4 files: resampling them bounds nothing ("(50.0–50.0 %)" from one file); none passed over, no word of it
    assert "no retention interval for next-line prompts: fewer than 5 files to resample" in text
    assert "paired bootstrap" not in text and "passed over" not in text
    bounded = copy.deepcopy(report)
    bounded["retention"]["diffusion"]["ci"]["aggregate"] = [0.5, 0.9]
    bounded.update(files={"next_line": 28}, passed_over={"next_line": 222})
    text = eval_report.format_markdown(bounded)
    assert "paired bootstrap over the files the prompts come from (28 for next-line prompts)" in text
    assert "line breaks inside a token passed over: 222 for next-line prompts" in text
    text = eval_report.format_markdown({**report, "trained_on_python": "2.7.18"})
    assert f"Python {report['python']} standard library" in text
    assert "the model was trained on Python 2.7.18's standard library" in text
    assert "trained on Python" not in eval_report.format_markdown({**report, "trained_on_python": report["python"]})
    # an interval to a decimal, as its point: "99.6 % (100–100 %)" missed its point
    assert eval_report.interval([0.9951, 0.99996]) == " (99.5–100.0 %)"
