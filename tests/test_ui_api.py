"""The launched app driven through its named API endpoints with gradio_client (tiny random model)."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import html  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import pytest  # noqa: E402

gradio_client = pytest.importorskip("gradio_client")

from twotower.decoding import drain  # noqa: E402
from twotower.engine import load_engine  # noqa: E402
from ui.app import PAGE_CSS, build_demo, launch_local  # noqa: E402

# prompt, mode, γ, S, steps per block, max new tokens, temperature, seed, colour by (, anchor first, heal, top-k,
# top-p)
SMALL = (0.8, 4, 4, 8, 0.0, 0)



@pytest.fixture(scope="module")
def app():
    engine = load_engine(preset="tiny")
    demo = build_demo(engine, concurrency_limit=2)
    url = launch_local(demo)
    yield engine, url, gradio_client.Client(url, verbose=False, analytics_enabled=False)
    demo.close()


def reference_completion(engine, prompt, mode, settings=SMALL):
    gamma, size, steps, max_new, temperature, seed = settings
    result = drain(engine.stream(mode, engine.encode_prompt(prompt), gamma=gamma, block_size=size,
                                 steps_per_block=steps, max_new_tokens=max_new, temperature=temperature, seed=seed))
    return engine.decode(result.new_tokens[0])


def test_every_panel_has_a_named_endpoint(app):
    _, _, client = app
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/generate", "/replay", "/race", "/speculative_audit", "/sweep", "/cost", "/model_info"} <= names
    generate = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/generate"]["parameters"]
    last = {p["parameter_name"]: p.get("parameter_default") for p in generate[-4:]}
    # the record State is not an API input; the sampling filters came last, at their "every token" ends
    assert last == {"anchor_first": False, "heal": True, "top_k": 0, "top_p": 1.0}


@pytest.mark.parametrize("mode", ["diffusion", "speculative", "mock_ar", "ar"])
def test_generate_in_each_mode(app, mode):
    engine, _, client = app
    view, stats, completion, scrubber = client.predict("def f(x):", mode, *SMALL, "step", api_name="/generate")
    assert f'data-mode="{mode}"' in view and 'data-done="1"' in view and 'data-masked="0"' in view
    assert "total time" in stats and "tokens per denoiser pass" in stats
    assert completion == reference_completion(engine, "def f(x):", mode)


def test_generate_anchored_through_the_api(app):
    """The Playground's anchor checkbox is the endpoint's input after colour by: left out it is off (the calls
    above); the healing checkbox comes last, on when left out."""
    engine, _, client = app
    view, _, completion, _ = client.predict("def f(x):", "diffusion", *SMALL, "step", True, api_name="/generate")
    assert "given, not from a denoiser step" in view
    gamma, size, steps, max_new, temperature, seed = SMALL
    expected = drain(engine.stream("diffusion", engine.encode_prompt("def f(x):"), gamma=gamma, block_size=size,
                                   steps_per_block=steps, max_new_tokens=max_new, temperature=temperature, seed=seed,
                                   anchor_first=True))
    assert completion == engine.decode(expected.new_tokens[0])


def test_top_k_and_top_p_filter_a_sampled_run_through_the_api(app):
    """The sidebar's top-k and top-p, the endpoint's last inputs: top-k 1 leaves the argmax alone, so a sampled
    AR run is the greedy one whatever the seed; the run's statistics name the filters it ran with."""
    engine, _, client = app
    greedy = reference_completion(engine, "def f(x):", "ar")
    sampled = (0.8, 4, 4, 8, 1.5, 7)
    _, stats, completion, _ = client.predict("def f(x):", "ar", *sampled, "step", False, True, 1, 1.0,
                                             api_name="/generate")
    assert completion == greedy and "temperature 1.5, top-k 1, seed 7" in html.unescape(stats)
    _, stats, completion, _ = client.predict("def f(x):", "ar", *sampled, "step", False, True, 0, 0.5,
                                             api_name="/generate")
    expected = drain(engine.stream("ar", engine.encode_prompt("def f(x):"), max_new_tokens=8, temperature=1.5,
                                   seed=7, top_p=0.5))
    assert completion == engine.decode(expected.new_tokens[0]) and "temperature 1.5, top-p 0.5, seed 7" in stats
    with pytest.raises(Exception, match="top-p takes a number from 0.05 to 1, got 0"):
        client.predict("def f(x):", "ar", *sampled, "step", False, True, 0, 0.0, api_name="/generate")
    # the audit reads them too: top-k 1 makes the target and the draft one token each, so every draft the target
    # would have written is accepted and the output is greedy AR's
    _, _, summary = client.predict("def f(x):", *sampled, False, 0.0, 1, 1.0, api_name="/speculative_audit")
    assert html.escape(greedy) in summary or greedy in html.unescape(summary)


