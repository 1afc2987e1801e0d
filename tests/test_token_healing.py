"""Token healing (twotower/token_healing.py): the pure pieces without a model, every sampler honouring the first
token's constraint (and only the first token's), speculative still AR's output, and the shipped tokenizer's healing
of prompts typed mid-token."""

import html
import json
import types

import pytest
import torch

from spec_decode import generate_speculative
from tiny_models import VOCAB, decoding_model, random_ids
from twotower import generate_ar, generate_mask_diffusion, generate_mock_ar
from twotower.decoding import draft_block
from twotower.token_healing import (allowed_first_tokens, check_allowed, completion_text, constrain,
                                    constrain_position_0, heal_prompt, token_texts)


class TableTokenizer:
    """A tokenizer of a fixed table: ids 0-4 specials, 5 a byte piece (U+FFFD alone), then the texts below;
    encode is greedy longest match, so "ret" + "urn" text encodes as the one id of "return"."""
    pad_token_id, bos_token_id, eos_token_id, unk_token_id, mask_token_id = 0, 1, 2, 3, 4
    TABLE = ["<pad>", "<s>", "</s>", "<unk>", "<mask>", "\ufffd", "re", "ret", "return", "x", " ", "=", "\n",
             "urn", "):", "):\n", "):\n    ", "(", "a"]

    def __init__(self, vocab_size=None):
        self.vocab_size = vocab_size or len(self.TABLE)

    def decode(self, ids):
        return "".join(self.TABLE[i] for i in ids if 5 <= i < len(self.TABLE))

    def encode(self, text):
        ids = []
        while text:
            i = max((i for i in range(6, len(self.TABLE)) if text.startswith(self.TABLE[i])),
                    key=lambda i: len(self.TABLE[i]))
            ids.append(i)
            text = text[len(self.TABLE[i]):]
        return ids


T = TableTokenizer()
ID = {text: i for i, text in enumerate(T.TABLE)}


# ------------------------------------------------------------------------------------------------ pure pieces
def test_token_texts_leave_out_specials_and_byte_pieces():
    texts = token_texts(T)
    assert texts[:6] == [None] * 6  # five specials, and a byte of a character
    assert texts[ID["return"]] == "return"
    assert token_texts(T) is texts  # cached per tokenizer


def test_allowed_first_tokens_are_those_that_start_with_the_prefix():
    allowed = allowed_first_tokens(token_texts(T), "re", 25)  # a head wider than the tokenizer
    assert allowed.shape == (25,)
    assert sorted(allowed.nonzero().flatten().tolist()) == [ID["re"], ID["ret"], ID["return"]]
    assert allowed_first_tokens(token_texts(T), "):", len(T.TABLE)).sum() == 3


def test_heal_prompt_takes_the_last_token_back():
    text = "x = ret"
    ids = T.encode(text)
    assert ids[-1] == ID["ret"]
    healing = heal_prompt(T, text, ids, len(T.TABLE))
    assert healing.ids == ids[:-1] and healing.prefix == "ret"
    assert healing.allowed.nonzero().flatten().tolist() == [ID["ret"], ID["return"]]  # the token itself too
    assert healing.choices == 2
    assert T.decode(healing.ids) + healing.prefix == text


@pytest.mark.parametrize("text, ids, why", [
    ("ret", [ID["ret"]], "one token: nothing would be left to read"),
    ("x = return", None, "no token extends 'return'"),
    ("x\ufffd", [ID["x"], 5], "a byte piece has no text of its own"),
    ("x</s>", [ID["x"], 2], "a special token"),
    ("x = rex", [ID["x"], ID[" "], ID["="], ID[" "], ID["re"]], "the ids do not spell the text's end"),
])
def test_heal_prompt_leaves_alone_what_it_cannot_heal(text, ids, why):
    assert heal_prompt(T, text, ids or T.encode(text), len(T.TABLE)) is None, why


class SpeltInContext(TableTokenizer):
    """A tokenizer whose 'ret' reads 'RET' after another token (as sentencepiece drops a leading space alone)."""
    def decode(self, ids):
        return "".join("RET" if i == ID["ret"] and k else self.TABLE[i] for k, i in enumerate(ids)
                       if 5 <= i < len(self.TABLE))


