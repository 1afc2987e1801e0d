"""The Gradio app: `build_demo(engine)` lays out the six panels and wires them to ui.handlers (the Playground;
ui.panel_handlers and ui.sweep_panel have the other five).
The listeners are registered in ui/wiring.py (its docstring has the wiring notes).
"""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from twotower.engine import LAYER_KEY, MODES

from .board import Board
from .components import ChoiceGroup, ChoiceRadio, NumberSlider, StepScrubber, Switch
from .examples import DEFAULT_PROMPT, EXAMPLE_PROMPTS
from .handlers import Handlers
from .panel_handlers import RACE_MODES
from .panel_common import HEAL_LABEL, MAX_NEW_TOKENS, TOP_K_MAX
from .render import CSS, board_html, note_html
from .render_panels import MODE_LABELS
from .sweep_panel import table_headers
from .wiring import wire_panels, wire_playground, wire_stops

MODE_CHOICES = [(MODE_LABELS[mode], mode) for mode in MODES]  # (label, value), in the engine's order
PROMPT_KEYS = "Shift+Enter runs it (Enter: a new line)"
# the Race's and the audit's healing checkbox (the Playground's says more, beside its board)
HEAL_INFO = "off: the prompt runs as typed, its last token kept (README: token healing)"
# the page's own rules, beside the components' (render.CSS): a keyboard user's focus shows on every control
# (range sliders and checked radios drew none)
# The staleness notes are worked out by queue-free listeners on every change: Gradio's status tracker drew a
# "0.0s" timer in them while one was pending (show_progress="hidden" notwithstanding), a flicker over the note.
PAGE_CSS = """
input[type=range]:focus-visible, input[type=radio]:focus-visible, input[type=checkbox]:focus-visible {
  outline: 2px solid #1c7ed6; outline-offset: 2px; }
#board-stale [data-testid="status-tracker"], #race-stale [data-testid="status-tracker"],
#sweep-stale [data-testid="status-tracker"] { display: none !important; }
#sweep-table th, #sweep-table th * { word-break: normal !important; overflow-wrap: normal !important; }
"""
RACE_CHOICES = [(MODE_LABELS[mode], mode) for mode in RACE_MODES]  # AR always races: the baseline


def _html(value="", elem_id=None, label=None) -> gr.HTML:
    """An HTML output with the app's stylesheet; `label` names it in the API description."""
    return gr.HTML(value, label=label or elem_id, css_template=CSS, elem_id=elem_id, js_on_load=None)


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
        wire_playground(c, handlers)
        wire_panels(c, handlers)
        wire_stops(c, handlers)
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
    c.block_size = NumberSlider(1, 64, value=cfg.default_block_size, step=1, precision=0, label="block size S",
                                info="release to re-run the Playground", elem_id="block-size")
    c.steps = NumberSlider(1, 64, value=cfg.default_steps_per_block, step=1, precision=0, label="steps per block",
                           info=f"release to re-run the Playground; diffusion's (speculative drafts with the "
                           f"model's {cfg.default_draft_steps} pass{'' if one_pass else 'es'})",
                           elem_id="steps")
    c.max_new = NumberSlider(1, MAX_NEW_TOKENS, value=64, step=1, precision=0, label="max new tokens",
                             elem_id="max-new")
    c.temperature = NumberSlider(0.0, 2.0, value=0.0, step=0.05, label="temperature", elem_id="temperature")
    # the sampled draw's filters (every mode's, the speculative target and draft alike): greedy reads neither
    c.top_k = NumberSlider(0, TOP_K_MAX, value=0, step=1, precision=0, label="top-k",
                           info="0: every token; read when sampling",
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
                c.mode = ChoiceRadio(MODE_CHOICES, value="diffusion", label="mode", info="a change re-runs",
                                     elem_id="mode")
                c.colour_by = ChoiceRadio(["step", "confidence"], value="step",
                                          label="colour tokens by", elem_id="colour-by")
                c.anchor_first = Switch(False, label="anchor each block's first token",
                                        info="diffusion: the context tower's own next token "
                                        "(no denoiser pass; not the release's rule)",
                                        elem_id="anchor-first")
                c.heal = Switch(True, label=HEAL_LABEL,
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
        c.board_stale = _html("", "board-stale")  # says when a setting moved since the board's run
        c.view = _html(board_html(Board(), engine.tokenizer.piece, engine.eos_token_id), "view")
        c.scrubber = StepScrubber(1, 2, value=1, step=1, visible=False, label="Replay step",
                                  elem_id="scrubber")
        # side by side on a wide screen; on a phone (390 px) the table and the text stack
        with gr.Row():
            with gr.Column(min_width=300):  # gr.HTML's own min_width does not reach its block
                # (before the first run a line, not an empty column beside the completion box)
                c.stats = _html(note_html("The run's statistics show here: tokens, passes, tokens/s, time."), "stats")
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
                c.repeats = NumberSlider(1, 5, value=3, step=1, precision=0, label="timed runs per mode (median)")
                c.race_heal = Switch(True, label=HEAL_LABEL, info=HEAL_INFO, elem_id="race-heal")
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
            # min_width: on a phone the row's three columns cut the boxes' labels to "adaptiv…" and set their
            # help text a word a line
            c.audit_adaptive = Switch(False, label="adaptive draft length",
                                      info="longer after full acceptances, shorter after rejections",
                                      elem_id="audit-adaptive", min_width=200)
            c.audit_cut = NumberSlider(0.0, 0.95, value=cfg.default_min_draft_confidence, step=0.05,
                                       label="propose draft tokens with confidence ≥",
                                       info="0 verifies the whole draft", elem_id="audit-cut")
            c.audit_heal = Switch(True, label=HEAL_LABEL, info=HEAL_INFO, elem_id="audit-heal", min_width=200)
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
            c.sweep_repeats = NumberSlider(1, 5, value=1, step=1, precision=0, label="timed runs per point (median)",
                                           elem_id="sweep-repeats")
            c.sweep_anchor = Switch(False, label="anchored diffusion",
                                    info="each block's first token from the context tower",
                                    elem_id="sweep-anchor", min_width=200)
        with gr.Row():
            c.sweep_btn = gr.Button("Run sweep", variant="primary", elem_id="sweep-button")
            c.sweep_stop = gr.Button("Stop", variant="stop", elem_id="sweep-stop")
        c.sweep_stale = _html("", "sweep-stale")
        c.sweep_message = _html("", "sweep-message")
        c.sweep_plot = gr.Plot(label="throughput ratio vs agreement with AR", elem_id="sweep-plot")
        # wrap: at 1,400 px the last headers were cut ("AR's own log"), their columns out of reach
        c.sweep_table = gr.Dataframe(label="grid points", interactive=False, headers=table_headers(), wrap=True,
                                     elem_id="sweep-table")  # its headers wrap between words (page CSS)
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


def launch_local(demo: gr.Blocks) -> str:
    """Serve `demo` on a free loopback port without blocking (tests, screenshots); returns its URL."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(prevent_thread_lock=True, server_port=port, server_name="127.0.0.1", quiet=True, css=PAGE_CSS)
    return f"http://127.0.0.1:{port}/"
