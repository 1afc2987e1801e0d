"""Pure rendering: a Board (ui.board) -> HTML rows of cells, colours, statistics, error boxes.

Nothing here touches the model or Gradio, so tests call these functions on hand-made boards. Every
piece of user or model text goes through `esc` (tokens, prompts, messages), so a prompt holding
<script> or <img onerror=...> is drawn as text.
"""

from __future__ import annotations

import functools
import html
from typing import Callable

from .board import Board, Row

# Scoped to each gr.HTML component through css_template (no `$` or `{{` allowed in it).
# .tt-error wraps anywhere: a message that echoes a long input (a seed of 1e300, a γ list of hundreds of values) is
# one unbroken word, which ran past the panel's edge.
CSS = """
.tt-board { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; }
.tt-prompt { white-space: pre-wrap; color: #555; border-left: 3px solid #bbb; padding: 2px 8px; margin-bottom: 8px;
  max-height: 8em; overflow: auto; }
.tt-row { display: flex; flex-wrap: wrap; align-items: center; gap: 2px; padding: 3px 4px; margin: 2px 0;
  border-radius: 4px; border: 1px solid transparent; }
.tt-row.active { border-color: #e8590c; background: #fff4e6; box-shadow: 0 0 0 1px #e8590c inset; }
.tt-label { width: 3.2em; color: #5c5f66; font-size: 11px; flex: none; }  /* 4.5:1 and more */
.tt-cell { display: inline-block; min-width: 1.6em; padding: 1px 4px; border-radius: 3px; text-align: center;
  white-space: pre; color: #111; border: 1px solid rgba(0,0,0,0.12); }
.tt-cell.mask { background: repeating-linear-gradient(45deg, #ced4da, #ced4da 3px, #e9ecef 3px, #e9ecef 6px);
  color: #495057; }
.tt-cell.eos { outline: 2px solid #c92a2a; font-weight: bold; }
.tt-cell.after-eos { opacity: 0.3; text-decoration: line-through; }
.tt-cell.rejected { outline: 2px dashed #c92a2a; }
.tt-cell.healed, .tt-key.k-healed { outline: 2px dotted #1c7ed6; }
.tt-cell.past-budget, .tt-key.k-past { opacity: 0.35; outline: 1px dotted #868e96; }
.tt-legend { margin-top: 6px; font-size: 11px; color: #666; display: flex; gap: 4px; align-items: center;
  flex-wrap: wrap; }
.tt-key { display: inline-block; padding: 0 5px; border-radius: 3px; border: 1px solid rgba(0,0,0,0.12); }
.tt-key.k-mask { background: repeating-linear-gradient(45deg, #ced4da, #ced4da 3px, #e9ecef 3px, #e9ecef 6px); }
.tt-key.k-eos { outline: 2px solid #c92a2a; font-weight: bold; }
.tt-key.k-after { opacity: 0.3; text-decoration: line-through; }
.tt-key.k-active { border-color: #e8590c; background: #fff4e6; }
.tt-key.k-rejected { outline: 2px dashed #c92a2a; }
.tt-row.stopped, .tt-key.k-stopped { border: 1px dashed #868e96; background: #f1f3f5; }
.tt-swatch { display: inline-block; width: 1.4em; height: 1em; border-radius: 2px; border: 1px solid rgba(0,0,0,0.1); }
.tt-stats { border-collapse: collapse; font-size: 13px; }
.tt-stats td { padding: 2px 10px 2px 0; }
.tt-stats td.v { font-weight: 600; font-variant-numeric: tabular-nums; }
.tt-error { background: #fff5f5; border: 1px solid #c92a2a; color: #a61e1e; padding: 8px 12px; border-radius: 6px;
  overflow-wrap: anywhere; }
.tt-note { color: #666; font-size: 12px; }
.tt-race { display: flex; gap: 10px; flex-wrap: wrap; }
.tt-card { flex: 1 1 260px; border: 1px solid #dee2e6; border-radius: 6px; padding: 8px; min-width: 240px; }
.tt-card h4 { margin: 0 0 4px 0; }
.tt-text { white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 12px; background: #f8f9fa;
  padding: 6px; border-radius: 4px; max-height: 22em; overflow: auto; }
.tt-plan { white-space: pre; max-height: none; }  /* a table: wrapped on a narrow screen, its columns broke */
.tt-diff-ins { background: #ffd8a8; border-radius: 2px; }
.tt-diff-del { background: #ffc9c9; text-decoration: line-through; color: #862e2e; border-radius: 2px; }
.tt-speedup { font-size: 20px; font-weight: 700; }
.tt-table { border-collapse: collapse; font-size: 12px; }
.tt-scroll { overflow-x: auto; max-width: 100%; }
.tt-rounds { max-height: max(70vh, 24em); overflow-y: auto; }  /* 70 % of a 400 px window showed 4 rounds */
.tt-none { color: #868e96; font-style: italic; }
.tt-rounds th { position: sticky; top: 0; background: var(--background-fill-primary, #fff); z-index: 1; }
.tt-table th, .tt-table td { border-bottom: 1px solid #e9ecef; padding: 3px 8px; text-align: left; vertical-align: top; }
.tt-atok { border: 1px solid #dee2e6; padding: 0 1px; margin-right: 1px; font-family: monospace; }
.tt-acc { background: #b2f2bb; }
.tt-rej { background: #ffc9c9; text-decoration: line-through; }
.tt-fix { background: #a5d8ff; }
"""

