"""The Gradio app: `build_demo(engine)` lays out the six panels and wires them to ui.handlers (the Playground;
ui.panel_handlers and ui.sweep_panel have the other five).

Wiring notes (Gradio 6 front-end behaviour, checked in its source: the listeners of one trigger run in
the order they were registered, each queue-free one awaited before the next, and a listener's `cancels=` is
sent as the listener is dispatched, before its own function runs):
* Generate and Shift+Enter in the prompt (Enter makes a new line in a box of several) are one listener (api_name
  "generate"); pressed while a run is going, they supersede it (it stops at its next step) and run the prompt as
  it is now.
* Releasing γ / S / steps first runs a queue-free listener that supersedes the session's run in flight
  (Playground tab only; it stops at its next step), then re-runs the prompt with trigger_mode="multiple" while
  the Playground tab is open (a State follows the tab; the mode radio and the anchor and healing checkboxes re-run
  the same way), unless the board holds a finished run of the same inputs (Gradio sends a release whenever a slider's
  number box loses focus); a re-run still going is superseded server-side (one live run per browser session,
  in the StopRequests of every panel: the older stops at its next step).
* Each long-running panel has its own Stop, ending its own run at its next step, and a follow-up listener
  turns the panel's "running" line into a "stopped" one. The Playground's cancels in Gradio (its run yields
  every step) and tells its run too (a cancel missed a run pressed a moment before); the Race's, the audit's
  and the Sweep's tell their runs directly (queue-free), which end at the next decoding step (the Race and the
  Sweep yield only between timed runs); a new run of a panel stops the session's earlier one the same way.
* Every panel's function has a named API endpoint, so gradio_client can drive the app.
"""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from twotower.engine import LAYER_KEY, MODES

from .board import Board
from .components import ChoiceGroup, NumberSlider, StepScrubber
from .examples import DEFAULT_PROMPT, EXAMPLE_PROMPTS
from .handlers import Handlers
from .panel_handlers import RACE_MODES
from .panel_common import HEAL_LABEL, MAX_NEW_TOKENS, TOP_K_MAX
from .render import CSS, board_html, note_html
from .render_panels import MODE_LABELS

MODE_CHOICES = [(MODE_LABELS[mode], mode) for mode in MODES]  # (label, value), in the engine's order
AFTER_STOP = "always_last"  # see the Race wiring
PROMPT_KEYS = "Shift+Enter runs it (Enter: a new line)"
# the Race's and the audit's healing checkbox (the Playground's says more, beside its board)
HEAL_INFO = "off: the prompt runs as typed, its last token kept (README: token healing)"
# the page's own rules, beside the components' (render.CSS): a keyboard user's focus shows on every control
# (range sliders and checked radios drew none)
PAGE_CSS = """
input[type=range]:focus-visible, input[type=radio]:focus-visible, input[type=checkbox]:focus-visible {
  outline: 2px solid #1c7ed6; outline-offset: 2px; }
"""
# Every listener that runs the model shares one concurrency group: at most `concurrency_limit` runs at
# once over all panels and users; the rest wait in Gradio's queue.
ENGINE = "engine"
RACE_CHOICES = [(MODE_LABELS[mode], mode) for mode in RACE_MODES]  # AR always races: the baseline


def _html(value="", elem_id=None, label=None) -> gr.HTML:
    """An HTML output with the app's stylesheet; `label` names it in the API description."""
    return gr.HTML(value, label=label or elem_id, css_template=CSS, elem_id=elem_id, js_on_load=None)


def _constant(value):
    """A listener function that returns `value` (one per tab: a lambda in a loop would share the last)."""
    return lambda: value


