"""The Speculative audit panel's handlers: per verification round, the draft, the accepted prefix and the first
rejection (spec_decode's events, drawn by ui/render_panels.audit_html), with the run's acceptance figures, what it
ran with and the text it wrote. A mixin of `PanelHandlers` (ui/panel_handlers.py), which gives it the engine, the
session's Stops (`self._stops`), `_stream` and the token pieces.
"""

from __future__ import annotations

import gradio as gr
from spec_decode import CUT_OFF_WHEN_SAMPLING
from spec_decode.metrics import AcceptanceCounter

from twotower.token_healing import completion_text

from .board import verify_rounds
from .components import from_api, say_refused
from .panel_common import (HEAL_LABEL, FramePacer, run_settings, stopped_before_start, stopped_note, switch,
                           unavailable, whole)
from .playground_common import run_caption
from .plots import acceptance_histogram
from .render import error_html, note_html
from .render_panels import DISTURBED, acceptance_summary_html, audit_html, healed_sentence, output_html
from .run_tracker import Stopped

AUDIT_STOPPED = ("Stopped: the rounds above were verified before Stop (the figures are theirs; the histogram and "
                 "per-position shares come with a finished run).")


def audit_caption(settings: dict, stats: dict | None, draft_steps: int | None) -> str:
    """What an audit ran with, under its figures: the rounds and the summary stay after the settings move on
    (a cut typed past its ends was clamped by the page, and the run's own stats say the cut it used)."""
    cut = (stats or {}).get("min_draft_confidence", settings.get("min_draft_confidence"))
    most = settings["max_new_tokens"]
    parts = [run_caption("speculative", settings, draft_steps=draft_steps),
             f"up to {most} new token{'' if most == 1 else 's'}"]
    parts += ["adaptive draft length"] if settings.get("adaptive") else []
    if cut is None:  # the model's default, resolved by the run (its stats name it once done)
        parts += ["the model's proposal cut"]
    else:
        parts += [f"proposal cut {cut:g}" if float(cut) > 0 else "no proposal cut"]
    return "Ran: " + " · ".join(parts)


