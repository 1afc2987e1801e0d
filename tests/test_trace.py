"""A run's trace (twotower/trace.py): the same events as the sampler yielded, as plain JSON, from the Python
API, `generate --trace` and the Playground's "Save this run"."""

import json
import math
import re
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
import torch  # noqa: E402

from twotower.cli import main as cli_main  # noqa: E402
from twotower.events import StepEvent  # noqa: E402
from twotower.trace import FORMAT, VERSION, plain, ran_settings, run_trace, trace_json  # noqa: E402

TINY = ["generate", "--preset", "tiny", "--max-new-tokens", "10", "--block-size", "4", "--steps", "4", "--no-eos"]


def traced(engine, mode, max_new_tokens=10):
    ids = engine.encode_prompt("def f(x):")
    settings = dict(max_new_tokens=max_new_tokens, block_size=4, steps_per_block=4, stop_at_eos=False)
    events = list(engine.stream(mode, ids, **settings))
    trace = run_trace(events, prompt="def f(x):", prompt_ids=ids, mode=mode,
                      settings=ran_settings(mode, engine.model.config, settings), tokenizer=engine.tokenizer,
                      mask_token_id=engine.model.config.mask_token_id, engine=engine.describe())
    return events, json.loads(trace_json(trace))  # through JSON text: what a reader of the file gets


def emitted_ids(trace_events) -> list[int]:
    """A run's new tokens read back from its trace alone: the tokens of its "token" and "block" events."""
    return [t for e in trace_events if e["kind"] in ("token", "block") for t in e["tokens"][0]]


@pytest.mark.parametrize("mode", ["diffusion", "speculative", "mock_ar", "ar"])
def test_a_trace_holds_every_event_the_sampler_yielded(engine, mode):
    events, trace = traced(engine, mode)
    assert (trace["format"], trace["version"], trace["mode"], trace["finished"]) == (FORMAT, VERSION, mode, True)
    assert [e["kind"] for e in trace["events"]] == [e.kind for e in events]
    for ours, theirs in zip(trace["events"], events):
        assert ours["tokens"] == theirs.tokens.tolist() and ours["commit_step"] == theirs.commit_step.tolist()
        assert ours["masked"] == theirs.masked.tolist() and ours["nfe"] == theirs.nfe
        assert ours["confidence"] == theirs.confidence.tolist()  # JSON keeps every digit of a float
    new = events[-1].info["new_tokens"]
    assert trace["new_tokens"] == new and emitted_ids(trace["events"]) == new[0]
    assert trace["completion"] == engine.decode(new[0]) and trace["stats"]["new_tokens"] == 10
    # every id in the trace has its text, the mask id as "<mask>": the file reads without the tokenizer
    ids = set(trace["prompt_ids"]) | {t for e in trace["events"] for row in e["tokens"] for t in row}
    assert set(trace["pieces"]) == {str(i) for i in ids}
    assert all(trace["pieces"][str(i)] == engine.tokenizer.piece(i) for i in ids if i != engine.model.config.mask_token_id)
    if mode in ("diffusion", "speculative"):
        assert trace["pieces"][str(engine.model.config.mask_token_id)] == "<mask>"
    if mode == "speculative":  # the verdicts ride in the events' info
        verdicts = [e["info"] for e in trace["events"] if e["kind"] == "verify"]
        assert verdicts and all("accepted" in v and "p_target" in v for v in verdicts)


def test_the_settings_are_those_the_mode_read_with_the_models_own_filled_in(engine):
    cfg = engine.model.config
    asked = dict(max_new_tokens=8, gamma=None, block_size=4, steps_per_block=None, anchor_first=True, adaptive=True)
    assert ran_settings("diffusion", cfg, asked) == dict(
        max_new_tokens=8, temperature=0.0, top_k=None, top_p=None, seed=None, stop_at_eos=True,
        gamma=cfg.default_gamma, block_size=4, steps_per_block=cfg.default_steps_per_block, anchor_first=True)
    spec = ran_settings("speculative", cfg, asked)
    assert spec["draft_steps"] == cfg.default_draft_steps and spec["adaptive"] is True and "anchor_first" not in spec
    assert spec["min_draft_confidence"] == cfg.default_min_draft_confidence
    # the cut the run applied: none when sampling over several draft passes (the sampler's rule, proposal_cut)
    cut = dict(asked, min_draft_confidence=0.5, draft_steps=2)
    assert ran_settings("speculative", cfg, cut)["min_draft_confidence"] == 0.5  # greedy
    assert ran_settings("speculative", cfg, dict(cut, temperature=0.7))["min_draft_confidence"] == 0.0
    assert ran_settings("speculative", cfg, dict(cut, temperature=0.7, draft_steps=1))["min_draft_confidence"] == 0.5
    assert set(ran_settings("mock-ar", cfg, asked)) == set(ran_settings("ar", cfg, {})) == {
        "max_new_tokens", "temperature", "top_k", "top_p", "seed", "stop_at_eos"}  # no γ, S or anchor in AR