def test_heal_prompt_leaves_alone_a_last_token_spelt_otherwise_in_context():
    tok = SpeltInContext()
    ids = [ID["x"], ID[" "], ID["ret"]]
    assert heal_prompt(tok, "x ret", ids, len(T.TABLE)) is None  # its own text 'ret' is not what the prompt reads
    assert heal_prompt(T, "x ret", ids, len(T.TABLE)).prefix == "ret"


def test_constrain_sets_refused_ids_to_minus_infinity_per_row():
    logits = torch.randn(2, 6)
    allowed = torch.tensor([[True, False, True, False, False, False], [False] * 5 + [True]])
    out = constrain(logits, allowed)
    assert torch.equal(out[0, [0, 2]], logits[0, [0, 2]]) and torch.isinf(out[0, [1, 3, 4, 5]]).all()
    assert torch.isinf(out[1, :5]).all() and torch.equal(out[1, 5], logits[1, 5])
    assert constrain(logits, None) is logits
    one = constrain(logits[0], allowed[0])  # (V,) with (V,)
    assert torch.allclose(one.softmax(-1)[[0, 2]].sum(), torch.tensor(1.0))  # confidence: among the allowed


def test_constrain_position_0_matches_its_dense_twin():
    """The denoiser's logits come as rows of the open positions only; the constraint must land on each row's
    position 0 where it is open, as it does on a dense (B, L, V) tensor."""
    gen = torch.Generator().manual_seed(0)
    open_ = torch.tensor([[True, True, False, True], [False, True, True, False], [True, False, False, False]])
    dense = torch.randn(3, 4, 7, generator=gen)
    allowed = torch.rand(3, 7, generator=gen) > 0.5
    allowed[:, 0] = True
    reference = dense.clone()
    reference[:, 0] = constrain(reference[:, 0], allowed)
    got = constrain_position_0(dense[open_], open_, allowed)
    assert torch.equal(got, reference[open_])
    closed = torch.zeros_like(open_)
    closed[:, 1] = True
    assert torch.equal(constrain_position_0(dense[closed], closed, allowed), dense[closed])  # position 0 given


def test_check_allowed_refuses_what_is_not_a_bool_row_per_prompt():
    config = types.SimpleNamespace(vocab_size=VOCAB, mask_token_id=4)
    row = torch.zeros(VOCAB, dtype=torch.bool)
    row[7] = True
    assert check_allowed(row, 2, config).shape == (2, VOCAB)
    assert check_allowed(None, 2, config) is None
    with pytest.raises(ValueError, match="bool tensor"):
        check_allowed(row.long(), 1, config)
    with pytest.raises(ValueError, match="bool tensor"):
        check_allowed([7], 1, config)
    with pytest.raises(ValueError, match="expected"):
        check_allowed(row[:-1], 1, config)
    with pytest.raises(ValueError, match="expected"):
        check_allowed(row[None].expand(3, -1), 2, config)
    with pytest.raises(ValueError, match="allows no token"):
        check_allowed(torch.zeros(VOCAB, dtype=torch.bool), 1, config)
    mask_only = torch.zeros(VOCAB, dtype=torch.bool)
    mask_only[4] = True  # the denoiser never commits the mask id: every logit was -inf, and pad came out
    with pytest.raises(ValueError, match="mask id does not count"):
        check_allowed(mask_only, 1, config)
    assert not check_allowed(mask_only | row, 1, config)[0, 4]
    assert check_allowed(mask_only, 1, types.SimpleNamespace(vocab_size=VOCAB))[0, 4]  # a config with no mask id


def test_completion_text_drops_the_healed_prefix():
    assert completion_text("return x", "ret") == "urn x"
    assert completion_text("return x", "") == "return x"
    assert completion_text("x", "ret") == "x"  # (a text the constraint could not have made: left whole)


# ------------------------------------------------------------------------------------------------ the samplers
MODES = {
    "ar": lambda m, p, n, **kw: generate_ar(m, p, n, **kw),
    "mock_ar": lambda m, p, n, **kw: generate_mock_ar(m, p, n, **kw),
    "diffusion": lambda m, p, n, **kw: generate_mask_diffusion(m, p, n, 4, 4, confidence_threshold=0.6, **kw),
    "anchored": lambda m, p, n, **kw: generate_mask_diffusion(m, p, n, 4, 4, confidence_threshold=0.6,
                                                              anchor_first=True, **kw),
    "speculative": lambda m, p, n, **kw: generate_speculative(m, p, n, block_size=4, draft_steps=2, **kw),
}


