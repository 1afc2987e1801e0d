"""The Gradio app: `build_demo(engine)` lays out the six panels and wires them to ui.handlers (the Playground;
ui.panel_handlers and ui.sweep_panel have the other five).

Wiring notes (Gradio 6 front-end behaviour, checked in its source: the listeners of one trigger run in
the order they were registered, each queue-free one awaited before the next, and a listener's `cancels=` is
sent as the listener is dispatched, before its own function runs):
* Generate and Enter in the prompt are one listener (api_name "generate"); pressed while a run is going, they
  supersede it (it stops at its next step) and run the prompt as it is now.
* Releasing γ / S / steps first runs a queue-free listener that supersedes the session's run in flight
  (Playground tab only; it stops at its next step), then re-runs the prompt with trigger_mode="multiple" while the Playground tab is open (a State follows the tab;
  the mode radio and the anchor checkbox re-run the same way); a re-run still going is superseded server-side
  (one live run per browser session, in the StopRequests of every panel: the older stops at its next step).
* Each long-running panel has its own Stop, ending its own run at its next step, and a follow-up listener
  turns the panel's "running" line into a "stopped" one. The Playground's cancels in Gradio (its run yields
  every step) and tells its run too (a cancel missed a run pressed a moment before); the Race's, the audit's
  and the Sweep's tell their runs directly (queue-free), which end at the next decoding step (the Race and the
  Sweep yield only between timed runs); a new run of a panel stops the session's earlier one the same way.
* Every panel's function has a named API endpoint, so gradio_client can drive the app.
"""

from __future__ import annotations

import gradio as gr

from twotower.engine import LAYER_KEY, MODES

from .board import Board
from .components import ChoiceGroup, NumberSlider, StepScrubber
from .examples import DEFAULT_PROMPT, EXAMPLE_PROMPTS
from .handlers import Handlers
from .panel_handlers import RACE_MODES
from .panel_common import MAX_NEW_TOKENS
from .render import CSS, board_html, note_html
from .render_panels import MODE_LABELS