@pytest.mark.parametrize("prompt, settings, message", [
    ("", SMALL, "the prompt is empty"),
    ("y" * 2100, SMALL, "the limit is 2048 tokens"),
], ids=["empty", "too-long"])
def test_bad_prompt_gives_a_message(app, prompt, settings, message, capfd):
    """A refusal is raised to an API caller (the page's toast never reached it: the call read as a success whose
    outputs were the panel's HTML and update dicts), and logs no traceback: the caller's mistake."""
    _, _, client = app
    capfd.readouterr()
    with pytest.raises(Exception, match=message):
        client.predict(prompt, "diffusion", *settings, "step", api_name="/generate")
    assert "Traceback" not in capfd.readouterr().err


def test_out_of_range_slider_is_refused_with_its_bounds(app, capfd):
    _, _, client = app
    capfd.readouterr()
    with pytest.raises(Exception, match="γ confidence threshold takes a number from 0.05 to 1, got 1.5"):
        client.predict("def f():", "diffusion", 1.5, 4, 4, 8, 0.0, 0, "step", api_name="/generate")
    # the caller's mistake: no server traceback (each out-of-range edit in a browser logged one)
    assert "Traceback" not in capfd.readouterr().err
    view, *_ = client.predict("def f():", "diffusion", *SMALL, "step", api_name="/generate")
    assert 'data-done="1"' in view  # still serving after the refusal


@pytest.mark.parametrize("value, shown", [(None, "None"), ("8", "'8'"), ([1], "[1]"), (True, "True"),
                                          (10 ** 30, str(10 ** 30))])
def test_a_slider_given_no_number_is_refused_by_its_label(app, value, shown):
    """None, "8" or a list for a slider failed in Gradio's own preprocessing (a TypeError from a comparison),
    before any handler ran: the caller got Gradio's bare "The upstream Gradio app has raised an exception"."""
    _, _, client = app
    with pytest.raises(Exception, match=re.escape(f"block size S takes a number from 1 to 64, got {shown}")):
        client.predict("def f():", "diffusion", 0.8, value, 4, 8, 0.0, 0, "step", api_name="/generate")
    with pytest.raises(Exception, match=re.escape(f"max new tokens takes a number from 1 to 512, got {shown}")):
        client.predict("def f(x):", ["diffusion"], 0.8, 4, 4, value, 1, api_name="/race")


def test_a_replay_step_past_either_end_is_that_end_and_text_is_refused(app):
    """The scrubber's number box clamps what is typed; a refusal of the typed value left the box at the last step
    and the board at the step before, under an error. Now the step is clamped the same way on both sides."""
    import gradio as gr

    from ui.components import StepScrubber

    scrubber = StepScrubber(1, 16, value=1, step=1, label="Replay step")
    assert (scrubber.preprocess(99999), scrubber.preprocess(0), scrubber.preprocess(7)) == (16, 1, 7)
    with pytest.raises(gr.Error, match="Replay step takes a number from 1 to 16, got 'x'"):
        scrubber.preprocess("x")
    _, url, _ = app  # through the API as well, from a session of its own (no run recorded in it)
    client = gradio_client.Client(url, verbose=False, analytics_enabled=False)
    assert "Nothing recorded yet" in client.predict(99999, "step", api_name="/replay")
    with pytest.raises(Exception, match="Replay step takes a number"):
        client.predict(None, "step", api_name="/replay")


def test_a_checkbox_group_takes_none_as_nothing_ticked_and_refuses_a_string(app):
    """modes=None through the API was Gradio's bare error, not "AR alone" as the handler says; a string was
    walked letter by letter ("Value: 'd' is not in the list of choices")."""
    _, _, client = app
    cards, _ = client.predict("def f(x):", None, 0.8, 4, 4, 8, 1, api_name="/race")
    assert "AR alone: tick a contestant" in cards and "γ =" not in cards  # AR reads no diffusion setting
    with pytest.raises(Exception, match="race against AR takes a list of choices from .* got 'diffusion'"):
        client.predict("def f(x):", "diffusion", 0.8, 4, 4, 8, 1, api_name="/race")


