"""The web app's listeners: which handler each button, box and slider runs, in what order, with which inputs
and outputs (ui/app.py lays the components out into `c`, a namespace of them by name, and calls these).

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
* Gradio sends a slider's release on mouse-up and when its number box is left, not for the arrow keys: a setting
  moved without a re-run (those, and temperature, seed, top-k / top-p, max new tokens, the prompt) puts a note over
  the board (ui/board_note.py, on every change), against what the board's latest run started with (a run starting
  clears it).
* Each long-running panel has its own Stop, ending its own run at its next step, and a follow-up listener
  turns the panel's "running" line into a "stopped" one. The Playground's cancels in Gradio (its run yields
  every step) and tells its run too (a cancel missed a run pressed a moment before); the Race's, the audit's
  and the Sweep's tell their runs directly (queue-free), which end at the next decoding step (the Race and the
  Sweep yield only between timed runs); a new run of a panel stops the session's earlier one the same way.
* Every panel's function has a named API endpoint, so gradio_client can drive the app.
"""

from __future__ import annotations

import gradio as gr

AFTER_STOP = "always_last"  # see the Race wiring
# Every listener that runs the model shares one concurrency group: at most `concurrency_limit` runs at
# once over all panels and users; the rest wait in Gradio's queue.
ENGINE = "engine"


# Plotly fits a plot to its box when the window resizes; a tab hidden meanwhile has no box, so its plots kept the
# old width (a Race chart 1470 px wide in a 536 px box, its bars cut, after the window was narrowed on another tab):
# the tab shown sends one more resize, once it is drawn
RELAYOUT_JS = "() => { requestAnimationFrame(() => window.dispatchEvent(new Event('resize'))); }"


def _constant(value):
    """A listener function that returns `value` (one per tab: a lambda in a loop would share the last)."""
    return lambda: value


def wire_playground(c, handlers) -> None:
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
    # the note over the board goes as a run starts, whose inputs it compares with from then on (ui/board_note.py)
    gr.on([c.generate_btn.click, c.prompt.submit], handlers.board_fresh, [c.active_tab, *c.playground_in],
          c.board_stale, queue=False, api_visibility="private", show_progress="hidden", preprocess=False)
    c.run = gr.on([c.generate_btn.click, c.prompt.submit], handlers.generate, c.playground_in, c.playground_out,
                  api_name="generate", show_progress="hidden", concurrency_id=ENGINE, trigger_mode="multiple")
    # Registered before the re-run, so it runs first: on the Playground tab the session's run in flight stops
    # at its next step (which frees its place in the queue for the re-run). Not a front-end `cancels=`: that
    # fired on every tab and left a Playground run frozen mid-way when a slider moved on the Race tab.
    # (release_pressed: with the saved trace's file, as drop_trace does for a click, and neither where the release
    # changes nothing on a finished board: Gradio sends one whenever a slider's number box loses focus)
    # preprocess=False: the values as sent, refused by no component; a number typed past a slider's end (γ 7)
    # came as typed and the slider's check refused it in a hidden HTTP 500, so the run in flight went on and the
    # old trace file stayed, while the re-run ran at the value the box was clamped to. Compared only: one that
    # cannot run reads as changed.
    gr.on(c.releases, handlers.release_pressed, [c.active_tab, *c.playground_in], c.trace_file, queue=False,
          api_visibility="private", preprocess=False)
    gr.on(c.releases, handlers.board_fresh, [c.active_tab, *c.playground_in], c.board_stale, queue=False,
          api_visibility="private", show_progress="hidden", preprocess=False)
    # trigger_mode="multiple": every release re-runs at once; an older re-run of this session is
    # superseded server-side and stops at its next step (one live run per session, in handlers._stops).
    c.rerun = gr.on(c.releases, handlers.rerun, [c.active_tab, *c.playground_in], c.playground_out,
                    trigger_mode="multiple", api_visibility="private", show_progress="hidden", concurrency_id=ENGINE)
    for tab_id, tab in c.tabs.items():
        tab.select(_constant(tab_id), None, c.active_tab, queue=False, api_visibility="private")
        tab.select(None, None, None, js=RELAYOUT_JS, queue=False, api_visibility="private")
    c.save_btn.click(handlers.save_trace, c.record, c.trace_file, api_visibility="private", show_progress="hidden")
    # an opened run is another run: the session's run going stops first (queue-free); the open reads no model, so
    # it waits in no model's queue; it keeps the panel's inputs, which a release compares (handlers._board_shows)
    c.open_btn.upload(handlers.open_pressed, None, c.board_stale, queue=False, api_visibility="private",
                      show_progress="hidden")
    c.opened = c.open_btn.upload(handlers.open_trace, [c.open_btn, *c.playground_in],
                                 [*c.playground_out, c.trace_file], api_visibility="private")
    # a setting moved since the board's run: a line over the board (preprocess=False: the values as sent, compared
    # only; an out-of-range one was a hidden HTTP 500 at each keystroke); an opened run's, once it is on the board.
    # Not the mode radio and the checkboxes: beside the board, each re-runs it (their change, sent before the input
    # that starts the run, drew the note for a moment)
    c.board_inputs = [c.prompt, *c.settings, c.top_k, c.top_p]
    gr.on([box.change for box in c.board_inputs], handlers.board_staleness, c.playground_in, c.board_stale,
          queue=False, api_visibility="private", show_progress="hidden", preprocess=False)
    c.opened.then(handlers.board_staleness, c.playground_in, c.board_stale, queue=False, api_visibility="private",
                  show_progress="hidden", preprocess=False)
    c.scrubber.input(handlers.replay, [c.record, c.scrubber, c.colour_by], c.view, api_name="replay",
                     trigger_mode="always_last", show_progress="hidden")
    c.colour_by.change(handlers.recolour, [c.record, c.scrubber, c.colour_by], c.view, api_visibility="private",
                       show_progress="hidden")


def wire_panels(c, handlers) -> None:
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
    # Enter in a number box computes, as it runs the prompt's panel (it did nothing; only the button computed)
    cost_boxes = [c.price, c.gpus, c.api_price, c.tps_ar, c.tps_diffusion, c.tps_speculative]
    gr.on([box.submit for box in cost_boxes], handlers.cost, c.cost_inputs, [c.cost_view, c.cost_plot],
          api_visibility="private")
    c.use_race_btn.click(handlers.use_race_numbers, c.race_measured, [c.tps_ar, c.tps_diffusion, c.tps_speculative],
                         api_visibility="private").then(handlers.cost_from_race, c.cost_inputs,
                                                      [c.cost_view, c.cost_plot], api_visibility="private")
    c.model_btn.click(handlers.model_info, c.block_size, c.model_view, api_name="model_info")


def wire_stops(c, handlers) -> None:
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