VISIBLE_WHITESPACE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}
MASK_GLYPH = "░"


def esc(text) -> str:
    """HTML-escape any text (quotes too, so it is safe inside attributes)."""
    return html.escape(str(text), quote=True)


def token_text(piece: str) -> str:
    """Display text of a token piece: whitespace made visible, empty pieces marked."""
    if piece == "":
        return "∅"
    return "".join(VISIBLE_WHITESPACE.get(ch, ch) for ch in piece)


GIVEN_COLOUR = "hsl(0, 0%, 86%)"  # a token no denoiser pass committed (an anchor, a token given to a draft)


def step_colour(step: int, n_steps: int) -> str:
    """Early commits blue, late commits orange: hue 210 -> 30 over the block's steps; grey if given (< 0)."""
    if step < 0:
        return GIVEN_COLOUR
    frac = 0.0 if n_steps <= 1 else min(max(step, 0), n_steps - 1) / (n_steps - 1)
    return f"hsl({210 - 180 * frac:.0f}, 75%, 80%)"


def confidence_colour(confidence: float) -> str:
    """Low confidence orange and darker, high confidence blue and lighter: the lightness alone orders them (red to
    green read p = 0.25 and p = 1.0 as one colour under deuteranopia); the text on every shade stays above 7:1."""
    c = round(min(max(float(confidence), 0.0), 1.0), 3)  # a float32's 0.95 (0.9499999) draws as 0.95 does
    return f"hsl({30 + 170 * c:.0f}, 75%, {68 + 22 * c:.0f}%)"


def _first_eos(rows: list[Row], eos_id: int | None) -> int | None:
    """Generated-sequence position of the first committed EOS, or None."""
    if eos_id is None:
        return None
    for row in rows:
        # an EOS past the budget is dropped with its cell: no end (wanted None slices the whole row)
        for i, (tok, masked) in enumerate(zip(row.tokens[: row.wanted], row.masked)):
            if not masked and tok == eos_id:
                return row.start + i
    return None