def test_plain_makes_json_of_tensors_nan_and_names():
    assert plain(float("nan")) is None and plain(torch.tensor([1.5, float("inf")])) == [1.5, None]
    assert plain({1: (torch.tensor(2), torch.device("cpu"))}) == {"1": [2, "cpu"]}
    assert plain(torch.tensor(0.25)) == 0.25 and not math.isnan(plain(torch.tensor(0.0)))
    json.dumps(plain({"x": [float("-inf")]}), allow_nan=False)  # no NaN / Infinity in the text


def test_a_stopped_run_traces_as_unfinished_and_an_empty_one_is_refused(engine):
    ids = engine.encode_prompt("x = ")
    events = list(engine.stream("diffusion", ids, max_new_tokens=8, block_size=4, steps_per_block=4))[:3]
    trace = run_trace(events, prompt="x = ", prompt_ids=ids, mode="diffusion", settings={},
                      tokenizer=engine.tokenizer, mask_token_id=engine.model.config.mask_token_id)
    assert trace["finished"] is False and trace["new_tokens"] == [] and trace["stats"] is None
    assert len(trace["events"]) == 3 and trace["completion"] == ""  # stopped in its first block: nothing committed
    events = list(engine.stream("diffusion", ids, max_new_tokens=8, block_size=4, steps_per_block=4, stop_at_eos=False))
    first_block = next(e for e in events if e.kind == "block")
    cut = events[: events.index(first_block) + 2]  # stopped one pass into the second block
    trace = run_trace(cut, prompt="x = ", prompt_ids=ids, mode="diffusion", settings={},
                      tokenizer=engine.tokenizer, mask_token_id=engine.model.config.mask_token_id)
    assert trace["new_tokens"] == first_block.tokens.tolist()  # what the stopped run had committed
    assert trace["completion"] == engine.decode(first_block.tokens[0])
    common = dict(prompt="x", prompt_ids=[1], mode="ar", settings={}, tokenizer=engine.tokenizer, mask_token_id=4)
    with pytest.raises(ValueError, match="nothing to trace"):
        run_trace([], **common)
    with pytest.raises(ValueError, match="StepEvents, not int values"):  # token ids, not events
        run_trace([5, 6], **common)
    with pytest.raises(ValueError, match="got GenerationResult"):
        from twotower.decoding import drain

        run_trace(drain(engine.stream("ar", ids, max_new_tokens=2)), **common)
    ar_run = list(engine.stream("ar", ids, max_new_tokens=2))
    with pytest.raises(ValueError, match=r"one diffusion run's events; these include \['ar'\]"):
        run_trace(ar_run, **{**common, "mode": "diffusion"})
    with pytest.raises(ValueError, match="a 'done' event comes last, once"):  # two runs end to end
        run_trace(ar_run + ar_run, **common)
    with pytest.raises(ValueError, match="needs the run's tokenizer"):
        run_trace(ar_run, **{**common, "tokenizer": None})
    with pytest.raises(ValueError, match="a flat list of ints"):
        run_trace(ar_run, **{**common, "prompt_ids": [[1, 2]]})
    with pytest.raises(ValueError, match="unknown mode"):
        run_trace(ar_run, **{**common, "mode": "bogus"})


def test_generate_trace_writes_the_run_it_printed(tmp_path, capsys, engine):
    path = tmp_path / "run.json"
    assert cli_main(TINY + ["--mode", "speculative", "--json", "--trace", str(path), "def f(x):"]) == 0
    printed = json.loads(capsys.readouterr().out)
    trace = json.loads(path.read_text(encoding="utf-8"))
    assert trace["completion"] == printed["completion"] and trace["stats"]["rounds"] == printed["stats"]["rounds"]
    assert trace["engine"] == printed["engine"] and trace["prompt"] == "def f(x):"
    settings = trace["settings"]  # what ran: the model's γ where --gamma was not given
    assert settings["block_size"] == 4 and settings["gamma"] == engine.model.config.default_gamma
    assert emitted_ids(trace["events"]) == trace["new_tokens"][0]
    assert set(trace["pieces"]) == {str(i) for i in trace["prompt_ids"]} | {
        str(t) for e in trace["events"] for row in e["tokens"] for t in row}  # no id the trace does not hold