@pytest.fixture(scope="module")
def model():
    return decoding_model(seed=3)


def only(token: int) -> torch.Tensor:
    allowed = torch.zeros(VOCAB, dtype=torch.bool)
    allowed[token] = True
    return allowed


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_chooses_its_first_token_among_the_allowed_and_only_the_first(model, mode):
    prompt = random_ids((1, 9), seed=1)
    with torch.no_grad():
        free = MODES[mode](model, prompt, 8).new_tokens[0]
        forced = 5 + (free[0] - 5 + 17) % (VOCAB - 5)  # any other text token
        healed = MODES[mode](model, prompt, 8, first_token_allowed=only(forced)).new_tokens[0]
        everything = MODES[mode](model, prompt, 8, first_token_allowed=torch.ones(VOCAB, dtype=torch.bool))
        assert healed[0] == forced
        assert everything.new_tokens[0] == free  # allowing every id is no constraint at all
        # the tokens after the first block are the mode's own continuation of prompt + that block: the constraint
        # reached no later position (the context tower's tokens in AR and speculative; in diffusion the
        # blocks after the first, in mock-AR every token after the first)
        first_block = {"ar": 1, "speculative": 1, "mock_ar": 1}.get(mode, 4)
        given = torch.cat([prompt, torch.tensor([healed[:first_block]])], 1)
        reference = "ar" if mode == "speculative" else mode
        assert healed[first_block:] == MODES[reference](model, given, 8 - first_block).new_tokens[0]


def test_speculative_with_healing_is_ar_with_healing(model):
    """Greedy, token for token; sampled, its first token is drawn among the allowed (3 of 261 ids) at every seed."""
    prompt = random_ids((1, 6), seed=4)
    allowed = torch.zeros(VOCAB, dtype=torch.bool)
    allowed[5:60] = True
    with torch.no_grad():
        ar = generate_ar(model, prompt, 12, first_token_allowed=allowed)
        spec = generate_speculative(model, prompt, 12, block_size=4, draft_steps=2, first_token_allowed=allowed)
        assert spec.new_tokens == ar.new_tokens and 5 <= spec.new_tokens[0][0] < 60
        few = torch.zeros(VOCAB, dtype=torch.bool)
        few[[11, 97, 200]] = True
        for seed in range(4):
            sampled = generate_speculative(model, prompt, 6, block_size=4, draft_steps=2, first_token_allowed=few,
                                           temperature=1.0, seed=seed)
            assert sampled.new_tokens[0][0] in (11, 97, 200), seed


@pytest.mark.parametrize("mode", MODES)
def test_sampling_and_a_one_token_budget_keep_the_constraint(model, mode):
    prompt = random_ids((1, 8), seed=7)
    allowed = torch.zeros(VOCAB, dtype=torch.bool)
    allowed[100:103] = True
    with torch.no_grad():
        for seed in range(3):
            for kw in ({"top_k": 5}, {"top_p": 0.3}, {}):
                out = MODES[mode](model, prompt, 5, first_token_allowed=allowed, temperature=1.5, seed=seed, **kw)
                assert 100 <= out.new_tokens[0][0] < 103, (seed, kw)
        one = MODES[mode](model, prompt, 1, first_token_allowed=allowed).new_tokens[0]
    assert len(one) == 1 and 100 <= one[0] < 103


def test_an_anchored_batch_takes_one_constraint_per_row(model):
    prompt = random_ids((2, 7), seed=8)
    allowed = torch.stack([only(33), only(77)])
    with torch.no_grad():
        result = generate_mask_diffusion(model, prompt, 8, 4, 4, confidence_threshold=0.6, anchor_first=True,
                                         first_token_allowed=allowed)
    assert [row[0] for row in result.new_tokens] == [33, 77]