def test_a_huge_block_size_in_the_sweep_is_refused_and_the_next_call_works(app):
    """S = 10**30 ran, then Gradio could not encode the reply (orjson: "Integer exceeds 64-bit range"): the
    caller got a bare CancelledError, and so did its next call."""
    _, _, client = app
    with pytest.raises(Exception, match="block size 1e\\+30 is outside 1 … 512"):
        client.predict(["fibonacci"], "", "0.9", str(10 ** 30), 4, 4, False, 1, api_name="/sweep")
    view, *_ = client.predict("def f():", "diffusion", *SMALL, "step", api_name="/generate")
    assert 'data-done="1"' in view


@pytest.mark.parametrize("cost_args, message", [
    ((2.0, 1.5, 50, 100.0, None, None, 1.0), "number of GPUs must be a whole number, got 1.5"),
    ((-5.0, 1, 50, 100.0, None, None, 1.0), "price per GPU-hour ($) must be >= 0, got -5"),
    ((2.0, 1, 50, -10.0, None, None, 1.0), "AR throughput (tokens/s) must be > 0, got -10"),
    # an OverflowError, Gradio's bare error; a flag read as 1; inf called "must be > 0"
    ((2.0, 1, 50, 10 ** 400, None, None, 1.0), "AR throughput (tokens/s) must be a finite number, got an integer "
                                                "of 401 digits"),
    ((2.0, True, 50, 100.0, None, None, 1.0), "number of GPUs must be a number, got True"),
], ids=["fractional-gpus", "negative-price", "negative-throughput", "huge-int", "flag-gpus"])
def test_bad_cost_numbers_get_the_panels_message_naming_the_field(app, cost_args, message):
    """The number boxes once had Gradio's own minimum / precision: a bare "Error" pill ("Value -5 is less than
    minimum value 0.") with the last table left under it, and 1.5 GPUs rounded to 2 without a word."""
    _, _, client = app
    with pytest.raises(Exception, match=re.escape(message)):
        client.predict(*cost_args, api_name="/cost")


def test_a_negative_seed_gets_the_engines_message(app):
    _, _, client = app
    with pytest.raises(Exception, match="seed"):
        client.predict("def f():", "ar", 0.8, 4, 4, 8, 0.7, -3, "step", api_name="/generate")


def test_prompts_are_escaped_in_the_page(app):
    _, _, client = app
    prompt = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    view, *_ = client.predict(prompt, "ar", *SMALL, "step", api_name="/generate")
    assert "<script>" not in view and "<img" not in view and html.escape(prompt) in view


def test_race(app):
    _, _, client = app
    cards, plot, = client.predict("def f(x):", ["diffusion", "mock_ar"], 0.8, 4, 4, 8, 1, api_name="/race")
    assert cards.count('class="tt-card"') == 3 and "× AR" in cards and "tokens/s" in cards
    assert plot["type"] == "plotly"
    with pytest.raises(Exception, match="the prompt is empty"):
        client.predict("", ["diffusion"], 0.8, 4, 4, 8, 1, api_name="/race")


def test_speculative_audit(app):
    _, _, client = app
    table, histogram, summary = client.predict("def f(x):", *SMALL, api_name="/speculative_audit")
    assert 'data-rounds="' in table and "acceptance rate" in summary and histogram["type"] == "plotly"
    # a random tiny model's drafts are unconfident: cut at 0.95, every round proposes one token
    _, _, cut = client.predict("def f(x):", *SMALL, True, 0.95, api_name="/speculative_audit")
    count = {k: int(re.search(rf"{k}</td><td class=\"v\">(\d+)", cut).group(1))
             for k in ("verification rounds", "drafted tokens")}
    assert count["drafted tokens"] == count["verification rounds"] > 1
    full_drafts = int(re.search(r"drafted tokens</td><td class=\"v\">(\d+)", summary).group(1))
    assert full_drafts > count["drafted tokens"]