# A live board is drawn again whole at every step, and all but its newest cells are as they were: a 512-token AR
# run drew 131,840 cells for 512 tokens and spent as long drawing as decoding. Drawing a cell is pure (the
# token piece function is the tokenizer's, fixed for a loaded model), so the cells of the previous frames are
# looked up; the cache holds a few boards of the widest size the Playground draws (512 tokens).
@functools.lru_cache(maxsize=8192)
def cell_html(token: int, masked: bool, step: int, confidence: float, piece: Callable[[int], str], *,
              colour_by: str = "step", n_steps: int = 1, is_eos: bool = False, after_eos: bool = False,
              rejected: str | None = None, past_budget: bool = False, healed: str = "") -> str:
    """One token cell. rejected: speculative mark (why this cell is outlined), or None. past_budget: a cell of
    the budget's last block past max new tokens (denoised with its block, then dropped). healed: the text of the
    prompt's last token this cell (the completion's first) chose again (token healing), or "". Arguments must be
    hashable (ints, floats, strings, a function): the result is cached."""
    classes = ["tt-cell"]
    if masked:
        classes.append("mask")
    if after_eos:
        classes.append("after-eos")
    if past_budget:
        classes.append("past-budget")
    dropped = " · past max new tokens: denoised with its block, dropped" if past_budget else ""
    if masked:
        title = "masked" + (" (after EOS)" if after_eos else "") + dropped
        return f'<span class="{" ".join(classes)}" title="{esc(title)}">{MASK_GLYPH}</span>'
    if is_eos:
        classes.append("eos")
    if rejected:
        classes.append("rejected")
    if healed:
        classes.append("healed")
    colour = confidence_colour(confidence) if colour_by == "confidence" else step_colour(step, n_steps)
    text = piece(token)
    shown = token_text(text) if "\ufffd" not in text else f"#{token}"  # a lone byte of a multi-byte character
    how = f"step {step}" if step >= 0 else "given, not from a denoiser step"
    title = f"id {token} · {how} · p={confidence:.2f}" + (" · EOS" if is_eos else "")
    if rejected:
        title += f" · {rejected}"
    if healed:
        title += f" · token healing: chosen again for the prompt's last token ‘{token_text(healed)}’"
    title += dropped
    return (f'<span class="{" ".join(classes)}" style="background:{colour}" title="{esc(title)}">'
            f"{esc(shown)}</span>")


TEXT_LINE_MODES = ("ar", "mock_ar")  # one token a block: the board wraps them into lines of text


def _display_lines(board: Board, line_width: int) -> list[tuple[str, bool, list[tuple[Row, int]]]]:
    """(label, active, [(row, index in row)]) per drawn line: a line per block, or for AR / mock-AR (one
    token per block) lines of line_width tokens."""
    rows = board.ordered_rows()
    if board.mode in TEXT_LINE_MODES:  # one-token blocks: wrap them into lines of text
        cells = [(r, 0) for r in rows if r.tokens]
        lines = []
        for i in range(0, len(cells), line_width):
            chunk = cells[i:i + line_width]
            active = any(r.block == board.active for r, _ in chunk)
            lines.append((f"t{chunk[0][0].start}", active, chunk))
        return lines
    return [(f"b{r.block}", r.block == board.active, [(r, i) for i in range(len(r.tokens))]) for r in rows]


def _rejection_note(row: Row, i: int) -> str | None:
    if row.rejected_pos != i:
        return None
    return "the context tower's token, replacing a rejected draft" if row.done else "draft rejected by the context tower"