def test_a_batch_takes_one_constraint_per_row_and_skipping_finished_rows_keeps_it(model):
    """draft_block's fast path (finished rows sit out, so the logits' rows are a subset's) against its twin."""
    prompt = random_ids((3, 7), seed=5)
    allowed = torch.stack([only(40), only(90), torch.ones(VOCAB, dtype=torch.bool)])
    with torch.no_grad():
        result = generate_mask_diffusion(model, prompt, 8, 4, 4, confidence_threshold=0.6, first_token_allowed=allowed)
        free = generate_mask_diffusion(model, prompt, 8, 4, 4, confidence_threshold=0.6)
        assert [row[0] for row in result.new_tokens[:2]] == [40, 90]
        assert result.new_tokens[2] == free.new_tokens[2]
        cache = model.new_cache(3)
        model.context_forward(prompt, cache)
        ctx = model.context_states(cache)
        block = torch.full((3, 4), model.config.mask_token_id)
        open_ = torch.ones(3, 4, dtype=torch.bool)
        open_[0, 1:] = False  # row 0 finishes at its first pass and sits out the others
        runs = [[(s.tokens.clone(), s.confidence.clone()) for s in
                 draft_block(model, ctx, block, open_, 4, 0.99, first_allowed=allowed, skip_finished_rows=skip)]
                for skip in (True, False)]
    assert len(runs[0]) == len(runs[1])
    for (tokens, conf), (ref_tokens, ref_conf) in zip(*runs):
        assert torch.equal(tokens, ref_tokens) and torch.allclose(conf, ref_conf)
    assert runs[0][-1][0][:, 0].tolist()[:2] == [40, 90]


def test_samplers_refuse_a_bad_constraint_before_any_step(model):
    prompt = random_ids((1, 5), seed=6)
    for mode in MODES:
        with pytest.raises(ValueError, match="first_token_allowed"):
            MODES[mode](model, prompt, 4, first_token_allowed=torch.ones(VOCAB - 1, dtype=torch.bool))


# ------------------------------------------------------------------------------------------------ the shipped model
@pytest.fixture(scope="module")
def default_engine():
    from twotower.engine import load_engine

    return load_engine()


@pytest.mark.parametrize("prompt, prefix", [("def add(a, b):\n    ret", "ret"), ("def add(a, b):", "):")])
def test_the_shipped_tokenizer_heals_a_prompt_typed_mid_token(default_engine, prompt, prefix):
    ids = default_engine.encode_prompt(prompt)
    healing = default_engine.heal(prompt)
    assert healing.prefix == prefix and healing.ids == ids[:-1]
    assert default_engine.decode(healing.ids) + prefix == prompt
    assert bool(healing.allowed[ids[-1]])  # the prompt's own token stays possible
    texts = token_texts(default_engine.tokenizer)
    assert all(texts[i].startswith(prefix) for i in healing.allowed.nonzero().flatten().tolist())
    assert healing.choices > 1


def test_a_healed_run_writes_the_prompts_text_back(default_engine):
    """The completion after the typed prompt: every mode's text starts with the healed prefix, which
    completion_text takes off; speculative is AR's, healed or not."""
    prompt = "def add(a, b):\n    ret"
    healing = default_engine.heal(prompt)
    texts = {}
    for mode in ("ar", "speculative", "diffusion", "mock_ar"):
        result = default_engine.stream(mode, healing.ids, max_new_tokens=10, first_token_allowed=healing.allowed)
        text = default_engine.decode([e for e in result][-1].info["new_tokens"][0])
        assert text.startswith("ret"), (mode, text)
        texts[mode] = completion_text(text, healing.prefix)
    assert texts["speculative"] == texts["ar"]
    assert texts["ar"].startswith("urn")  # 'return', which the unhealed prompt's 'ret' token could never become


def test_one_token_prompts_are_left_as_typed_and_a_line_break_is_healed(default_engine):
    """A prompt that ends on a token boundary is healed too (its line break may be followed by indentation, which
    this tokenizer merges into it): 80 of the benchmark's 93 such prompts were."""
    assert default_engine.heal("x") is None
    healing = default_engine.heal("if x:\n")
    assert healing is not None and healing.prefix.endswith("\n") and healing.choices > 1
    with pytest.raises(ValueError, match="holds only whitespace"):
        default_engine.heal("   ")