def test_sweep(app):
    _, _, client = app
    plot, table, csv_path, message = client.predict(["fibonacci"], "", "0.5, 0.9", "4", 4, 8, api_name="/sweep")
    assert "2 grid points" in message and plot["type"] == "plotly"
    with open(csv_path) as f:
        header = f.readline()
    assert "gamma" in header and "ratio_vs_ar" in header
    assert table["headers"][:3] == ["γ", "S", "steps"] and len(table["value"]["data"]) == 2  # short headers
    with pytest.raises(Exception, match="γ values"):
        client.predict(["fibonacci"], "", "fast", "4", 4, 8, api_name="/sweep")
    *_, anchored = client.predict(["fibonacci"], "", "0.5", "4", 4, 8, True, api_name="/sweep")
    assert "1 grid point over" in anchored and "anchored diffusion" in anchored


def test_cost_and_model_info(app):
    _, _, client = app
    table, plot = client.predict(2.0, 1, 50, 100.0, 250.0, None, 1.0, api_name="/cost")
    assert "$1,440" in table and plot["type"] == "plotly"
    with pytest.raises(Exception, match="no throughput"):
        client.predict(2.0, 1, 50, None, None, None, 1.0, api_name="/cost")
    info = client.predict(8, api_name="/model_info")
    assert "M*EM-*" in info and "Memory plan" in info and "block size 8" in info


def test_concurrent_clients_get_their_own_results(app):
    engine, url, _ = app
    prompts = ["def alpha():", "class Beta:", "import gamma"]
    clients = [gradio_client.Client(url, verbose=False, analytics_enabled=False) for _ in prompts]
    with ThreadPoolExecutor(len(prompts)) as pool:
        futures = [pool.submit(c.predict, p, "diffusion", 0.8, 4, 4, 12, 0.0, 0, "step", api_name="/generate")
                   for c, p in zip(clients, prompts)]
        results = [f.result(timeout=120) for f in futures]
    for prompt, (view, _, completion, _) in zip(prompts, results):
        assert html.escape(prompt) in view
        assert all(html.escape(other) not in view for other in prompts if other != prompt)
        assert completion == reference_completion(engine, prompt, "diffusion", (0.8, 4, 4, 12, 0.0, 0))


def test_cancel_stops_a_run_and_the_app_stays_ready(app):
    _, _, client = app
    job = client.submit("def long():", "mock_ar", 0.8, 4, 4, 512, 0.0, 0, "step", api_name="/generate")
    deadline = time.time() + 60
    while not job.outputs() and time.time() < deadline:  # wait for the first streamed step
        time.sleep(0.05)
    assert job.outputs(), "no step streamed"
    job.cancel()
    # wait until no frame has come for 0.5 s (a loaded host may still deliver frames sent before the cancel)
    streamed, deadline = -1, time.time() + 60
    while len(job.outputs()) != streamed and time.time() < deadline:
        streamed = len(job.outputs())
        time.sleep(0.5)
    assert len(job.outputs()) == streamed, "frames kept coming a minute after the cancel"
    assert 'data-done="0"' in job.outputs()[-1][0]  # it stopped mid-run: 512 tokens take seconds
    view, *_ = client.predict("def f():", "ar", *SMALL, "step", api_name="/generate")
    assert 'data-done="1"' in view


def test_a_second_call_from_one_client_supersedes_its_first(app):
    """The README: one Client is one session, so its second /generate while the first is going ends the first
    at its next step (a second Client's run would go on beside it, as the concurrency test above shows)."""
    engine, _, client = app
    job = client.submit("def long():", "mock_ar", 0.8, 4, 4, 512, 0.0, 0, "step", api_name="/generate")
    deadline = time.time() + 60
    while not job.outputs() and time.time() < deadline:
        time.sleep(0.05)
    assert job.outputs() and not job.done(), "the first run streamed nothing, or ended before the second came"
    view, _, completion, _ = client.predict("def f():", "ar", *SMALL, "step", api_name="/generate")
    assert 'data-done="1"' in view and completion == reference_completion(engine, "def f():", "ar")
    job.result(timeout=60)  # the first has ended, stopped mid-run (512 tokens take seconds)
    view, stats, *_ = job.outputs()[-1]
    # and its last output says so: it ended on its last running frame ("status running…", "so far")
    assert 'data-done="0"' in view and "Stopped" in stats and "running" not in stats


