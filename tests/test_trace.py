"""A run's trace (twotower/trace.py): the same events as the sampler yielded, as plain JSON, from the Python
API, `generate --trace` and the Playground's "Save this run"."""

import json
import math
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
import torch  # noqa: E402

from twotower.cli import main as cli_main  # noqa: E402
from twotower.trace import FORMAT, VERSION, plain, run_trace, trace_json  # noqa: E402

TINY = ["generate", "--preset", "tiny", "--max-new-tokens", "10", "--block-size", "4", "--steps", "4", "--no-eos"]


def traced(engine, mode, max_new_tokens=10):
    ids = engine.encode_prompt("def f(x):")
    settings = dict(max_new_tokens=max_new_tokens, block_size=4, steps_per_block=4, stop_at_eos=False)
    events = list(engine.stream(mode, ids, **settings))
    trace = run_trace(events, prompt="def f(x):", prompt_ids=ids, mode=mode, settings=settings,
                      tokenizer=engine.tokenizer, mask_token_id=engine.model.config.mask_token_id,
                      engine=engine.describe())
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
    assert trace["finished"] is False and trace["new_tokens"] is None and trace["stats"] is None
    assert len(trace["events"]) == 3
    common = dict(prompt="x", prompt_ids=[1], mode="ar", settings={}, tokenizer=engine.tokenizer, mask_token_id=4)
    with pytest.raises(ValueError, match="nothing to trace"):
        run_trace([], **common)
    with pytest.raises(ValueError, match="StepEvents, not int values"):  # token ids, not events
        run_trace([5, 6], **common)
    with pytest.raises(ValueError, match="got GenerationResult"):
        from twotower.decoding import drain

        run_trace(drain(engine.stream("ar", ids, max_new_tokens=2)), **common)


def test_generate_trace_writes_the_run_it_printed(tmp_path, capsys):
    path = tmp_path / "run.json"
    assert cli_main(TINY + ["--mode", "speculative", "--json", "--trace", str(path), "def f(x):"]) == 0
    printed = json.loads(capsys.readouterr().out)
    trace = json.loads(path.read_text(encoding="utf-8"))
    assert trace["completion"] == printed["completion"] and trace["stats"]["rounds"] == printed["stats"]["rounds"]
    assert trace["engine"] == printed["engine"] and trace["prompt"] == "def f(x):"
    assert trace["settings"]["block_size"] == 4 and trace["settings"]["gamma"] is None  # None: the model's own
    assert emitted_ids(trace["events"]) == trace["new_tokens"][0]


@pytest.mark.parametrize("where,message", [("folder", "is a folder; give a file name"),
                                           ("missing/run.json", "does not exist")])
def test_a_trace_path_that_cannot_be_written_is_refused_before_the_run(tmp_path, capsys, monkeypatch, where,
                                                                       message):
    import twotower.run_setup as run_setup

    (tmp_path / "folder").mkdir()

    def no_loading(args):
        raise AssertionError("the model was loaded before the path was checked")

    monkeypatch.setattr(run_setup, "engine_from_args", no_loading)
    assert cli_main(TINY + ["--trace", str(tmp_path / where), "x"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_the_playground_saves_its_last_run(engine):
    from ui.handlers import NOTHING_TO_SAVE, Handlers

    handlers = Handlers(engine)
    handlers.frame_interval_s = 0
    with pytest.warns(UserWarning, match=NOTHING_TO_SAVE):  # gr.Warning outside a request
        assert handlers.save_trace(None) == {"__type__": "update"}  # gr.skip(): the file box stays
    outputs = list(handlers.generate("def f(x):", "mock_ar", 0.8, 4.0, 4.0, 6.0, 0.0, 0, "step"))
    record = outputs[-1][3]
    saved = handlers.save_trace(record)
    trace = json.loads(open(saved.value["path"], encoding="utf-8").read())
    assert trace["mode"] == "mock_ar" and trace["settings"]["max_new_tokens"] == 6 and trace["finished"]
    assert trace["completion"] == outputs[-1][2] and len(trace["events"]) == len(record["events"])
    # stopped after its first steps: the trace says unfinished and holds what was recorded
    stopped = {**record, "events": record["events"][:2], "stopped": True}
    trace = json.loads(open(handlers.save_trace(stopped).value["path"], encoding="utf-8").read())
    assert trace["finished"] is False and len(trace["events"]) == 2