def build_demo(engine, concurrency_limit: int = 2) -> gr.Blocks:
    """The whole app around one loaded engine (shared, read-only); per-user data lives in gr.State."""
    handlers = Handlers(engine)
    cfg = engine.model.config
    info = engine.describe()
    c = SimpleNamespace(tabs={})  # every component, by name, for the tab builders and the wiring
    # delete_cache: Gradio's copies of the files it served (traces, the Race's and the Sweep's CSVs), a day old, go
    # (hourly); without it they stayed
    with gr.Blocks(title="TwoTower Playground", analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        gr.Markdown(f"## TwoTower Playground · two-tower diffusion LM on NemotronH\n"
                    f"Loaded: `{info['checkpoint']}` · {info['params_context']:,} + {info['params_denoiser']:,} "
                    f"parameters (context + denoiser) · layers `{info['layer_pattern']}` ({LAYER_KEY}) · "
                    f"context tower on {info['ctx_device']}, denoiser on {info['den_device']}")
        c.race_measured = gr.State(None)  # this session's Race numbers (each mode's latest), read by the Cost panel
        c.record = gr.State(None)  # this session's last Playground run: prompt + every event
        c.race_used, c.sweep_used = gr.State(None), gr.State(None)  # the shared settings the last Race / Sweep read
        c.active_tab = gr.State("playground")  # the tab this session shows: slider releases re-run only the Playground
        with gr.Row():
            with gr.Column(scale=1, min_width=240):
                _settings_column(c, cfg)
            # below ~880 px the settings wrap above the panels instead of squeezing them to a third of the width
            with gr.Column(scale=4, min_width=620):
                with gr.Tabs():
                    _playground_tab(c, engine)
                    _race_tab(c)
                    _audit_tab(c, cfg)
                    _sweep_tab(c)
                    _cost_tab(c)
                    _model_tab(c, handlers)
        # the order of registration is the order the front end runs a trigger's listeners (see each wiring)
        _wire_playground(c, handlers)
        _wire_panels(c, handlers)
        _wire_stops(c, handlers)
        demo.unload(handlers.forget_session)  # a closed page's entries (Stops, notes) do not pile up on the server
    demo.queue(default_concurrency_limit=concurrency_limit)
    return demo


def _settings_column(c, cfg) -> None:
    """The shared settings (sliders every panel reads its own share of), into c."""
    # which panel reads what: a "(all panels)" heading promised the Race a temperature it never uses
    gr.Markdown("**Settings**  \nPlayground and audit: all. Race: γ, S, steps, max tokens (greedy). "
                "Sweep: steps and max tokens (its own γ and S lists).")
    # speculative drafts with the model's own number of passes; γ and the steps act on a draft
    # only when it takes two or more (one pass commits the whole block)
    one_pass = cfg.default_draft_steps == 1
    c.gamma = NumberSlider(0.05, 1.0, value=cfg.default_gamma, step=0.05, label="γ confidence threshold",
                           info="release to re-run the Playground"
                           + ("; speculative drafts in one pass, where γ does not act" if one_pass else ""),
                           elem_id="gamma")
    c.block_size = NumberSlider(1, 64, value=cfg.default_block_size, step=1, label="block size S",
                                info="release to re-run the Playground", elem_id="block-size")
    c.steps = NumberSlider(1, 64, value=cfg.default_steps_per_block, step=1, label="steps per block",
                           info=f"release to re-run the Playground; diffusion's (speculative drafts with the "
                           f"model's {cfg.default_draft_steps} pass{'' if one_pass else 'es'})",
                           elem_id="steps")
    c.max_new = NumberSlider(1, MAX_NEW_TOKENS, value=64, step=1, label="max new tokens", elem_id="max-new")
    c.temperature = NumberSlider(0.0, 2.0, value=0.0, step=0.05, label="temperature", elem_id="temperature")
    # the sampled draw's filters (every mode's, the speculative target and draft alike): greedy reads neither
    c.top_k = NumberSlider(0, TOP_K_MAX, value=0, step=1, label="top-k", info="0: every token; read when sampling",
                           elem_id="top-k")
    c.top_p = NumberSlider(0.05, 1.0, value=1.0, step=0.05, label="top-p", info="1: every token; read when sampling",
                           elem_id="top-p")
    # no minimum / precision: the engine's check names the field (Gradio's said "Value -3 is less than minimum
    # value 0" on a bare Error pill, and rounded 1.5 silently)
    c.seed = gr.Number(value=0, label="seed", info="empty: unseeded", elem_id="seed")


def _playground_tab(c, engine) -> None:
    """Prompt, mode, the live board and its scrubber, statistics, text and trace file."""
    with gr.Tab("Playground", id="playground") as c.tabs["playground"]:
        with gr.Row():
            # as tall as the controls beside it (5 lines left an empty band under the box)
            c.prompt = gr.Textbox(value=DEFAULT_PROMPT, lines=13, max_lines=20, label="Prompt",
                                  info=PROMPT_KEYS, elem_id="prompt", scale=3)
            with gr.Column(scale=1, min_width=200):
                c.mode = gr.Radio(MODE_CHOICES, value="diffusion", label="mode", info="a change re-runs",
                                  elem_id="mode")
                c.colour_by = gr.Radio(["step", "confidence"], value="step",
                                       label="colour tokens by", elem_id="colour-by")
                c.anchor_first = gr.Checkbox(False, label="anchor each block's first token",
                                             info="diffusion: the context tower's own next token "
                                             "(no denoiser pass; not the release's rule)",
                                             elem_id="anchor-first")
                c.heal = gr.Checkbox(True, label=HEAL_LABEL,
                                     info="a prompt typed mid-token (`ret`, `):`): the first token is chosen among "
                                     "those that start with its last token's text (README: token healing)",
                                     elem_id="heal")
        gr.Examples([[p] for p in EXAMPLE_PROMPTS.values()], inputs=[c.prompt],
                    label="Example prompts (Python, like the training data)")
        with gr.Row():
            c.generate_btn = gr.Button("Generate", variant="primary", elem_id="generate")
            c.stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
            # a side action: narrower than the two that run and stop
            c.save_btn = gr.Button("Save this run (JSON)", elem_id="save-run", scale=0, min_width=260)
            # its counterpart: a saved run (this app's, or `generate --trace`'s on another machine) back on the board
            c.open_btn = gr.UploadButton("Open a saved run (JSON)", file_types=[".json"], type="filepath",
                                         elem_id="open-run", scale=0, min_width=260)
        c.view = _html(board_html(Board(), engine.tokenizer.piece, engine.eos_token_id), "view")
        c.scrubber = StepScrubber(1, 2, value=1, step=1, visible=False, label="Replay step",
                                  elem_id="scrubber")
        # side by side on a wide screen; on a phone (390 px) the table and the text stack
        with gr.Row():
            with gr.Column(min_width=300):  # gr.HTML's own min_width does not reach its block
                c.stats = _html("", "stats")
            c.completion = gr.Textbox(label="Completion (text)", lines=6, interactive=False,
                                      elem_id="completion", min_width=300)
        c.trace_file = gr.File(label="This run's trace: every step's tokens, confidences and commits "
                               "(JSON, as `twotower generate --trace` writes)",
                               visible=False, interactive=False, elem_id="trace-file")


def _race_tab(c) -> None:
    """Contestants, timed runs, cards, bars and the CSV download."""
    with gr.Tab("Race", id="race") as c.tabs["race"]:
        gr.Markdown("Each mode against AR, one after the other with the same settings (greedy, "
                    "EOS ignored): a warm-up run, then timed runs that draw nothing. "
                    "Another run going meanwhile (another tab, another user) slows a timing: "
                    "its card then says so.")
        with gr.Row():
            c.race_prompt = gr.Textbox(value=DEFAULT_PROMPT, lines=4, label="Prompt", info=PROMPT_KEYS,
                                       elem_id="race-prompt", scale=3)
            with gr.Column(scale=1, min_width=200):
                c.race_modes = ChoiceGroup(RACE_CHOICES, value=["diffusion"],
                                           label="race against AR", elem_id="race-modes")
                # one run's speed is one sample of a noisy host: three give a median and a spread
                c.repeats = NumberSlider(1, 5, value=3, step=1, label="timed runs per mode (median)")
                c.race_heal = gr.Checkbox(True, label=HEAL_LABEL, info=HEAL_INFO, elem_id="race-heal")
        with gr.Row():
            c.race_btn = gr.Button("Race", variant="primary", elem_id="race-button")
            c.race_stop = gr.Button("Stop", variant="stop", elem_id="race-stop")
        c.race_stale = _html("", "race-stale")  # says when a slider moved since the Race ran
        c.race_view = _html("", "race-view")
        c.race_plot = gr.Plot(label="tokens / s", elem_id="race-plot")
        with gr.Row():
            c.race_csv_btn = gr.Button("Download the Race (CSV)", elem_id="race-csv-button", scale=0,
                                       min_width=260)
            c.race_file = gr.File(label="The last Race's numbers, every digit (CSV)", visible=False,
                                  interactive=False, elem_id="race-csv")


def _audit_tab(c, cfg) -> None:
    """The speculative audit: draft-length controls, rounds table, histogram, summary."""
    with gr.Tab("Speculative audit", id="audit") as c.tabs["audit"]:
        c.audit_prompt = gr.Textbox(value=DEFAULT_PROMPT, lines=4, label="Prompt", info=PROMPT_KEYS,
                                    elem_id="audit-prompt")
        with gr.Row():
            c.audit_adaptive = gr.Checkbox(False, label="adaptive draft length",
                                           info="longer after full acceptances, shorter after rejections",
                                           elem_id="audit-adaptive")
            c.audit_cut = NumberSlider(0.0, 0.95, value=cfg.default_min_draft_confidence, step=0.05,
                                       label="propose draft tokens with confidence ≥",
                                       info="0 verifies the whole draft", elem_id="audit-cut")
            c.audit_heal = gr.Checkbox(True, label=HEAL_LABEL, info=HEAL_INFO, elem_id="audit-heal")
        with gr.Row():
            c.audit_btn = gr.Button("Run speculative decoding", variant="primary",
                                    elem_id="audit-button")
            c.audit_stop = gr.Button("Stop", variant="stop", elem_id="audit-stop")
        c.audit_note = _html("", "audit-note")  # a press refused while an audit runs says so here at once
        c.audit_summary = _html("", "audit-summary")
        c.audit_plot = gr.Plot(label="acceptance lengths", elem_id="audit-plot")
        c.audit_table = _html("", "audit-table")


def _sweep_tab(c) -> None:
    """The γ × S grid's inputs, scatter, table and CSV."""
    with gr.Tab("Sweep", id="sweep") as c.tabs["sweep"]:
        gr.Markdown("γ × S grid over a prompt set (steps per block and max new tokens from the "
                    "settings): throughput ratio against agreement with AR (the Pareto frontier's two axes); "
                    "the table adds AR's log-likelihood of each point's output.")
        c.sweep_examples = ChoiceGroup(list(EXAMPLE_PROMPTS), value=list(EXAMPLE_PROMPTS)[:2],
                                       label="prompt set (examples)")
        c.sweep_extra = gr.Textbox(lines=3, label="extra prompt (optional)")
        with gr.Row():
            c.sweep_gammas = gr.Textbox("0.5, 0.7, 0.9", label="γ values")
            c.sweep_sizes = gr.Textbox("4, 8, 16", label="block sizes S")
            # one run's speed is one sample of a noisy host: × AR and the frontier move with it
            c.sweep_repeats = NumberSlider(1, 5, value=1, step=1, label="timed runs per point (median)",
                                           elem_id="sweep-repeats")
            c.sweep_anchor = gr.Checkbox(False, label="anchored diffusion",
                                         info="each block's first token from the context tower",
                                         elem_id="sweep-anchor")
        with gr.Row():
            c.sweep_btn = gr.Button("Run sweep", variant="primary", elem_id="sweep-button")
            c.sweep_stop = gr.Button("Stop", variant="stop", elem_id="sweep-stop")
        c.sweep_stale = _html("", "sweep-stale")
        c.sweep_message = _html("", "sweep-message")
        c.sweep_plot = gr.Plot(label="throughput ratio vs agreement with AR", elem_id="sweep-plot")
        c.sweep_table = gr.Dataframe(label="grid points", interactive=False)
        c.sweep_csv = gr.File(label="CSV download")


def _cost_tab(c) -> None:
    """Prices and throughputs in, $/M tokens out."""
    with gr.Tab("Cost", id="cost") as c.tabs["cost"]:
        gr.Markdown("Monthly cost and $ per million output tokens from a throughput per GPU. "
                    "Use the last Race's numbers (measured on this machine) or type your own.")
        with gr.Row():
            # no minimum / precision here either: ui.cost refuses a bad number by name (GPUs = 1.5 was rounded to 2)
            c.price = gr.Number(2.0, label="$ per GPU-hour")
            c.gpus = gr.Number(1, label="GPUs")
            c.utilisation = NumberSlider(1, 100, value=60, step=1, label="utilisation %")
            c.api_price = gr.Number(0.60, label="API price, $ per M output tokens")
        with gr.Row():
            # Gradio draws an empty number as 0: the labels say what a 0 does
            c.tps_ar = gr.Number(None, label="AR tokens/s per GPU (empty or 0: left out)")
            c.tps_diffusion = gr.Number(None, label="diffusion tokens/s per GPU (empty or 0: left out)")
            c.tps_speculative = gr.Number(None,
                                          label="speculative tokens/s per GPU (empty or 0: left out)")
        with gr.Row():
            c.use_race_btn = gr.Button("Use the last Race's measurements", elem_id="use-race")
            c.cost_btn = gr.Button("Compute", variant="primary", elem_id="cost-button")
        c.cost_view = _html(note_html("Run the Race or type throughputs, then Compute."), "cost-view")
        c.cost_plot = gr.Plot(label="$ / M output tokens", elem_id="cost-plot")


def _model_tab(c, handlers) -> None:
    """What is loaded, and its memory plan."""
    with gr.Tab("Model", id="model") as c.tabs["model"]:
        c.model_view = _html(handlers.model_info(), "model-view")
        c.model_btn = gr.Button("Plan again at the block size S of the settings", elem_id="model-button")


def _wire_playground(c, handlers) -> None:
    """The Playground's listeners: Generate / Enter, slider re-runs, tabs, save, replay, colour."""
    c.settings = [c.gamma, c.block_size, c.steps, c.max_new, c.temperature, c.seed]
    # the mode and the anchor checkbox re-run too: a board left from another mode would read as this one's
    c.releases = [c.gamma.release, c.block_size.release, c.steps.release, c.mode.input, c.anchor_first.input,
                  c.heal.input]
    # record: a refusal redraws it; heal last, after it (the handlers' order: a positional caller's record stays)
    # the sampling filters after them, last: the endpoint's earlier inputs keep their places
    c.playground_in = [c.prompt, c.mode, *c.settings, c.colour_by, c.anchor_first, c.record, c.heal, c.top_k,
                       c.top_p]
    c.playground_out = [c.view, c.stats, c.completion, c.record, c.scrubber]
    # Queue-free listeners of a trigger are registered before its run: the front end runs a trigger's listeners
    # in order and waits for a queued run's whole stream before the next listener (one registered after the
    # run left the old trace file on screen, or read the Race's settings, only once the run had ended).
    # A saved trace is of the run on the board: a new run takes its file away (save again for the new one).
    gr.on([c.generate_btn.click, c.prompt.submit], handlers.drop_trace, c.active_tab, c.trace_file,
          queue=False, api_visibility="private")
    # Generate (or Enter) while a run is going starts the new run: the queue-free listener first supersedes
    # the session's run in flight, which stops at its next step and frees its place in the queue. Under
    # Gradio's default trigger mode ("once") the click was dropped while the run was pending, and the new
    # prompt never ran.
    gr.on([c.generate_btn.click, c.prompt.submit], handlers.supersede, c.active_tab, None, queue=False,
          api_visibility="private")
    c.run = gr.on([c.generate_btn.click, c.prompt.submit], handlers.generate, c.playground_in, c.playground_out,
                  api_name="generate", show_progress="hidden", concurrency_id=ENGINE, trigger_mode="multiple")
    # Registered before the re-run, so it runs first: on the Playground tab the session's run in flight stops
    # at its next step (which frees its place in the queue for the re-run). Not a front-end `cancels=`: that
    # fired on every tab and left a Playground run frozen mid-way when a slider moved on the Race tab.
    # (release_pressed: with the saved trace's file, as drop_trace does for a click, and neither where the release
    # changes nothing on a finished board: Gradio sends one whenever a slider's number box loses focus)
    gr.on(c.releases, handlers.release_pressed, [c.active_tab, *c.playground_in], c.trace_file, queue=False,
          api_visibility="private")
    # trigger_mode="multiple": every release re-runs at once; an older re-run of this session is
    # superseded server-side and stops at its next step (one live run per session, in handlers._stops).
    c.rerun = gr.on(c.releases, handlers.rerun, [c.active_tab, *c.playground_in], c.playground_out,
                    trigger_mode="multiple", api_visibility="private", show_progress="hidden", concurrency_id=ENGINE)
    for tab_id, tab in c.tabs.items():
        tab.select(_constant(tab_id), None, c.active_tab, queue=False, api_visibility="private")
    c.save_btn.click(handlers.save_trace, c.record, c.trace_file, api_visibility="private", show_progress="hidden")
    # an opened run is another run: the session's run going stops first (queue-free); the open reads no model, so
    # it waits in no model's queue; it keeps the panel's inputs, which a release compares (handlers._board_shows)
    c.open_btn.upload(handlers.open_pressed, None, None, queue=False, api_visibility="private")
    c.open_btn.upload(handlers.open_trace, [c.open_btn, *c.playground_in], [*c.playground_out, c.trace_file],
                      api_visibility="private")
    c.scrubber.input(handlers.replay, [c.record, c.scrubber, c.colour_by], c.view, api_name="replay",
                     trigger_mode="always_last", show_progress="hidden")
    c.colour_by.change(handlers.recolour, [c.record, c.scrubber, c.colour_by], c.view, api_visibility="private",
                       show_progress="hidden")


def _wire_panels(c, handlers) -> None:
    """Race, audit, Sweep, Cost and Model: their buttons, staleness notes and runs."""
    # A click while the panel's run is still pending in the front end waits for it instead of being dropped
    # (Gradio's default, "once"): Stop then Race at once lost the Race, as the stopped run was still pending.
    # A deferred click runs only when that run's end reaches the front end, which is why Stop ends the run
    # at its next step (handlers.stop_race) rather than after the timed run it is in.
    # First, and awaited by the front end before it queues the run: a Stop pressed before is not for this run,
    # and a run its inputs accept stops the session's run of the panel going (handlers._pressed).
    # race_start / sweep_start also keep what Race and Sweep read at their start; a slider moved afterwards
    # marks their results as measured at other values (a Race or Sweep that its inputs refuse keeps the
    # settings, and the note, of the results on screen).
    c.race_in = [c.gamma, c.block_size, c.steps, c.max_new, c.race_prompt, c.race_heal]
    c.sweep_in = [c.steps, c.max_new, c.sweep_gammas, c.sweep_sizes, c.sweep_examples, c.sweep_extra, c.sweep_anchor]
    c.audit_in = [c.audit_prompt, *c.settings, c.audit_adaptive, c.audit_cut, c.top_k, c.top_p, c.audit_heal]
    gr.on([c.race_btn.click, c.race_prompt.submit], handlers.race_start, [c.race_modes, c.repeats, *c.race_in],
          [c.race_used, c.race_stale], queue=False, api_visibility="private")
    gr.on([c.audit_btn.click, c.audit_prompt.submit], handlers.audit_pressed, c.audit_in, c.audit_note, queue=False,
          api_visibility="private")
    c.sweep_btn.click(handlers.sweep_start, [c.sweep_repeats, *c.sweep_in], [c.sweep_used, c.sweep_stale], queue=False,
                      api_visibility="private")
    # a new Race takes the last one's file away (download again once it has run)
    gr.on([c.race_btn.click, c.race_prompt.submit], lambda: gr.File(value=None, visible=False), None, c.race_file,
          queue=False, api_visibility="private")
    gr.on([c.race_btn.click, c.race_prompt.submit], handlers.race,
          [c.race_prompt, c.race_modes, c.gamma, c.block_size, c.steps, c.max_new, c.repeats, c.race_measured,
           c.race_heal],
          [c.race_view, c.race_plot, c.race_measured], api_name="race", concurrency_id=ENGINE,
          show_progress="minimal",  # its cards say which mode is being timed; minimal: a queue position
          trigger_mode=AFTER_STOP)
    gr.on([c.audit_btn.click, c.audit_prompt.submit], handlers.speculative_audit,
          c.audit_in, [c.audit_table, c.audit_plot, c.audit_summary],
          api_name="speculative_audit", concurrency_id=ENGINE, trigger_mode=AFTER_STOP)
    c.sweep_btn.click(handlers.sweep, [c.sweep_examples, c.sweep_extra, c.sweep_gammas, c.sweep_sizes, c.steps,
                                       c.max_new, c.sweep_anchor, c.sweep_repeats],
                      [c.sweep_plot, c.sweep_table, c.sweep_csv, c.sweep_message],
                      api_name="sweep", concurrency_id=ENGINE, trigger_mode=AFTER_STOP,
                      show_progress="minimal")  # its message counts the points; minimal: a queue position
    # preprocess=False: the values as typed, refused by no component (a max new tokens of 0, typed on the way
    # to 10, was a hidden HTTP 500 from each listener at every keystroke); they are only compared
    gr.on([box.change for box in c.race_in], handlers.race_staleness, [c.race_used, *c.race_in], c.race_stale,
          queue=False, api_visibility="private", show_progress="hidden", preprocess=False)
    gr.on([box.change for box in c.sweep_in], handlers.sweep_staleness, [c.sweep_used, *c.sweep_in], c.sweep_stale,
          queue=False, api_visibility="private", show_progress="hidden", preprocess=False)
    c.cost_inputs = [c.price, c.gpus, c.utilisation, c.tps_ar, c.tps_diffusion, c.tps_speculative, c.api_price,
                     c.race_measured]
    c.cost_btn.click(handlers.cost, c.cost_inputs, [c.cost_view, c.cost_plot], api_name="cost")
    c.use_race_btn.click(handlers.use_race_numbers, c.race_measured, [c.tps_ar, c.tps_diffusion, c.tps_speculative],
                         api_visibility="private").then(handlers.cost_from_race, c.cost_inputs,
                                                      [c.cost_view, c.cost_plot], api_visibility="private")
    c.model_btn.click(handlers.model_info, c.block_size, c.model_view, api_name="model_info")


def _wire_stops(c, handlers) -> None:
    """Every panel's Stop (registered after the runs it stops)."""
    # ---- The Playground's Stop: cancels its run in Gradio (the front end drops the run's stream at once; the
    # run yields every step) and tells the run on the server (handlers.stop_playground: a cancel alone missed
    # a run pressed a moment before), then marks the statistics as stopped; queue=False so that neither waits
    # behind other users' runs. The other panels' Stops are below.
    c.stopping = c.stop_btn.click(handlers.stop_playground, None, None, queue=False, cancels=[c.run, c.rerun],
                                  api_visibility="private")
    c.stopping.then(handlers.after_stop, [c.record, c.colour_by], [c.view, c.scrubber, c.stats, c.record, c.completion],
                    queue=False, api_visibility="private")
    c.race_csv_btn.click(handlers.race_csv, c.race_measured, c.race_file, api_visibility="private",
                         show_progress="hidden")
    # The Race's, the audit's and the Sweep's Stop tell their run (handlers.stop_race …), which ends at its next
    # decoding step and completes as a finished event, then draw it stopped. Not Gradio's `cancels=`: a cancel
    # lands only where the run yields (seconds apart in a Race), its end did not always reach the front end
    # (a Race pressed meanwhile, deferred until then, never ran), and it cancels by session and listener, so
    # late it could end the new run instead. A run still waiting in the queue begins stopped.
    c.race_stop.click(handlers.stop_race, None, None, queue=False, api_visibility="private").then(
        handlers.race_stopped, c.race_view, c.race_view, queue=False, api_visibility="private")
    c.sweep_stop.click(handlers.stop_sweep, None, None, queue=False, api_visibility="private").then(
        handlers.sweep_stopped, c.sweep_message, c.sweep_message, queue=False, api_visibility="private")
    c.audit_stop.click(handlers.stop_audit, None, None, queue=False, api_visibility="private").then(
        handlers.audit_stopped, c.audit_summary, c.audit_summary, queue=False, api_visibility="private")


def launch_local(demo: gr.Blocks) -> str:
    """Serve `demo` on a free loopback port without blocking (tests, screenshots); returns its URL."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(prevent_thread_lock=True, server_port=port, server_name="127.0.0.1", quiet=True, css=PAGE_CSS)
    return f"http://127.0.0.1:{port}/"