# ------------------------------------------------------------------ `python app.py`
def test_app_without_the_default_model_tells_to_pass_a_preset(tmp_path, monkeypatch, capsys):
    import app as app_script

    monkeypatch.setattr("twotower.engine.DEFAULT_MODEL_DIR", tmp_path / "default")
    assert app_script.main([]) == 2
    err = capsys.readouterr().err
    assert "--preset tiny" in err and "Traceback" not in err
    assert app_script.main(["--model", str(tmp_path / "nowhere")]) == 2
    assert "model directory not found" in capsys.readouterr().err


def test_app_reports_a_broken_default_model_as_it_is(tmp_path, monkeypatch, capsys):
    """The "not there" hint is for a missing directory only; a directory that is there but cannot be read
    must show the loader's own message (the hint would send the user after the wrong cause)."""
    import app as app_script

    broken = tmp_path / "default"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    monkeypatch.setattr("twotower.engine.DEFAULT_MODEL_DIR", broken)
    assert app_script.main([]) == 2
    err = capsys.readouterr().err
    assert "not there" not in err and "Traceback" not in err and err.startswith("error: ")


def test_app_binds_locally_without_a_share_link_by_default(monkeypatch, capsys):
    import gradio as gr

    import app as app_script

    launched, blocked = {}, []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: launched.update(kwargs))
    monkeypatch.setattr(gr.Blocks, "block_thread", lambda self: blocked.append(True))
    assert app_script.main(["--preset", "tiny", "--port", "7999"]) == 0
    # quiet, its address printed here: Gradio's own lines ended with "set `share=True` in `launch()`", code this
    # app's user does not write (the flag is --share)
    assert launched == {"server_name": "127.0.0.1", "server_port": 7999, "share": False, "css": PAGE_CSS,
                        "state_session_capacity": 1000,  # a shared server's sessions do not pile up to ~2 GB
                        "quiet": True, "prevent_thread_lock": True} and blocked == [True]
    said = capsys.readouterr()
    assert "note: --preset tiny builds random weights" in said.err  # as every twotower command
    assert "* Running on local URL:  http://127.0.0.1:7999/  (Ctrl-C stops it; --share adds a public link)" in said.out
    with pytest.raises(SystemExit) as refused:  # a prefix is not taken for --concurrency, as in every twotower command
        app_script.parse_args(["--preset", "tiny", "--conc", "3"])
    assert refused.value.code == 2 and "unrecognized arguments: --conc 3" in capsys.readouterr().err
    assert app_script.main(["--preset", "tiny", "--host", "0.0.0.0", "--share"]) == 0
    assert launched["server_name"] == "0.0.0.0" and launched["share"] is True and launched["quiet"] is False


def test_app_compile_warms_up_before_it_serves(monkeypatch, capsys):
    """python app.py --compile: the towers are compiled and every mode run once before the page is served, so
    that the first visitor's run does not pay the compile."""
    import gradio as gr

    import app as app_script
    from twotower import compiled

    calls = []

    def record_compile(model):
        calls.append("compile")
        model.is_compiled_for_decoding = True
        return model

    monkeypatch.setattr(compiled, "compile_towers", record_compile)
    monkeypatch.setattr(compiled, "warm_up", lambda engine: calls.append("warm up") or 1.0)
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: calls.append("launch"))
    assert app_script.main(["--preset", "tiny", "--compile"]) == 0
    assert calls == ["compile", "warm up", "launch"]
    assert "compiled and warmed up in 1 s" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--port", "99999"], "--port must be between 1 and 65535, got 99999"),  # was an OverflowError traceback
    (["--host", "no.such.host.invalid"], "--host 'no.such.host.invalid' is not an address"),
    (["--concurrency", "0"], "--concurrency must be >= 1"),
])
def test_app_refuses_a_bad_address_before_loading_anything(monkeypatch, capsys, argv, message):
    import app as app_script

    monkeypatch.setattr("twotower.run_setup.engine_from_args", lambda args: pytest.fail("loaded a model first"))
    assert app_script.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_app_on_a_taken_port_says_so(monkeypatch, capsys):
    """gradio's OSError ("Cannot find empty port") came out as a traceback."""
    import gradio as gr

    import app as app_script

    def taken(self, **kwargs):
        raise OSError(f"Cannot find empty port in range: {kwargs['server_port']}-{kwargs['server_port']}.")

    monkeypatch.setattr(gr.Blocks, "launch", taken)
    assert app_script.main(["--preset", "tiny", "--port", "7998"]) == 2
    err = capsys.readouterr().err
    assert "cannot serve on 127.0.0.1:7998" in err and "give --port" in err and "Traceback" not in err