class AuditPanel:
    """The audit's handlers (a refused run's message goes over the session's last summary, PanelHandlers._shown,
    as over the rounds and the histogram that stay)."""

    def audit_pressed(self, prompt, gamma, block_size, steps_per_block, max_new_tokens, temperature, seed,
                      adaptive=False, min_draft_confidence=None, top_k=None, top_p=None, heal=True,
                      request: gr.Request = None):
        """The audit's button (queue-free, before its run is queued): _pressed, and for the audit's note box a
        refused press's message while an audit goes on (the audit has no stale-note box as the Race has)."""
        inputs = (prompt, gamma, block_size, steps_per_block, max_new_tokens, temperature, seed, adaptive,
                  min_draft_confidence, top_k, top_p, heal)
        try:
            settings = self._audit_settings(gamma, block_size, steps_per_block, max_new_tokens, temperature, seed,
                                            adaptive, min_draft_confidence, top_k, top_p)
            heal = switch(HEAL_LABEL, heal)
            self._stream("speculative", prompt, settings, heal=heal)[2].close()  # its checks, not a step of it
        except (ValueError, ImportError) as exc:
            self._pressed(request, "audit", accepted=False)
            session = getattr(request, "session_hash", None)
            note = self._refused_note(request, "audit", "audit", exc)
            if note != gr.skip() and session is not None:
                self._audit_refusal_said[session] = inputs
                return note
            # none going: the run says why itself, in its summary; or this is the said press's own replay, whose
            # note stays
            return gr.skip() if self._audit_refusal_said.get(session) == inputs else ""
        self._audit_refusal_said.pop(getattr(request, "session_hash", None), None)
        self._pressed(request, "audit", accepted=True)
        return ""  # an earlier press's note goes with the audit it was about

    def audit_stopped(self, summary: str):
        """Stop during an audit: the rounds verified so far stay; the summary says the run was stopped (it read
        as a finished run's, with an empty histogram)."""
        return stopped_note(summary, AUDIT_STOPPED)

    @staticmethod
    def _audit_settings(gamma, block_size, steps_per_block, max_new_tokens, temperature, seed, adaptive,
                        min_draft_confidence, top_k=None, top_p=None) -> dict:
        settings = run_settings(gamma, block_size, steps_per_block, max_new_tokens, temperature, seed, top_k, top_p)
        return dict(settings, adaptive=switch("adaptive draft length", adaptive),
                    min_draft_confidence=min_draft_confidence)

    def speculative_audit(self, prompt, gamma, block_size, steps_per_block, max_new_tokens, temperature, seed,
                          adaptive=False, min_draft_confidence=None, top_k=None, top_p=None, heal=True,
                          request: gr.Request = None):
        """Per verification round: draft, accepted prefix, first rejection. Yields (table, histogram, summary).

        adaptive / min_draft_confidence: the draft-length variants (None: the model's default cut).
        top_k / top_p: as the Playground's, filtering the target and the draft alike (spec_decode).
        heal: token healing of the prompt's last token; False runs the prompt as typed."""
        rounds, stats, written, watch, summary, cleared, healed = [], None, None, None, None, False, ""
        so_far: list[int] = []  # the tokens emitted so far (the prefill's, each round's, a last token's)
        caption = ""
        session = getattr(request, "session_hash", None)
        draft_steps = self.engine.model.config.default_draft_steps
        try:
            settings = self._audit_settings(gamma, block_size, steps_per_block, max_new_tokens, temperature, seed,
                                            adaptive, min_draft_confidence, top_k, top_p)
            engine = self.engine.own()
            _, healed, events = self._stream("speculative", prompt, settings, engine, switch(HEAL_LABEL, heal))
            # checked, it stops the session's earlier audit (a refused one stops nothing; one stopped while queued
            # raises Stopped here), and watches its Stop
            engine.stopped = watch = self._stops.begin(session, "audit")
            # an audit that runs answers every press before it: a refusal said for one of them is not kept (it hid
            # the same refusal pressed later, and held its prompt)
            self._audit_refusal_said.pop(session, None)
            before = engine.others()  # its round times are measured: say if another run of the app shared the CPU
            pacer = FramePacer(self.frame_interval_s)
            caption = note_html(audit_caption(settings, None, draft_steps))
            for event in events:
                if event.kind in ("token", "block"):
                    so_far.extend(int(t) for t in event.tokens[0])
                if event.kind == "verify":
                    rounds.extend(verify_rounds([event]))
                    if not pacer.due():  # rounds faster than the eye are drawn together; the last yield has all
                        continue
                    running = note_html(f"Running: {len(rounds)} round(s) verified …", progress=True)
                    summary = acceptance_summary_html(None, rounds) + caption + running
                    # the last audit's histogram goes with its rounds (it stood beside the new ones); a finished
                    # run draws its own
                    plot, cleared = (gr.skip() if cleared else None), True
                    yield audit_html(rounds, self.piece), plot, summary
                elif event.kind == "block" and rounds:  # what the round emitted: EOS may cut it
                    rounds[-1]["emitted"] = int(event.tokens.shape[1])
                elif event.kind == "done":
                    stats, written = event.stats, event.info["new_tokens"][0]
        except Stopped:  # its Stop, or a newer audit of the session: the rounds drawn so far, marked stopped
            # (stopped in the queue: it left no trace, and the last audit's rounds sat under the new prompt)
            if watch is None:
                yield gr.skip(), gr.skip(), stopped_before_start("audit", "rounds and histogram")
            elif summary is None or stopped_note(summary, AUDIT_STOPPED) == gr.skip():
                yield gr.skip(), gr.skip(), gr.skip()  # nothing drawn yet, or finished before the Stop came
            else:  # every round verified (the pacer may have held the last back) and the text they wrote
                text = completion_text(self.engine.decode(so_far), healed)
                summary = (acceptance_summary_html(None, rounds) + caption + note_html(AUDIT_STOPPED) +
                           output_html(text, f"Output so far (verified: {len(so_far)} new "
                                              f"token{'' if len(so_far) == 1 else 's'})"))
                summary += note_html(healed_sentence(healed)) if healed else ""
                self._keep_shown(session, "audit", summary)
                yield audit_html(rounds, self.piece), gr.skip(), summary
            return
        except ImportError as exc:
            message = unavailable("Speculative decoding", exc)
            yield error_html(message), None, ""
            return
        except ValueError as exc:  # refused before a round ran (inputs are checked first): the message goes over the
            # last audit's rounds, histogram and summary, which stay, as a refused Sweep keeps its plot
            inputs = (prompt, gamma, block_size, steps_per_block, max_new_tokens, temperature, seed, adaptive,
                      min_draft_confidence, top_k, top_p, heal)
            if session is not None and self._audit_refusal_said.get(session) == inputs:  # said at its press while
                del self._audit_refusal_said[session]  # the audit that ran on was going: that audit's summary
                yield gr.skip(), gr.skip(), gr.skip()  # stays (the refusal replaced it)
                return
            say_refused(str(exc), from_api(request))
            yield gr.skip(), gr.skip(), self._over_shown(session, "audit", exc, "Below: the last audit, as it ran.")
            return
        except Exception:  # an audit that fails (out of memory): Gradio replays no press deferred behind it, so
            self._audit_refusal_said.pop(session, None)  # none is waited for
            raise
        finally:
            if watch is not None:
                watch.end()
        lengths = list((stats or {}).get("acceptance_lengths") or AcceptanceCounter.of(rounds).acceptance_lengths)
        figure = acceptance_histogram(lengths, whole(block_size))
        # the text after the typed prompt (a healed run's first token re-spells the prompt's last)
        output = None if written is None else completion_text(self.engine.decode(written), healed)
        summary = acceptance_summary_html(stats, rounds, str(self.engine.model.ctx_device))
        summary += note_html(audit_caption(settings, stats, draft_steps))
        summary += "" if output is None else output_html(output)
        if healed:
            summary += note_html(healed_sentence(healed))
        if engine.disturbed(before):
            summary += note_html(f"{DISTURBED.replace('this speed is', 'the times per round are')}.")
        if float(settings["min_draft_confidence"] or 0) > 0 and (stats or {}).get("min_draft_confidence") == 0.0:
            summary += note_html(CUT_OFF_WHEN_SAMPLING[0].upper() + CUT_OFF_WHEN_SAMPLING[1:] +
                                 " (one draft pass keeps it).")  # the slider moved and nothing changed: why
        self._keep_shown(session, "audit", summary)
        yield audit_html(rounds, self.piece, finished=True), figure, summary