def test_ctrl_c_keeps_the_steps_so_far_in_the_trace(tmp_path, capsys, monkeypatch):
    import functools

    from twotower.engine import Engine

    real_stream = Engine.stream

    @functools.wraps(real_stream)  # keeps stream's signature, whose defaults the trace's settings read
    def interrupted(self, *args, **kwargs):  # Ctrl-C after the third event
        for i, event in enumerate(real_stream(self, *args, **kwargs)):
            if i == 3:
                raise KeyboardInterrupt
            yield event

    monkeypatch.setattr(Engine, "stream", interrupted)
    path = tmp_path / "run.json"
    assert cli_main(TINY + ["--mode", "diffusion", "--trace", str(path), "x"]) == 130
    assert f"the run so far is traced in {path}" in capsys.readouterr().err
    trace = json.loads(path.read_text(encoding="utf-8"))
    assert trace["finished"] is False and len(trace["events"]) == 3 and trace["stats"] is None


def test_generate_trace_leaves_out_the_flags_the_mode_ignored(tmp_path, capsys):
    path = tmp_path / "run.json"
    assert cli_main(TINY + ["--mode", "ar", "--anchor-first", "--gamma", "0.5", "--trace", str(path), "x"]) == 0
    assert "reads no --gamma, --block-size, --steps, --anchor-first: ignored" in capsys.readouterr().err
    settings = json.loads(path.read_text(encoding="utf-8"))["settings"]
    assert settings["max_new_tokens"] == 10 and not {"gamma", "block_size", "anchor_first"} & set(settings)


@pytest.mark.parametrize("where,message", [("folder", "is a folder; give a file name"),
                                           ("missing/run.json", "does not exist"),
                                           ("new/", "ends with a slash; give a file name")])