# ------------------------------------------------------------------------------------------------ CLI and app
MID_TOKEN = "def add(a, b):\n    ret"


def test_generate_heals_by_default_and_says_so(capsys, tmp_path):
    from twotower.cli import main as cli_main

    trace = tmp_path / "run.json"
    assert cli_main(["generate", "--mode", "ar", "--max-new-tokens", "6", "--trace", str(trace), MID_TOKEN]) == 0
    out, err = capsys.readouterr()
    assert "token healing: the prompt's last token 'ret'" in err and "--no-heal" in err
    assert out.startswith(MID_TOKEN + "urn")  # streamed: the prompt less 'ret', then the tokens from 'return'
    record = json.loads(trace.read_text())
    assert record["healed"] == "ret" and record["completion"].startswith("urn")
    assert out.rstrip("\n") == MID_TOKEN + record["completion"]
    assert cli_main(["generate", "--mode", "speculative", "--max-new-tokens", "6", "--json", MID_TOKEN]) == 0
    spec = json.loads(capsys.readouterr().out)
    assert spec["healed"] == "ret" and spec["completion"] == record["completion"]  # AR's output


def test_generate_no_heal_keeps_the_prompt_as_typed(capsys):
    from twotower.cli import main as cli_main

    assert cli_main(["generate", "--mode", "ar", "--max-new-tokens", "6", "--no-heal", "--json", MID_TOKEN]) == 0
    out, err = capsys.readouterr()
    record = json.loads(out)
    assert record["healed"] == "" and "token healing" not in err
    assert not record["completion"].startswith("urn")  # the 'ret' token never becomes 'return'


def test_the_playground_shows_the_healed_token_as_generated(default_engine):
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from ui.handlers import Handlers

    handlers = Handlers(default_engine)
    *_, (view, stats, completion, record, _) = list(handlers.generate(MID_TOKEN, "diffusion", 0.8, 4, 4, 8, 0.0, 0))
    assert record["healed"] == "ret" and completion.startswith("urn")
    assert "healed" in stats and "ret" in stats  # the run's caption says what was taken back
    prompt_cell = view.split('<div class="tt-prompt" title="prompt">')[1].split("</div>")[0]
    assert prompt_cell.endswith("    ") and "ret" not in prompt_cell  # the board's first cell holds 'ret…'
    import re

    outlined = re.findall(r'<span class="tt-cell[^"]*healed"[^>]*title="([^"]*)">([^<]*)<', view)
    assert len(outlined) == 1 and outlined[0][1].startswith("ret") and "token healing" in outlined[0][0]
    assert "k-healed" in view  # and the legend says what the outline means
    replayed = handlers.replay(record, None)  # the scrubber's redraw outlines it too
    assert len(re.findall(r'class="tt-cell[^"]*healed"', replayed)) == 1 and "k-healed" in replayed
    saved = handlers.save_trace(record)
    trace = json.loads(open(saved.value["path"], encoding="utf-8").read())
    assert trace["healed"] == "ret" and trace["prompt"] == MID_TOKEN and trace["completion"] == completion


def test_ctrl_c_before_the_first_token_writes_the_healed_prefix_back(monkeypatch, capsys):
    """Streamed, the prompt is printed less its healed last token, which the first token prints again: a Ctrl-C
    during the first block's passes (diffusion: up to S of them) lost the 'ret' the user typed."""
    from twotower.cli import main as cli_main
    from twotower.engine import Engine

    real = Engine.stream

    def stopped_at_the_first_pass(self, *args, **kwargs):
        for event in real(self, *args, **kwargs):
            yield event
            raise KeyboardInterrupt  # a "step" event: nothing committed yet

    monkeypatch.setattr(Engine, "stream", stopped_at_the_first_pass)
    assert cli_main(["generate", "--max-new-tokens", "16", MID_TOKEN]) == 130
    assert capsys.readouterr().out == MID_TOKEN + "\n"