MODE_CHOICES = [(MODE_LABELS[mode], mode) for mode in MODES]  # (label, value), in the engine's order
AFTER_STOP = "always_last"  # see the Race wiring
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
    # delete_cache: Gradio's copies of the Sweep CSVs it served, a day old, go (hourly); without it they stayed
    with gr.Blocks(title="TwoTower Playground", analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        gr.Markdown(f"## TwoTower Playground · two-tower diffusion LM on NemotronH\n"
                    f"Loaded: `{info['checkpoint']}` · {info['params_context']:,} + {info['params_denoiser']:,} "
                    f"parameters (context + denoiser) · layers `{info['layer_pattern']}` ({LAYER_KEY}) · "
                    f"context tower on {info['ctx_device']}, denoiser on {info['den_device']}")
        race_measured = gr.State(None)  # this session's Race numbers (each mode's latest), read by the Cost panel
        record = gr.State(None)  # this session's last Playground run: prompt + every event
        race_used, sweep_used = gr.State(None), gr.State(None)  # the shared settings the last Race / Sweep read
        active_tab = gr.State("playground")  # the tab this session shows: slider releases re-run only the Playground
        tabs: dict[str, gr.Tab] = {}
        with gr.Row():
            with gr.Column(scale=1, min_width=240):
                # which panel reads what: a "(all panels)" heading promised the Race a temperature it never uses
                gr.Markdown("**Settings**  \nPlayground and audit: all. Race: γ, S, steps, max tokens (greedy). "
                            "Sweep: steps and max tokens (its own γ and S lists).")
                # speculative drafts with the model's own number of passes; γ and the steps act on a draft
                # only when it takes two or more (one pass commits the whole block)
                one_pass = cfg.default_draft_steps == 1
                gamma = NumberSlider(0.05, 1.0, value=cfg.default_gamma, step=0.05, label="γ confidence threshold",
                                  info="release to re-run the Playground"
                                       + ("; speculative drafts in one pass, where γ does not act" if one_pass else ""),
                                  elem_id="gamma")
                block_size = NumberSlider(1, 64, value=cfg.default_block_size, step=1, label="block size S",
                                       info="release to re-run the Playground", elem_id="block-size")
                steps = NumberSlider(1, 64, value=cfg.default_steps_per_block, step=1, label="steps per block",
                                  info=f"release to re-run the Playground; diffusion's (speculative drafts with the "
                                       f"model's {cfg.default_draft_steps} pass{'' if one_pass else 'es'})",
                                  elem_id="steps")
                max_new = NumberSlider(1, MAX_NEW_TOKENS, value=64, step=1, label="max new tokens", elem_id="max-new")
                temperature = NumberSlider(0.0, 2.0, value=0.0, step=0.05, label="temperature", elem_id="temperature")
                # no minimum / precision: the engine's check names the field (Gradio's said "Value -3 is less than minimum
                # value 0" on a bare Error pill, and rounded 1.5 silently)
                seed = gr.Number(value=0, label="seed", info="empty: unseeded", elem_id="seed")
            # below ~880 px the settings wrap above the panels instead of squeezing them to a third of the width
            with gr.Column(scale=4, min_width=620):
                with gr.Tabs():
                    with gr.Tab("Playground", id="playground") as tabs["playground"]:
                        with gr.Row():
                            # as tall as the controls beside it (5 lines left an empty band under the box)
                            prompt = gr.Textbox(value=DEFAULT_PROMPT, lines=13, max_lines=20, label="Prompt",
                                                elem_id="prompt", scale=3)
                            with gr.Column(scale=1, min_width=200):
                                mode = gr.Radio(MODE_CHOICES, value="diffusion", label="mode", info="a change re-runs",
                                                elem_id="mode")
                                colour_by = gr.Radio(["step", "confidence"], value="step",
                                                     label="colour tokens by", elem_id="colour-by")
                                anchor_first = gr.Checkbox(False, label="anchor each block's first token",
                                                           info="diffusion: the context tower's own next token "
                                                                "(no denoiser pass; not the release's rule)",
                                                           elem_id="anchor-first")
                        gr.Examples([[p] for p in EXAMPLE_PROMPTS.values()], inputs=[prompt],
                                    label="Example prompts (Python, like the training data)")
                        with gr.Row():
                            generate_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                            stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
                            # a side action: narrower than the two that run and stop
                            save_btn = gr.Button("Save this run (JSON)", elem_id="save-run", scale=0, min_width=260)
                        view = _html(board_html(Board(), engine.tokenizer.piece, engine.eos_token_id), "view")
                        scrubber = StepScrubber(1, 2, value=1, step=1, visible=False, label="Replay step",
                                                elem_id="scrubber")
                        # side by side on a wide screen; on a phone (390 px) the table and the text stack
                        with gr.Row():
                            with gr.Column(min_width=300):  # gr.HTML's own min_width does not reach its block
                                stats = _html("", "stats")
                            completion = gr.Textbox(label="Completion (text)", lines=6, interactive=False,
                                                    elem_id="completion", min_width=300)
                        trace_file = gr.File(label="This run's trace: every step's tokens, confidences and commits "
                                                   "(JSON, as `twotower generate --trace` writes)",
                                             visible=False, interactive=False, elem_id="trace-file")
                    with gr.Tab("Race", id="race") as tabs["race"]:
                        gr.Markdown("Each mode against AR, one after the other with the same settings (greedy, "
                                    "EOS ignored): a warm-up run, then timed runs that draw nothing. "
                                    "Another run going meanwhile (another tab, another user) slows a timing: "
                                    "its card then says so.")
                        with gr.Row():
                            race_prompt = gr.Textbox(value=DEFAULT_PROMPT, lines=4, label="Prompt",
                                                     elem_id="race-prompt", scale=3)
                            with gr.Column(scale=1, min_width=200):
                                race_modes = ChoiceGroup(RACE_CHOICES, value=["diffusion"],
                                                              label="race against AR", elem_id="race-modes")
                                # one run's speed is one sample of a noisy host: three give a median and a spread
                                repeats = NumberSlider(1, 5, value=3, step=1, label="timed runs per mode (median)")
                        with gr.Row():
                            race_btn = gr.Button("Race", variant="primary", elem_id="race-button")
                            race_stop = gr.Button("Stop", variant="stop", elem_id="race-stop")
                        race_stale = _html("", "race-stale")  # says when a slider moved since the Race ran
                        race_view = _html("", "race-view")
                        race_plot = gr.Plot(label="tokens / s", elem_id="race-plot")
                        with gr.Row():
                            race_csv_btn = gr.Button("Download the Race (CSV)", elem_id="race-csv-button", scale=0,
                                                     min_width=260)
                            race_file = gr.File(label="The last Race's numbers, every digit (CSV)", visible=False,
                                                interactive=False, elem_id="race-csv")
                    with gr.Tab("Speculative audit", id="audit") as tabs["audit"]:
                        audit_prompt = gr.Textbox(value=DEFAULT_PROMPT, lines=4, label="Prompt", elem_id="audit-prompt")
                        with gr.Row():
                            audit_adaptive = gr.Checkbox(False, label="adaptive draft length",
                                                         info="longer after full acceptances, shorter after rejections",
                                                         elem_id="audit-adaptive")
                            audit_cut = NumberSlider(0.0, 0.95, value=cfg.default_min_draft_confidence, step=0.05,
                                                  label="propose draft tokens with confidence ≥",
                                                  info="0 verifies the whole draft", elem_id="audit-cut")
                        with gr.Row():
                            audit_btn = gr.Button("Run speculative decoding", variant="primary",
                                                  elem_id="audit-button")
                            audit_stop = gr.Button("Stop", variant="stop", elem_id="audit-stop")
                        audit_summary = _html("", "audit-summary")
                        audit_plot = gr.Plot(label="acceptance lengths", elem_id="audit-plot")
                        audit_table = _html("", "audit-table")
                    with gr.Tab("Sweep", id="sweep") as tabs["sweep"]:
                        gr.Markdown("γ × S grid over a prompt set (steps per block and max new tokens from the "
                                    "settings): throughput ratio against agreement with AR (the Pareto frontier's two axes); "
                                    "the table adds AR's log-likelihood of each point's output.")
                        sweep_examples = ChoiceGroup(list(EXAMPLE_PROMPTS), value=list(EXAMPLE_PROMPTS)[:2],
                                                          label="prompt set (examples)")
                        sweep_extra = gr.Textbox(lines=3, label="extra prompt (optional)")
                        with gr.Row():
                            sweep_gammas = gr.Textbox("0.5, 0.7, 0.9", label="γ values")
                            sweep_sizes = gr.Textbox("4, 8, 16", label="block sizes S")
                            # one run's speed is one sample of a noisy host: × AR and the frontier move with it
                            sweep_repeats = NumberSlider(1, 5, value=1, step=1, label="timed runs per point (median)",
                                                      elem_id="sweep-repeats")
                            sweep_anchor = gr.Checkbox(False, label="anchored diffusion",
                                                       info="each block's first token from the context tower",
                                                       elem_id="sweep-anchor")
                        with gr.Row():
                            sweep_btn = gr.Button("Run sweep", variant="primary", elem_id="sweep-button")
                            sweep_stop = gr.Button("Stop", variant="stop", elem_id="sweep-stop")
                        sweep_stale = _html("", "sweep-stale")
                        sweep_message = _html("", "sweep-message")
                        sweep_plot = gr.Plot(label="throughput ratio vs quality", elem_id="sweep-plot")
                        sweep_table = gr.Dataframe(label="grid points", interactive=False)
                        sweep_csv = gr.File(label="CSV download")
                    with gr.Tab("Cost", id="cost") as tabs["cost"]:
                        gr.Markdown("Monthly cost and $ per million output tokens from a throughput per GPU. "
                                    "Use the last Race's numbers (measured on this machine) or type your own.")
                        with gr.Row():
                            # no minimum / precision here either: ui.cost refuses a bad number by name (GPUs = 1.5 was rounded to 2)
                            price = gr.Number(2.0, label="$ per GPU-hour")
                            gpus = gr.Number(1, label="GPUs")
                            utilisation = NumberSlider(1, 100, value=60, step=1, label="utilisation %")
                            api_price = gr.Number(0.60, label="API price, $ per M output tokens")
                        with gr.Row():
                            # Gradio draws an empty number as 0: the labels say what a 0 does
                            tps_ar = gr.Number(None, label="AR tokens/s per GPU (empty or 0: left out)")
                            tps_diffusion = gr.Number(None, label="diffusion tokens/s per GPU (empty or 0: left out)")
                            tps_speculative = gr.Number(None,
                                                        label="speculative tokens/s per GPU (empty or 0: left out)")
                        with gr.Row():
                            use_race_btn = gr.Button("Use the last Race's measurements", elem_id="use-race")
                            cost_btn = gr.Button("Compute", variant="primary", elem_id="cost-button")
                        cost_view = _html(note_html("Run the Race or type throughputs, then Compute."), "cost-view")
                        cost_plot = gr.Plot(label="$ / M output tokens", elem_id="cost-plot")
                    with gr.Tab("Model", id="model") as tabs["model"]:
                        model_view = _html(handlers.model_info(), "model-view")
                        model_btn = gr.Button("Plan again at the block size S of the settings", elem_id="model-button")

        # ---- Playground: one wiring for the button and Enter; slider releases re-run the prompt
        settings = [gamma, block_size, steps, max_new, temperature, seed]
        # the mode and the anchor checkbox re-run too: a board left from another mode would read as this one's
        releases = [gamma.release, block_size.release, steps.release, mode.input, anchor_first.input]
        playground_in = [prompt, mode, *settings, colour_by, anchor_first, record]  # record: a refusal redraws it
        playground_out = [view, stats, completion, record, scrubber]
        # Queue-free listeners of a trigger are registered before its run: the front end runs a trigger's listeners
        # in order and waits for a queued run's whole stream before the next listener (one registered after the
        # run left the old trace file on screen, or read the Race's settings, only once the run had ended).
        # A saved trace is of the run on the board: a new run takes its file away (save again for the new one).
        gr.on([generate_btn.click, prompt.submit, *releases], handlers.drop_trace, active_tab, trace_file, queue=False,
              api_visibility="private")
        # Generate (or Enter) while a run is going starts the new run: the queue-free listener first supersedes
        # the session's run in flight, which stops at its next step and frees its place in the queue. Under
        # Gradio's default trigger mode ("once") the click was dropped while the run was pending, and the new
        # prompt never ran.
        gr.on([generate_btn.click, prompt.submit], handlers.supersede, active_tab, None, queue=False,
              api_visibility="private")
        run = gr.on([generate_btn.click, prompt.submit], handlers.generate, playground_in, playground_out,
                    api_name="generate", show_progress="hidden", concurrency_id=ENGINE, trigger_mode="multiple")
        # Registered before the re-run, so it runs first: on the Playground tab the session's run in flight stops
        # at its next step (which frees its place in the queue for the re-run). Not a front-end `cancels=`: that
        # fired on every tab and left a Playground run frozen mid-way when a slider moved on the Race tab.
        gr.on(releases, handlers.supersede, active_tab, None, queue=False, api_visibility="private")
        # trigger_mode="multiple": every release re-runs at once; an older re-run of this session is
        # superseded server-side and stops at its next step (one live run per session, in handlers._stops).
        rerun = gr.on(releases, handlers.rerun, [active_tab, *playground_in], playground_out, trigger_mode="multiple",
                      api_visibility="private", show_progress="hidden", concurrency_id=ENGINE)
        for tab_id, tab in tabs.items():
            tab.select(_constant(tab_id), None, active_tab, queue=False, api_visibility="private")
        save_btn.click(handlers.save_trace, record, trace_file, api_visibility="private", show_progress="hidden")
        scrubber.input(handlers.replay, [record, scrubber, colour_by], view, api_name="replay",
                       trigger_mode="always_last", show_progress="hidden")
        colour_by.change(handlers.recolour, [record, scrubber, colour_by], view, api_visibility="private",
                         show_progress="hidden")

        # ---- Race, audit, sweep, cost, model
        # A click while the panel's run is still pending in the front end waits for it instead of being dropped
        # (Gradio's default, "once"): Stop then Race at once lost the Race, as the stopped run was still pending.
        # A deferred click runs only when that run's end reaches the front end, which is why Stop ends the run
        # at its next step (handlers.stop_race) rather than after the timed run it is in.
        # First, and awaited by the front end before it queues the run: a Stop pressed before is not for this run,
        # and a run its inputs accept stops the session's run of the panel going (handlers._pressed).
        # race_start / sweep_start also keep what Race and Sweep read at their start; a slider moved afterwards
        # marks their results as measured at other values (a Race or Sweep that its inputs refuse keeps the
        # settings, and the note, of the results on screen).
        race_in = [gamma, block_size, steps, max_new, race_prompt]
        sweep_in = [steps, max_new, sweep_gammas, sweep_sizes, sweep_examples, sweep_extra, sweep_anchor]
        audit_in = [audit_prompt, *settings, audit_adaptive, audit_cut]
        gr.on([race_btn.click, race_prompt.submit], handlers.race_start, [race_modes, repeats, *race_in],
              [race_used, race_stale], queue=False, api_visibility="private")
        gr.on([audit_btn.click, audit_prompt.submit], handlers.audit_pressed, audit_in, None, queue=False,
              api_visibility="private")
        sweep_btn.click(handlers.sweep_start, [sweep_repeats, *sweep_in], [sweep_used, sweep_stale], queue=False,
                        api_visibility="private")
        # a new Race takes the last one's file away (download again once it has run)
        gr.on([race_btn.click, race_prompt.submit], lambda: gr.File(value=None, visible=False), None, race_file,
              queue=False, api_visibility="private")
        gr.on([race_btn.click, race_prompt.submit], handlers.race,
              [race_prompt, race_modes, gamma, block_size, steps, max_new, repeats, race_measured],
              [race_view, race_plot, race_measured], api_name="race", concurrency_id=ENGINE,
              show_progress="minimal",  # its cards say which mode is being timed; minimal: a queue position
              trigger_mode=AFTER_STOP)
        gr.on([audit_btn.click, audit_prompt.submit], handlers.speculative_audit,
              audit_in, [audit_table, audit_plot, audit_summary],
              api_name="speculative_audit", concurrency_id=ENGINE, trigger_mode=AFTER_STOP)
        sweep_btn.click(handlers.sweep, [sweep_examples, sweep_extra, sweep_gammas, sweep_sizes, steps, max_new,
                                         sweep_anchor, sweep_repeats],
                        [sweep_plot, sweep_table, sweep_csv, sweep_message],
                        api_name="sweep", concurrency_id=ENGINE, trigger_mode=AFTER_STOP,
                        show_progress="minimal")  # its message counts the points; minimal: a queue position
        # preprocess=False: the values as typed, refused by no component (a max new tokens of 0, typed on the way
        # to 10, was a hidden HTTP 500 from each listener at every keystroke); they are only compared
        gr.on([c.change for c in race_in], handlers.race_staleness, [race_used, *race_in], race_stale, queue=False,
              api_visibility="private", show_progress="hidden", preprocess=False)
        gr.on([c.change for c in sweep_in], handlers.sweep_staleness, [sweep_used, *sweep_in], sweep_stale,
              queue=False, api_visibility="private", show_progress="hidden", preprocess=False)
        cost_inputs = [price, gpus, utilisation, tps_ar, tps_diffusion, tps_speculative, api_price, race_measured]
        cost_btn.click(handlers.cost, cost_inputs, [cost_view, cost_plot], api_name="cost")
        use_race_btn.click(handlers.use_race_numbers, race_measured, [tps_ar, tps_diffusion, tps_speculative],
                           api_visibility="private").then(handlers.cost_from_race, cost_inputs,
                                                          [cost_view, cost_plot], api_visibility="private")
        model_btn.click(handlers.model_info, block_size, model_view, api_name="model_info")

        # ---- The Playground's Stop: cancels its run in Gradio (the front end drops the run's stream at once; the
        # run yields every step) and tells the run on the server (handlers.stop_playground: a cancel alone missed
        # a run pressed a moment before), then marks the statistics as stopped; queue=False so that neither waits
        # behind other users' runs. The other panels' Stops are below.
        stopping = stop_btn.click(handlers.stop_playground, None, None, queue=False, cancels=[run, rerun],
                                  api_visibility="private")
        stopping.then(handlers.after_stop, [record, colour_by], [view, scrubber, stats, record, completion],
                      queue=False, api_visibility="private")
        race_csv_btn.click(handlers.race_csv, race_measured, race_file, api_visibility="private",
                           show_progress="hidden")
        # The Race's, the audit's and the Sweep's Stop tell their run (handlers.stop_race …), which ends at its next
        # decoding step and completes as a finished event, then draw it stopped. Not Gradio's `cancels=`: a cancel
        # lands only where the run yields (seconds apart in a Race), its end did not always reach the front end
        # (a Race pressed meanwhile, deferred until then, never ran), and it cancels by session and listener, so
        # late it could end the new run instead. A run still waiting in the queue begins stopped.
        race_stop.click(handlers.stop_race, None, None, queue=False, api_visibility="private").then(
            handlers.race_stopped, race_view, race_view, queue=False, api_visibility="private")
        sweep_stop.click(handlers.stop_sweep, None, None, queue=False, api_visibility="private").then(
            handlers.sweep_stopped, sweep_message, sweep_message, queue=False, api_visibility="private")
        audit_stop.click(handlers.stop_audit, None, None, queue=False, api_visibility="private").then(
            handlers.audit_stopped, audit_summary, audit_summary, queue=False, api_visibility="private")
    demo.queue(default_concurrency_limit=concurrency_limit)
    return demo


def launch_local(demo: gr.Blocks) -> str:
    """Serve `demo` on a free loopback port without blocking (tests, screenshots); returns its URL."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(prevent_thread_lock=True, server_port=port, server_name="127.0.0.1", quiet=True)
    return f"http://127.0.0.1:{port}/"