def test_app_runs_the_denoiser_in_its_own_dtype(monkeypatch):
    import gradio as gr

    import app as app_script
    from ui import app as ui_app

    built, real_build = {}, ui_app.build_demo

    def spy(engine, **kwargs):  # main() imports build_demo from ui.app when it runs
        built["engine"] = engine
        return real_build(engine, **kwargs)

    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: None)
    monkeypatch.setattr(ui_app, "build_demo", spy)
    assert app_script.main(["--preset", "tiny", "--den-dtype", "bf16"]) == 0
    info = built["engine"].describe()
    assert (info["dtype"], info["den_dtype"]) == ("fp32", "bf16")


def test_a_checkbox_sent_as_a_string_is_refused_by_its_label(app):
    """Gradio passes an API caller's checkbox value on as it came: bool("no") switched anchoring (and the audit's
    adaptive draft length, the Sweep's anchored diffusion) on."""
    _, _, client = app
    with pytest.raises(Exception, match="anchor each block's first token must be True or False, got 'no'"):
        client.predict("def f(x):", "diffusion", *SMALL, "step", "no", api_name="/generate")
    with pytest.raises(Exception, match="adaptive draft length must be True or False"):
        client.predict("def f(x):", *SMALL, "false", 0.0, api_name="/speculative_audit")
    with pytest.raises(Exception, match="anchored diffusion must be True or False"):
        client.predict(["fibonacci"], "", "0.8", "4", 4, 8, "yes", 1, api_name="/sweep")
    # None too: it read as off (heal=None ran the prompt unhealed without a word)
    with pytest.raises(Exception, match="heal the prompt.s last token must be True or False, got None"):
        client.predict("def f(x):", "diffusion", *SMALL, "step", False, None, api_name="/generate")


def test_a_radio_value_outside_its_choices_is_refused_by_its_label_without_a_traceback(app, capfd):
    """Gradio's own refusal said it clearly but logged a traceback per call, as a server fault."""
    _, _, client = app
    capfd.readouterr()
    with pytest.raises(Exception, match=re.escape("mode takes one of ['diffusion', 'speculative', 'mock_ar', 'ar'], "
                                                  "got 'AR'")):
        client.predict("def f(x):", "AR", *SMALL, "step", api_name="/generate")
    with pytest.raises(Exception, match="colour tokens by takes one of"):
        client.predict("def f(x):", "ar", *SMALL, "bogus", api_name="/generate")
    with pytest.raises(Exception, match=re.escape("race against AR takes choices from ['diffusion', "
                                                  "'diffusion_anchored', 'speculative', 'mock_ar'], got 'ar'")):
        client.predict("def f(x):", ["ar"], 0.8, 4, 4, 8, 1, api_name="/race")
    assert "Traceback" not in capfd.readouterr().err


def test_the_page_shows_a_keyboard_users_focus_on_every_control(app):
    """Range sliders and checked radios drew no focus ring (0 pixels changed on focus, through Chromium): the
    page's own CSS, given to launch() by app.py and launch_local alike, outlines them."""
    import json
    import urllib.request

    _, url, _ = app
    with urllib.request.urlopen(url.rstrip("/") + "/config") as response:
        css = json.load(response).get("css") or ""
    assert "input[type=range]:focus-visible" in css and "input[type=radio]:focus-visible" in css


def test_a_fractional_whole_number_slider_reaches_the_handlers_refusal(app):
    """The whole-number sliders are integers in the API description (precision 0); 2.5 is neither rounded to 2 by
    Gradio nor refused by the component (a page then got a bare error toast): the handler refuses it by name."""
    _, _, client = app
    params = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/generate"]["parameters"]
    types = {p["parameter_name"]: p["type"]["type"] for p in params}
    assert types["block_size"] == types["max_new_tokens"] == types["top_k"] == "integer" and types["gamma"] == "number"
    with pytest.raises(Exception, match="block size S must be an integer, got 2.5"):
        client.predict("def f():", "diffusion", 0.8, 2.5, 4, 8, 0.0, 0, "step", api_name="/generate")
    with pytest.raises(Exception, match="block size S must be an integer, got 2.5"):
        client.predict(2.5, api_name="/model_info")