def test_race_cards_and_the_audit_show_the_text_after_the_typed_prompt(default_engine):
    import os
    import re

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from ui.handlers import Handlers

    handlers = Handlers(default_engine)
    *_, (cards, _, measured) = list(handlers.race(MID_TOKEN, ["speculative"], 0.8, 4, 4, 6, 1))
    texts = [html.unescape(re.sub("<[^>]+>", "", t)) for t in re.findall(r'<div class="tt-text">(.*?)</div>', cards, re.S)]
    assert len(texts) == 2 and all(t.startswith("urn") for t in texts)  # AR's, and speculative's diff against it
    typed = len(default_engine.encode_prompt(MID_TOKEN))
    assert f"({typed}-token prompt" in measured["labels"]["ar"]  # the prompt as typed, not the ids healing left
    *_, (_, _, summary) = list(handlers.speculative_audit(MID_TOKEN, 0.8, 4, 4, 6, 0.0, 0))
    output = html.unescape(summary.split('data-output="1">')[1].split("</div>")[0])
    assert output.startswith("urn")  # the text after the typed prompt: its 'ret' is not written twice
    assert "was taken back and chosen again" in summary and "was taken back and chosen again" in cards  # and say so


def test_the_race_and_the_audit_have_a_checkbox_that_runs_the_prompt_as_typed(default_engine):
    """Each panel that runs a typed prompt heals it by default and has the Playground's checkbox to run it as typed:
    the Race's cards and CSV and the audit's output then hold the text after the untouched prompt, and say nothing
    of healing (the CSV's "healed" column is the token chosen again, "" for none)."""
    import os
    import re

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from ui.handlers import Handlers
    from ui.race_csv import race_csv_text

    handlers = Handlers(default_engine)

    def race(heal):
        *_, (cards, _, measured) = list(handlers.race(MID_TOKEN, ["diffusion"], 0.8, 4, 4, 6, 1, None, heal))
        texts = [html.unescape(re.sub("<[^>]+>", "", t)) for t in re.findall(r'<div class="tt-text">(.*?)</div>', cards,
                                                                              re.S)]
        return cards, texts, measured["race"]

    cards, texts, rows = race(True)
    assert all(t.startswith("urn") for t in texts) and {r["healed"] for r in rows} == {"ret"}
    cards, texts, rows = race(False)
    assert len(texts) == 2 and not any(t.startswith("urn") for t in texts) and "chosen again" not in cards
    assert {(r["heal"], r["healed"]) for r in rows} == {(False, "")} and race_csv_text(rows).splitlines()[0].endswith(",measured,heal,healed")
    audits = {heal: list(handlers.speculative_audit(MID_TOKEN, 0.8, 4, 4, 6, 0.0, 0, False, None, None, None, heal))
              for heal in (True, False)}
    outputs = {heal: html.unescape(runs[-1][2].split('data-output="1">')[1].split("</div>")[0])
               for heal, runs in audits.items()}
    assert outputs[True].startswith("urn") and not outputs[False].startswith("urn")
    assert "chosen again" not in audits[False][-1][2]
    # the Race's settings note counts the checkbox among what it read
    used, _ = handlers.race_start(["diffusion"], 1, 0.8, 4, 4, 6, MID_TOKEN, True)
    assert "token healing on → off" in handlers.race_staleness(used, 0.8, 4, 4, 6, MID_TOKEN, False)
    # a prompt with nothing to heal races the same either way: the checkbox moved marks no card
    used, _ = handlers.race_start(["diffusion"], 1, 0.8, 4, 4, 6, "x", True)  # engine.heal("x") is None
    assert handlers.race_staleness(used, 0.8, 4, 4, 6, "x", False) == ""
    assert {(r["heal"], r["healed"]) for r in race(True)[2]} == {(True, "ret")}