def board_html(board: Board, piece: Callable[[int], str], eos_id: int | None, *, colour_by: str = "step",
               steps_per_block: int | None = None, prompt: str | None = None, line_width: int = 16,
               healed: str = "") -> str:
    """The whole view: prompt, one line of cells per block, legend. data-* attributes feed the browser test.
    healed: the healed prompt's last token's text (token healing; `prompt` is then the prompt less it): the
    completion's first cell, which re-spells it, is outlined."""
    rows = board.ordered_rows()
    seen_steps = max((s for r in rows for s in r.commit_step), default=0) + 1
    # the slider's steps per block scale diffusion's colours; other modes commit in the passes they ran (AR
    # and mock-AR one, speculative its draft passes): a 0..15 legend there promised steps that never ran
    # (and a block of S positions takes at most S passes, whatever the slider says: S = 4 with 64 steps read 0..63)
    widest = max((len(r.tokens) for r in rows), default=None)
    planned = min(steps_per_block or 1, widest) if widest else steps_per_block or 1
    n_steps = max(planned, seen_steps) if board.mode == "diffusion" else seen_steps
    eos_at = _first_eos(rows, eos_id)
    parts = [f'<div class="tt-board" data-mode="{esc(board.mode)}" data-masked="{board.masked_count()}" '
             f'data-frames="{board.frames}" data-done="{int(board.done)}">']
    if prompt is not None:
        shown = prompt if len(prompt) <= 600 else "…" + prompt[-600:]
        parts.append(f'<div class="tt-prompt" title="prompt">{esc(shown)}</div>')
    # after Stop the unfinished block is no longer "being denoised": it is left as it was, out of the completion.
    # Modes of one-token blocks draw wrapped lines of text: a stopped token there is not worth a line's outline.
    marks_stopped = board.stopped and board.active is not None and board.mode not in TEXT_LINE_MODES
    active_state = " stopped" if marks_stopped else "" if board.stopped else " active"
    for label, active, cells in _display_lines(board, line_width):
        state = active_state if active else ""
        title = ' title="stopped before it finished: not in the completion"' if state == " stopped" else ""
        parts.append(f'<div class="tt-row{state}"{title}><span class="tt-label">{esc(label)}</span>')
        for row, i in cells:
            pos = row.start + i
            tok, masked = row.tokens[i], row.masked[i]
            parts.append(cell_html(
                tok, masked, row.commit_step[i], row.confidence[i], piece, colour_by=colour_by, n_steps=n_steps,
                is_eos=(not masked and eos_id is not None and tok == eos_id and pos == eos_at),
                after_eos=(eos_at is not None and pos > eos_at), rejected=_rejection_note(row, i),
                past_budget=row.wanted is not None and i >= row.wanted, healed=healed if pos == 0 else ""))
        parts.append("</div>")
    if not rows:
        parts.append('<div class="tt-note">Nothing generated yet: type a prompt and press Generate.</div>')
    given = any(s < 0 and not m for r in rows for s, m in zip(r.commit_step, r.masked))
    past = any(r.wanted is not None and r.wanted < len(r.tokens) for r in rows)
    parts.append(legend_html(colour_by, n_steps, given, stopped=marks_stopped, mode=board.mode, past_budget=past,
                             healed=bool(healed) and any(r.start == 0 and r.tokens and not r.masked[0] for r in rows)))
    parts.append("</div>")
    return "".join(parts)


