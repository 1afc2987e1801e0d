"""`twotower generate` prints the completion as it is committed (twotower/completion_stream.py): the text shown
is always a start of the final text, ends as the final text, and stops at EOS; the committed tokens of every
mode's events add up to the run's new tokens."""

import io
import json
import sys

import pytest
import torch

from twotower.cli import main as cli_main
from twotower.completion_stream import CompletionStream
from twotower.engine import Engine
from twotower.events import StepEvent, committed_tokens
from twotower.tokenizer import ByteTokenizer, N_SPECIAL

from tiny_models import decoding_model

EOS = ByteTokenizer().eos_token_id


def event(kind, start, ids):
    """A bare event committing ids at offset start (kind "step": a draft, which commits nothing)."""
    tokens = torch.tensor([ids])
    flags = torch.zeros_like(tokens, dtype=torch.bool)
    return StepEvent("diffusion", kind, 0, -1, start, tokens, flags, torch.zeros(tokens.shape), flags,
                     torch.zeros_like(tokens), 0, 0, 0.0, start + len(ids))


def byte_ids(text: str) -> list[int]:
    return [b + N_SPECIAL for b in text.encode("utf-8")]


def test_a_character_split_over_tokens_is_shown_whole():
    """'é' is two byte tokens: after the first only 'a' is shown (no U+FFFD), after the second 'aé'."""
    tok = ByteTokenizer()
    stream = CompletionStream(tok.decode, EOS)
    a, e1, e2 = byte_ids("a") + byte_ids("é")
    assert stream.add(event("block", 0, [a, e1])) == "a"
    assert stream.add(event("step", 2, [e2, e2])) == ""  # a draft is not output
    assert stream.add(event("token", 2, [e2])) == "é"
    assert stream.finish(tok.decode([a, e1, e2])) == ""


def test_tokens_after_eos_in_a_block_are_not_shown():
    tok = ByteTokenizer()
    stream = CompletionStream(tok.decode, EOS)
    ids = byte_ids("ok") + [EOS] + byte_ids("junk")
    assert stream.add(event("block", 0, ids)) == "ok"
    assert stream.add(event("block", len(ids), byte_ids("more"))) == ""
    assert stream.finish("ok") == ""
    # with no stop token (--no-eos) every committed token is the output's
    free = CompletionStream(tok.decode, None)
    assert free.add(event("block", 0, ids)) == tok.decode(ids) == "okjunk"


def test_a_decode_that_does_not_extend_its_text_ends_with_the_whole_completion():
    """A tokenizer whose decode of more ids rewrites earlier text: streaming stops, and finish gives a line
    break and the completion in full, so the output's last line is still the run's text."""
    texts = {1: "a ", 2: "a,", 3: "a, b"}
    stream = CompletionStream(lambda ids: texts[len(ids)], None)
    assert stream.add(event("token", 0, [7])) == "a "
    assert stream.add(event("token", 1, [8])) == ""
    assert stream.add(event("token", 2, [9])) == ""
    assert stream.finish("a, b") == "\na, b"


@pytest.mark.parametrize("mode", ["ar", "mock_ar", "diffusion", "speculative"])
def test_every_modes_committed_tokens_are_its_new_tokens(mode):
    engine = Engine(decoding_model(0).eval(), ByteTokenizer(), "tiny")
    ids = engine.encode_prompt("def f(x):")
    stream = CompletionStream(engine.decode, None)
    committed, shown = [], ""
    for ev in engine.stream(mode, ids, max_new_tokens=23, block_size=5, steps_per_block=2, stop_at_eos=False):
        start, tokens = committed_tokens(ev)
        if tokens:
            assert start == len(committed), "each mode emits its tokens in order, once"
            committed += tokens
        shown += stream.add(ev)
        if ev.kind == "done":
            done = ev
    assert committed == done.info["new_tokens"][0]
    final = engine.decode(done.info["new_tokens"][0])
    assert final.startswith(shown) and shown + stream.finish(final) == final


class Recording(io.StringIO):
    """stdout that keeps each flushed piece: the completion must arrive in several, not at the end."""

    def __init__(self):
        super().__init__()
        self.pieces = []

    def flush(self):
        piece = self.getvalue()[sum(map(len, self.pieces)):]
        if piece:
            self.pieces.append(piece)


def test_generate_writes_the_text_as_it_is_committed(monkeypatch, capsys):
    recording = Recording()
    monkeypatch.setattr("sys.stdout", recording)
    argv = ["generate", "--preset", "tiny", "--mode", "ar", "--no-eos", "--max-new-tokens", "12", "x = "]
    assert cli_main(argv) == 0
    assert recording.pieces[0] == "x = " and len(recording.pieces) >= 3, recording.pieces
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert cli_main(argv + ["--json"]) == 0
    record = json.loads(sys.stdout.getvalue())
    assert recording.getvalue() == record["prompt"] + record["completion"] + "\n"  # the same text, streamed


def test_a_long_completion_is_decoded_a_line_at_a_time_and_reads_the_same():
    """Each event decoded every id so far: ~0.4 ms a token by a 4,000-token AR run's end, growing with it. Text up
    to a line break shown is kept; only the ids after it are decoded again. The text is the same."""
    from pathlib import Path

    from twotower.tokenizer import SentencePieceTokenizer

    ROOT = Path(__file__).resolve().parent.parent
    tok = SentencePieceTokenizer(ROOT / "assets/default/tokenizer.model")
    ids = tok.encode((ROOT / "twotower/decoding.py").read_text())
    lengths = []
    stream = CompletionStream(lambda part: lengths.append(len(part)) or tok.decode(part), None)
    shown = "".join(stream.add(event("token", i, [t])) for i, t in enumerate(ids))
    assert shown == tok.decode(ids) and stream.finish(tok.decode(ids)) == ""
    assert len(ids) > 2000 and max(lengths) < 200, max(lengths)  # a line's tokens, not the whole text's