def test_the_playground_checkbox_runs_the_prompt_as_typed_and_its_change_re_runs(default_engine):
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from ui.handlers import Handlers

    handlers = Handlers(default_engine)
    args = (MID_TOKEN, "ar", 0.8, 4, 4, 6, 0.0, 0, "step", False)
    *_, (_, _, healed_text, healed, _) = list(handlers.generate(*args))
    assert healed["healed"] == "ret" and healed["heal"] is True
    assert list(handlers.rerun("playground", *args, healed)) == [(gr_skip(),) * 5]  # nothing moved: no re-run
    *_, (view, stats, typed_text, typed, _) = list(handlers.rerun("playground", *args, healed, False))
    assert typed["healed"] == "" and typed["heal"] is False and "healed" not in stats
    assert MID_TOKEN in html.unescape(view) and "k-healed" not in view  # the prompt whole, no outlined cell
    assert healed_text.startswith("urn") and not typed_text.startswith("urn")
    # a prompt with nothing to heal runs the same either way: the checkbox's change re-runs nothing there
    plain = ("x", *args[1:])
    *_, (_, _, _, unhealed, _) = list(handlers.generate(*plain))
    assert unhealed["healed"] == "" and list(handlers.rerun("playground", *plain, unhealed, False)) == [(gr_skip(),) * 5]
    old = {k: v for k, v in healed.items() if k != "heal"}  # a record kept before the checkbox: matches neither
    assert len(list(handlers.rerun("playground", *args, old))) > 1


def gr_skip():
    import gradio as gr

    return gr.skip()


def test_the_sweep_heals_text_prompts_when_asked(default_engine, monkeypatch):
    """The app's Sweep heals its typed prompts as the Race does (the same prompt read the same way: unhealed, a
    reviewer's Sweep read 6 % agreement where the Race read 100 %); the CLI's sweep, as bench and eval, does not."""
    from twotower import bench, sweep

    seen = []
    real = bench.timed_generation

    def recorded(engine, mode, ids, max_new_tokens, settings):
        seen.append((mode, len(ids), "first_token_allowed" in settings))
        return real(engine, mode, ids, max_new_tokens, settings)

    monkeypatch.setattr(bench, "timed_generation", recorded)
    typed = len(default_engine.encode_prompt(MID_TOKEN))
    for heal in (True, False):
        seen.clear()
        sweep.run_sweep(default_engine, [MID_TOKEN], [0.8], [4], steps=4, max_new_tokens=4, heal=heal)
        assert seen and all(n == typed - heal and constrained is heal for _, n, constrained in seen), (heal, seen)
    seen.clear()
    sweep.run_sweep(default_engine, [default_engine.encode_prompt(MID_TOKEN)], [0.8], [4], steps=4, max_new_tokens=4,
                    heal=True)  # token ids are read as given: no text to heal
    assert all(n == typed and not constrained for _, n, constrained in seen)


def test_engine_complete_is_the_clis_completion_of_a_typed_prompt(default_engine, capsys):
    """Engine.complete: a typed prompt in, the text after it out, healed as generate heals it."""
    from twotower.cli import main as cli_main

    seen = []
    text, result = default_engine.complete(MID_TOKEN, "speculative", max_new_tokens=6, step_callback=seen.append)
    assert cli_main(["generate", "--mode", "ar", "--max-new-tokens", "6", "--json", MID_TOKEN]) == 0
    assert text == json.loads(capsys.readouterr().out)["completion"] and text.startswith("urn")
    assert seen and seen[-1].kind == "done" and len(result.new_tokens[0]) == 6
    as_typed, _ = default_engine.complete(MID_TOKEN, "ar", heal=False, max_new_tokens=6)
    assert not as_typed.startswith("urn")
    with pytest.raises(ValueError, match="heal"):
        default_engine.complete(MID_TOKEN, "ar", heal="no")
    with pytest.raises(ValueError, match="holds only whitespace"):
        default_engine.complete("  ")


def test_complete_refuses_first_token_allowed_beside_healing(default_engine):
    """Engine.complete heals by default, which sets the first token's choices: a caller's own was Python's
    "got multiple values for keyword argument" TypeError."""
    import torch

    allowed = torch.ones(default_engine.model.config.vocab_size, dtype=torch.bool)
    assert default_engine.heal("x = 1 ") is not None and default_engine.heal("x") is None
    with pytest.raises(ValueError, match="last token is healed, which sets first_token_allowed: pass heal=False"):
        default_engine.complete("x = 1 ", "ar", max_new_tokens=2, first_token_allowed=allowed)
    text, result = default_engine.complete("x", "ar", max_new_tokens=2, first_token_allowed=allowed)  # nothing healed
    assert len(result.new_tokens[0]) == 2
    text, result = default_engine.complete("x = 1 ", "ar", heal=False, max_new_tokens=2, first_token_allowed=allowed)
    assert len(result.new_tokens[0]) == 2