def legend_html(colour_by: str, n_steps: int, given: bool = False, stopped: bool = False,
                mode: str = "diffusion", past_budget: bool = False, healed: bool = False) -> str:
    """The keys of what this mode's board shows. given: the board holds tokens no denoiser step committed
    (anchors, tokens given to a draft); stopped: a block was left unfinished by Stop; past_budget: the last
    block shows cells past max new tokens (a whole block is denoised, its first cells kept); healed: the first
    cell re-spells the prompt's healed last token. Speculative colours
    its draft passes and then the context tower's own token (step n_steps - 1); AR and mock-AR commit one
    token a pass, with no masks and no block in progress to key."""
    if colour_by == "confidence":
        swatches = "".join(f'<span class="tt-swatch" style="background:{confidence_colour(c / 4)}"></span>'
                           for c in range(5))
        scale = f"confidence 0 {swatches} 1"
    elif mode in TEXT_LINE_MODES:
        tower = "the context tower" if mode == "ar" else "the denoiser"
        scale = (f'<span class="tt-swatch" style="background:{step_colour(0, 1)}"></span> one token a pass, '
                 f"from {tower}")
    elif mode == "speculative":
        drafts = max(n_steps - 1, 1)  # the passes before the context tower's token
        swatches = "".join(f'<span class="tt-swatch" style="background:{step_colour(s, n_steps)}" '
                           f'title="draft pass {s}"></span>' for s in sorted({0, drafts - 1}))
        passes = f"{swatches} accepted draft" if drafts == 1 else f"accepted draft, pass 0 {swatches} {drafts - 1}"
        scale = (f"{passes} · "
                 f'<span class="tt-swatch" style="background:{step_colour(n_steps - 1, n_steps)}"></span> '
                 "the context tower's token (correction or bonus) · "
                 '<span class="tt-key k-rejected">x</span> first rejected draft position')
    else:
        shown = sorted({0, n_steps // 3, (2 * n_steps) // 3, n_steps - 1})
        swatches = "".join(f'<span class="tt-swatch" style="background:{step_colour(s, n_steps)}" '
                           f'title="step {s}"></span>' for s in shown)
        scale = f"committed at step 0 {swatches} {n_steps - 1}"
    if given and colour_by != "confidence":
        scale += f' · <span class="tt-swatch" style="background:{GIVEN_COLOUR}"></span> given'
    block = ('<span class="tt-key k-stopped">block</span> stopped (not in the completion)' if stopped
             else '<span class="tt-key k-active">block</span> being denoised')
    masks = "" if mode in TEXT_LINE_MODES else f'<span class="tt-key k-mask">{MASK_GLYPH}</span> masked · '
    # Legend keys have their own classes, so counting .tt-cell / .tt-row counts only the generation.
    past = ' · <span class="tt-key k-past">x</span> past max new tokens (dropped)' if past_budget else ""
    past += (' · <span class="tt-key k-healed">x</span> the prompt\'s last token, chosen again (token healing)'
             if healed else "")
    return (f'<div class="tt-legend">{scale} · {masks}<span class="tt-key k-eos">EOS</span> end · '
            f'<span class="tt-key k-after">x</span> after EOS{past}'
            + ("" if mode in TEXT_LINE_MODES and not stopped else f" · {block}") + "</div>")


def _fmt(value, digits: int = 2, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{unit}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}{unit}"
    return f"{value}{unit}"


def stats_html(board: Board, note: str = "", status: str = "running…", run: str | None = None) -> str:
    """Tokens, NFE, tokens per denoiser pass, tokens/s, time to first token, total time; `run`: the mode and
    settings that made the board (it stays on screen after the sliders move)."""
    s = board.stats
    if s is None:  # live (or stopped): counters from the latest event
        rate = board.generated / board.elapsed if board.elapsed > 0 else None
        finished = len(board.finished_tokens())
        if board.stopped and board.generated > finished:  # the completion shows finished blocks only
            # (mock-AR's blocks are its tokens: its last one committed, the stop came before the context tower read it)
            unread = ("committed, not read by the context tower" if board.mode == "mock_ar"
                      else "committed in the stopped block")
            tokens = [("tokens (finished blocks)", finished), (f"{unread} (not in the completion)",
                                                                 board.generated - finished)]
        else:
            tokens = [("tokens", board.generated)]
        values = [("status", status), *tokens, ("NFE (denoiser passes)", board.nfe),
                  ("context passes", board.context_passes), ("committed tokens / s (so far)", _fmt(rate, 1)),
                  ("elapsed", _fmt(board.elapsed, 3, " s"))]
    else:
        values = [("status", "done"), ("tokens", s.get("new_tokens")), ("NFE (denoiser passes)", s.get("nfe")),
                  ("tokens per denoiser pass", _fmt(s.get("tokens_per_pass"))),
                  ("context passes", s.get("context_passes")),
                  # the sampler's clock ran while the app drew its frames: the Race times a mode with nothing drawn
                  ("tokens / s (drawing included; the Race times without)", _fmt(s.get("tokens_per_s"), 1)),
                  ("time to first token", _fmt(s.get("time_to_first_token_s"), 3, " s")),
                  ("total time (drawing included)", _fmt(s.get("total_s"), 3, " s"))]
        if s.get("acceptance_rate") is not None:
            if s.get("draft_steps") is not None:  # what γ and the steps slider do not set (the model's default)
                values.append(("draft passes per round", s.get("draft_steps")))
            values.append(("acceptance rate", _fmt(s.get("acceptance_rate"))))
            values.append(("mean acceptance length", _fmt(s.get("mean_acceptance_length"))))
    if run:
        values.insert(1, ("run", run))
    body = "".join(f'<tr><td>{esc(k)}</td><td class="v">{esc(v)}</td></tr>' for k, v in values)
    foot = note_html(note) if note else ""
    return f'<table class="tt-stats" data-done="{int(board.done)}">{body}</table>{foot}'


def error_html(message: str) -> str:
    return f'<div class="tt-error" role="alert">⚠ {esc(message)}</div>'


PROGRESS_CLASS = "tt-progress"  # a "running" line that Stop's follow-up rewrites (ui.panel_common.stopped_note)


def note_html(message: str, progress: bool = False) -> str:
    return f'<div class="tt-note{" " + PROGRESS_CLASS if progress else ""}">{esc(message)}</div>'


def kv_table_html(values: dict, title: str | None = None) -> str:
    head = f"<h4>{esc(title)}</h4>" if title else ""
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(_fmt(v))}</td></tr>" for k, v in values.items())
    return f'{head}<table class="tt-table">{body}</table>'