def test_a_trace_path_that_cannot_be_written_is_refused_before_the_run(tmp_path, capsys, monkeypatch, where,
                                                                       message):
    import twotower.run_setup as run_setup

    (tmp_path / "folder").mkdir()

    def no_loading(args):
        raise AssertionError("the model was loaded before the path was checked")

    monkeypatch.setattr(run_setup, "engine_from_args", no_loading)
    assert cli_main(TINY + ["--trace", str(tmp_path) + "/" + where, "x"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_stopped_runs_tokens_are_cut_at_eos_only_if_the_run_stopped_there(engine):
    eos = engine.eos_token_id
    tokens = torch.tensor([[70, eos, 71]])
    block = StepEvent("diffusion", "block", 0, -1, 0, tokens, tokens == -1, torch.ones(1, 3), tokens == -1,
                      torch.zeros(1, 3, dtype=torch.long), 2, 1, 0.1, 3)
    common = dict(prompt="x", prompt_ids=[70], mode="diffusion", tokenizer=engine.tokenizer, mask_token_id=4)
    assert run_trace([block], settings={"stop_at_eos": True}, **common)["new_tokens"] == [[70, eos]]
    assert run_trace([block], settings={"stop_at_eos": False}, **common)["new_tokens"] == [[70, eos, 71]]


def test_show_steps_marks_the_cells_past_the_budget(capsys):
    assert cli_main(["generate", "--preset", "tiny", "--max-new-tokens", "6", "--block-size", "4", "--steps", "4",
                     "--gamma", "1.0", "--no-eos", "--show-steps", "x"]) == 0
    err = capsys.readouterr().err.splitlines()
    last = [line for line in err if line.startswith("[step block 1")]
    assert last and all(line.count(" ✂ ") == 1 for line in last)  # 2 kept ✂ 2 dropped
    first = [line for line in err if line.startswith("[step block 0")]
    assert first and not any("✂" in line for line in first)  # a whole block: nothing dropped


def test_a_quoted_tilde_is_the_home_folder():
    from twotower.path_checks import check_output_file

    assert check_output_file("--trace", "~/t.json") == Path.home() / "t.json"


def test_an_output_file_is_judged_by_its_own_permission_when_it_exists(tmp_path, monkeypatch):
    """--trace /dev/stdout was refused for a non-root user because /dev is not writable (this host runs as root,
    so the permissions are stood in for)."""
    import os

    from twotower.path_checks import check_output_file

    folder, existing = tmp_path / "locked", tmp_path / "locked" / "out.json"
    folder.mkdir()
    existing.write_text("")
    writable = {str(existing)}
    monkeypatch.setattr(os, "access", lambda path, mode: str(path) in writable)
    assert check_output_file("--trace", existing) == existing
    with pytest.raises(ValueError, match="new.json' cannot be written here"):
        check_output_file("--trace", folder / "new.json")
    writable.clear()
    with pytest.raises(ValueError, match="out.json' cannot be written here"):
        check_output_file("--trace", existing)


def test_the_playground_saves_its_last_run(engine):
    import gradio as gr

    from ui.handlers import Handlers
    from ui.saved_runs import NOTHING_TO_SAVE

    handlers = Handlers(engine)
    handlers.frame_interval_s = 0
    with pytest.warns(UserWarning, match=NOTHING_TO_SAVE):  # gr.Warning outside a request
        assert handlers.save_trace(None) == {"__type__": "update"}  # gr.skip(): the file box stays
    outputs = list(handlers.generate("def f(x):", "mock_ar", 0.8, 4.0, 4.0, 6.0, 0.0, 0, "step"))
    record = outputs[-1][3]
    saved = handlers.save_trace(record)
    trace = json.loads(open(saved.value["path"], encoding="utf-8").read())
    assert trace["mode"] == "mock_ar" and trace["settings"]["max_new_tokens"] == 6 and trace["finished"]
    assert set(trace["settings"]) == {"max_new_tokens", "temperature", "top_k", "top_p", "seed", "stop_at_eos"}
    assert trace["completion"] == outputs[-1][2] and len(trace["events"]) == len(record["events"])
    # stopped after its first steps: the trace says unfinished and holds what was recorded
    stopped = {**record, "events": record["events"][:2], "stopped": True}
    trace = json.loads(open(handlers.save_trace(stopped).value["path"], encoding="utf-8").read())
    assert trace["finished"] is False and len(trace["events"]) == 2
    # a slider released on another tab re-runs nothing there: the saved file stays; on the Playground it goes
    assert handlers.drop_trace("race") == gr.skip() and handlers.drop_trace("playground").visible is False


def test_the_export_lands_in_the_shipped_models_folder_from_any_folder(tmp_path, monkeypatch):
    """`twotower train --stage export` run outside the repository root made ./assets/default there, a folder no
    load reads, while its help said it replaced the model the app and the CLI load."""
    import argparse

    from twotower import cli_train, training
    from twotower.engine import DEFAULT_MODEL_DIR
    from twotower.train_args import ignored_flags

    monkeypatch.chdir(tmp_path)
    parser = argparse.ArgumentParser()
    cli_train.add_arguments(parser)
    args = parser.parse_args(["--stage", "context"])
    assert ignored_flags(args) is None  # the default --to is not a flag "given" to a stage that reads none
    exported = []
    monkeypatch.setattr(training, "export", lambda out, to: exported.append(to) or to)
    assert cli_train.main(parser.parse_args(["--stage", "export"])) == 0
    assert exported == [str(DEFAULT_MODEL_DIR)] and Path(exported[0]).is_absolute()


@pytest.mark.parametrize("mode", ["diffusion", "speculative", "mock_ar", "ar"])
def test_a_trace_read_back_gives_the_events_it_was_written_from(engine, mode):
    """read_trace / trace_events invert run_trace: every event's record is the same again (NaN confidences
    included), the run's statistics sit on its "done" event, and folding them draws the run's own board."""
    from twotower.trace import event_record, read_trace, trace_events
    from ui.board import fold

    events, trace = traced(engine, mode)
    read = trace_events(read_trace(trace_json(trace).encode("utf-8")))
    assert [event_record(e) for e in read] == [event_record(e) for e in events]
    assert read[-1].stats == plain(events[-1].stats) and all(e.mode == mode for e in read)
    board, again = fold(events), fold(read)
    rows = [[plain(vars(r)) for r in b.ordered_rows()] for b in (board, again)]  # plain: a NaN confidence as None
    assert rows[0] == rows[1] and rows[0]
    assert (again.new_tokens, again.frames, again.nfe, again.stats) == (board.new_tokens, board.frames, board.nfe,
                                                                        plain(board.stats))


@pytest.mark.parametrize("text, message", [
    (b"\xff\xfe", "not UTF-8 text"),
    (b"{not json", "not JSON (Expecting property name enclosed in double quotes, line 1)"),
    (b"[1, 2]", "JSON but not a run's trace"),
    (b'{"format": "twotower-trace", "version": 7}', "of version 7; this build reads version 1"),
    (b'{"format": "twotower-trace", "version": 1, "prompt": 3}', "\"prompt\" is missing or not a JSON string"),
])
def test_a_file_that_is_no_trace_is_refused_in_words(text, message):
    from twotower.trace import read_trace

    with pytest.raises(ValueError, match=re.escape(message)):
        read_trace(text)


def test_a_trace_with_a_broken_event_names_the_event(engine):
    from twotower.trace import read_trace, trace_events

    _, trace = traced(engine, "ar")
    del trace["events"][2]["tokens"]
    with pytest.raises(ValueError, match="event 3 cannot be read: its field 'tokens'"):
        trace_events(read_trace(trace_json(trace)))
    _, trace = traced(engine, "diffusion")
    trace["events"][0]["masked"] = [[True]]  # a row of another length than its tokens'
    with pytest.raises(ValueError, match="event 1 cannot be read: its arrays differ in shape"):
        trace_events(read_trace(trace_json(trace)))
    trace["events"] = []
    with pytest.raises(ValueError, match="holds no event"):
        read_trace(trace_json(trace))
