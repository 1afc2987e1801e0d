"""Pure rendering for the Race, Speculative audit and Cost panels: token diffs, cards, tables."""

from __future__ import annotations

import difflib
import math
from typing import Callable

from spec_decode.metrics import AcceptanceCounter
from twotower.engine import MODE_LABELS as ENGINE_MODE_LABELS
from twotower.token_healing import completion_text

from .cost import CostLine
from .render import esc, note_html, token_text

# the engine's names, and a Race contestant of the UI's own: diffusion with each block's first token from AR
MODE_LABELS = {**ENGINE_MODE_LABELS, "diffusion_anchored": "diffusion, anchored"}


def diff_html(tokens: list[int], ref_tokens: list[int], decode: Callable[[list[int]], str], healed: str = "") -> str:
    """Token diff of `tokens` against the reference (AR) output.

    Matching tokens are plain text, tokens this output has instead of the reference are highlighted,
    reference tokens it lacks are shown struck through. Each run of tokens is decoded as a whole, so a
    character split over several byte tokens still reads as one. healed: the text of the prompt's last token,
    which both outputs' first token re-spells (token healing): not shown again.
    """
    def text(seq, start, end):
        return esc(completion_text(decode(seq[start:end]), healed) if start == 0 else decode(seq[start:end]))

    matcher = difflib.SequenceMatcher(a=ref_tokens, b=tokens, autojunk=False)
    parts = []
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            parts.append(text(tokens, b0, b1))
            continue
        if a1 > a0:
            parts.append(f'<del class="tt-diff-del" title="AR has">{text(ref_tokens, a0, a1)}</del>')
        if b1 > b0:
            parts.append(f'<ins class="tt-diff-ins" title="differs from AR">{text(tokens, b0, b1)}</ins>')
    return "".join(parts)


# a timed run that shared the machine (ui/run_tracker.py): its speed is not this mode's alone
DISTURBED = "⚠ timed while another run of this app was going (another tab or user): this speed is disturbed"


def healed_sentence(healed: str) -> str:
    """What the Race and the audit say of a healed prompt (the Playground's caption says it too)."""
    return (f"The prompt's last token ‘{token_text(healed)}’ was taken back and chosen again (token healing): the "
            "output is the text after the typed prompt.")


def race_html(results: list[dict], decode: Callable[[list[int]], str], note: str = "", progress: bool = False,
              healed: str = "") -> str:
    """Side-by-side cards. results: {mode, tokens, tokens_per_s, total_s, nfe, agreement?, error?}; AR is the reference.
    healed: the healed prompt's last token's text (token healing), which each card's text leaves out: the text
    after the typed prompt, as the Playground's completion box shows it."""
    ref = next((r for r in results if r["mode"] == "ar"), None)
    cards = []
    for r in results:
        tps = r.get("tokens_per_s")
        head = f'<h4>{esc(MODE_LABELS.get(r["mode"], r["mode"]))}</h4>'
        if r.get("error"):
            cards.append(f'<div class="tt-card" data-mode="{esc(r["mode"])}">{head}'
                         f'<div class="tt-error">{esc(r["error"])}</div></div>')
            continue
        speed = ""
        if ref is not None and ref.get("tokens_per_s") and tps:
            speed = f'<div class="tt-speedup">{tps / ref["tokens_per_s"]:.2f}× AR</div>'
        if ref is None or r is ref:
            text = esc(completion_text(decode(r["tokens"]), healed))
        else:
            text = diff_html(r["tokens"], ref["tokens"], decode, healed)
        count = f'{len(r["tokens"])} tokens' + (f' (EOS at token {r["eos_at"] + 1}, ignored while timing)'
                                                  if r.get("eos_at") is not None else "")
        spread = r.get("tokens_per_s_range")
        facts = [(f"{tps:,.1f} tokens/s" if tps else "– tokens/s")
                 + (f" (runs {spread[0]:,.1f}–{spread[1]:,.1f})" if spread else ""), count,
                 f'{r.get("total_s", 0.0):.3f} s', f'denoiser passes {r.get("nfe", 0)}']
        if r.get("agreement") is not None:
            facts.append(f'agreement with AR {100 * r["agreement"]:.0f}%')
        if r.get("mean_acceptance_length") is not None:
            facts.append(f'mean acceptance length {r["mean_acceptance_length"]:.2f}')
        shared = (f'<div class="tt-error" data-disturbed="1">{esc(DISTURBED)}</div>' if r.get("disturbed") else "")
        cards.append(f'<div class="tt-card" data-mode="{esc(r["mode"])}">{head}{speed}'
                     f'<div class="tt-note">{esc(" · ".join(facts))}</div>{shared}<div class="tt-text">{text}</div></div>')
    foot = note_html(note, progress) if note else ""  # progress: the line Stop's follow-up rewrites
    return f'<div class="tt-race">{"".join(cards)}</div>{foot}'


def _prob(value) -> str:
    return "–" if value is None else f"{float(value):.3f}"


def _tok(token, piece) -> str:
    """A token as the board draws it: spaces, tabs and newlines visible (repr() showed a space as nothing)."""
    return "–" if token is None else esc(token_text(piece(int(token))))


def audit_html(rounds: list[dict], piece: Callable[[int], str], finished: bool = False) -> str:
    """One table row per verification round: drafted block with the accepted prefix, the first rejected
    draft token with both towers' probabilities, and the context tower's replacement. finished: the run is
    done (no "(yet)" where it had no round)."""
    if not rounds:
        return (f'<div class="tt-note">No verification rounds{"" if finished else " (yet)"}: the first new token '
                'comes from the prompt\'s '
                'prefill, and a last token of the budget from the context tower\'s pass over the one before (there '
                'is nothing left to draft), so a run of one or two tokens has none.</div>')
    head = ("<tr><th>round</th><th>drafted block (accepted prefix green, first rejection red)</th>"
            "<th>accepted</th><th>rejected draft token<br>p_draft · p_target</th>"
            "<th>replaced by<br>p_draft · p_target</th></tr>")
    body = []
    for i, r in enumerate(rounds):
        drafted, accepted = r["drafted_tokens"], r["accepted"]
        rejected = r.get("rejected_pos")
        all_accepted = rejected is None or int(rejected) < 0
        first_rejected = None if all_accepted else int(rejected)
        cells = []
        for j, tok in enumerate(drafted):
            cls = "tt-acc" if j < accepted else ("tt-rej" if j == first_rejected else "")
            cells.append(f'<span class="tt-atok {cls}">{_tok(tok, piece)}</span>')
        # the round's emitted tokens (from its block event): the max-new-tokens budget or an EOS may cut the
        # context tower's own token, or even part of the accepted prefix
        emitted = r.get("emitted")
        cut = emitted is not None and emitted <= accepted
        cut_note = (f"<br><i>not emitted: the run ended after {emitted} of this round's tokens</i>" if cut else "")
        if all_accepted:
            rej = "none (all accepted)"
            fix = (f'<span class="tt-fix">{_tok(r.get("target_token"), piece)}</span> bonus{cut_note}'
                   if r.get("target_token") is not None else "–")
        else:
            # counted from 1, as the summary's "accepted share by draft position 1, 2, ..."
            rej = (f'<span class="tt-rej">{_tok(r.get("draft_token"), piece)}</span> at position {int(rejected) + 1}<br>'
                   f'{_prob(r.get("p_draft_of_draft"))} · {_prob(r.get("p_target_of_draft"))}')
            fix = (f'<span class="tt-fix">{_tok(r.get("target_token"), piece)}</span><br>'
                   f'{_prob(r.get("p_draft_of_target"))} · {_prob(r.get("p_target_of_target"))}{cut_note}')
        # <wbr> between the tokens: spans with nothing between them could not wrap, and a round of 16 drafted
        # tokens stretched the table to ~1,500 px, its last columns off-screen
        body.append(f'<tr><td>{i + 1}</td><td>{"<wbr>".join(cells)}</td>'
                    f'<td>{accepted}/{r["drafted"]}</td><td>{rej}</td><td>{fix}</td></tr>')
    # in a scrolling box: at a narrow width the last columns (the rejection, its replacement) stay reachable; at
    # most 70 % of the window tall, its header kept in view (a 512-token run's hundred rounds were 3,700 px)
    return f'<div class="tt-scroll tt-rounds"><table class="tt-table" data-rounds="{len(rounds)}">{head}{"".join(body)}</table></div>'


def acceptance_summary_html(stats: dict | None, rounds: list[dict], device: str | None = None) -> str:
    """Acceptance rate = accepted / drafted; mean acceptance length = 1 + accepted / rounds (vLLM's definitions).

    With the run's stats (when it is done): the share accepted at each draft position, which is what that
    position adds to the mean acceptance length, and the sampler's time per round drafting and verifying
    (`device`: where it was measured); the text the run wrote goes under it (output_html)."""
    counted = AcceptanceCounter.of(rounds)  # the rounds on screen (all there is of a stopped run)
    drafted, accepted = counted.drafted, counted.accepted
    figures = {**counted.summary(), **(stats or {})}  # a finished run's own stats where it has them
    rate, mean_len = figures["acceptance_rate"], figures["mean_acceptance_length"]
    rows = [("verification rounds", len(rounds)), ("drafted tokens", drafted), ("accepted tokens", accepted),
            ("acceptance rate", "–" if rate is None else f"{rate:.3f}"),
            ("mean acceptance length", "–" if mean_len is None else f"{mean_len:.2f}")]
    if stats and stats.get("new_tokens") is not None:  # once the run is done: where each token came from
        rows.insert(0, ("new tokens", new_tokens_line(stats)))
    if stats and stats.get("acceptance_by_position"):  # once the run is done
        # with its counts: a share of one round (a late position, a short run) reads as firmly as one of fifty
        rows.append(("accepted share by draft position 1, 2, … (accepted / drafted)",
                     " · ".join(f"{row['share']:.2f} ({row['accepted']}/{row['drafted']})"
                                for row in stats["acceptance_by_position"])))
    if stats and stats.get("rounds"):
        where = f" (measured here, {device})" if device else ""
        rows.append((f"per round: drafting · verifying{where}", f"{1000 * stats['draft_s'] / stats['rounds']:.1f} ms · "
                                                         f"{1000 * stats['verify_s'] / stats['rounds']:.1f} ms"))
    body = "".join(f'<tr><td>{esc(k)}</td><td class="v">{esc(v)}</td></tr>' for k, v in rows)
    return f'<table class="tt-stats">{body}</table>'


def output_html(text: str, label: str = "Output") -> str:
    """The text a run wrote, under a heading. An empty box under the heading read as a fault: a run that ended at
    once, or whose one token re-spelled the healed prompt's last, wrote nothing after the typed prompt."""
    shown = esc(text) if text else '<span class="tt-none">(nothing after the typed prompt)</span>'
    return f'<h4>{esc(label)}</h4><div class="tt-text" data-output="1">{shown}</div>'


def new_tokens_line(stats: dict) -> str:
    """A speculative run's new tokens with where they came from: the rounds emit each its accepted drafts and one
    token of the context tower's, besides the prefill's first token and a last token's own pass (12 tokens read
    beside 5 rounds and 5 accepted, and the other 2 were nowhere)."""
    new, rounds, accepted = stats["new_tokens"], stats.get("rounds", 0), stats.get("accepted", 0)
    last = stats.get("last_tokens", 0)  # a token, with a pass of its own or not (last_token_passes counts passes)
    parts = ["1 from the prompt's pass", f"{accepted} accepted", f"{rounds} the context tower's own (one a round)"]
    parts += ["1 the context tower's last (no round: one token left)"] if last else []
    if 1 + accepted + rounds + last == new:
        return f"{new} = " + " + ".join(parts)
    # an end-of-text token inside a round cut what it emitted (the counts are the rounds' before the cut)
    return f"{new}: the run ended at an end-of-text token inside a round, which cut " + " + ".join(parts)


def cost_html(lines: list[CostLine], provenance: dict[str, str], api_price=None, measured_on_cpu: bool = False,
              left_out: tuple[str, ...] = (), priced_with: str = "") -> str:
    """left_out: the modes whose throughput field was empty or 0 (a browser sends what it cannot read as a
    number, "5e" or "1e400", as empty: the mode vanished from the table without a word). priced_with: the
    form's other numbers as they were read (the table stays when they change; the page clamps some)."""
    head = ("<tr><th>mode</th><th>tokens/s per GPU</th><th>throughput from</th><th>monthly tokens</th>"
            "<th>monthly cost</th><th>$ / M output tokens</th><th>break-even vs API</th></tr>")
    body = []
    for line in lines:
        if line.break_even_million is None:
            be = "– (no API price)"
        elif line.breaks_even:
            be = f"from {amount(line.break_even_million, 1)} M tokens / month"
        else:
            be = (f"never: needs {amount(line.break_even_million, 1)} M tokens / month, "
                  f"capacity {amount(line.monthly_tokens / 1e6, 1)} M at this utilisation")
        # as "Use the last Race's measurements" copies them (one decimal, and a copied 34.25 read 34.2 beside the
        # Race card's 34.3 for the same 34.2546)
        body.append(f"<tr><td>{esc(MODE_LABELS.get(line.mode, line.mode))}</td><td>{throughput_figure(line.tokens_per_s)}</td>"
                    f"<td>{esc(provenance.get(line.mode, 'typed by you'))}</td>"
                    f"<td>{amount(line.monthly_tokens / 1e6, 1)} M</td><td>${amount(line.monthly_cost, 0)}</td>"
                    f"<td>${amount(line.usd_per_million, 3)}</td><td>{esc(be)}</td></tr>")
    # amount: an API price of 1e300 printed 300 digits into the note
    api = "" if api_price in (None, "") else f" API price: ${amount(float(api_price), 3)} per M output tokens."
    note = (priced_with + " " if priced_with else "") + ("Monthly cost = $/GPU-hour × GPUs × 720 h; monthly tokens = tokens/s × 3600 × 24 × 30 × utilisation × GPUs; "
            "$/M = monthly cost / (monthly tokens / 1e6)." + api)
    if left_out:
        names = ", ".join(MODE_LABELS.get(mode, mode) for mode in left_out)
        whose = "its field is" if len(left_out) == 1 else "their fields are"
        note += f" Not priced: {names} ({whose} empty, 0, or not a number the page could read)."
    if provenance:  # a Race times one request at a time; a server batches them, and the modes' ranking can flip
        note += (" A Race's throughput is one request at a time (batch 1, the prompt's prefill in its time, prompt "
                 "tokens not counted): a server batching requests gets more tokens/s per GPU, and diffusion's lead "
                 "over AR can shrink or turn (`twotower bench --batch-size N` measures batched throughput).")
    if measured_on_cpu:
        note += (" A throughput measured here was measured on a CPU: it is a whole machine's, so price it as one "
                 "(its $ per hour in the GPU-hour field, machines as GPUs), or type a GPU's throughput.")
    # (scrolled sideways on a phone: its last columns, $ / M tokens and break-even, were cut off out of reach)
    return (f'<div class="tt-scroll"><table class="tt-table">{head}{"".join(body)}</table></div>'
            f'<div class="tt-note">{esc(note)}</div>')


def amount(value: float, digits: int) -> str:
    """1,234.5 as people write it; beyond a trillion, or where `digits` decimals would move the figure by more
    than half a percent, 3 significant digits (1e-300 tokens/s once printed a $ figure 300 digits wide and
    stretched the table; $0.0149 per M tokens was labelled "$0.01", a monthly $0.6 "$1")."""
    if value and (abs(value) >= 1e12 or abs(round(value, digits) - value) > 0.005 * abs(value)):
        return f"{value:.3g}"
    return f"{value:,.{digits}f}"


def figure_decimals(value: float) -> int:
    """Decimals that keep four significant digits of a throughput, at least two: what "Use the last Race's
    measurements" copies (two decimals alone copied a measured 0.126 tokens/s as 0.13, and 0.004 as 0)."""
    if not value or not math.isfinite(value):
        return 2
    return max(2, 3 - math.floor(math.log10(abs(value))))


def throughput_figure(value: float) -> str:
    """A tokens/s cell of the Cost table: as copied (figure_decimals), no zeros trailing past two decimals."""
    if not 1e-4 <= abs(value) < 1e12:  # 1e-300 tokens/s: 303 decimals
        return f"{value:.4g}"
    text = amount(value, figure_decimals(value))
    if "." in text and "e" not in text:
        whole, decimals = text.split(".")
        text = f"{whole}.{decimals[:2]}{decimals[2:].rstrip('0')}"
    return text


# the shared settings a measuring panel reads (and the Playground's board), as its note names them
SETTING_NAMES = {"gamma": "γ", "block_size": "S", "steps_per_block": "steps per block",
                 "max_new_tokens": "max new tokens", "prompt": "prompt", "gammas": "γ values",
                 "block_sizes": "block sizes", "examples": "prompt set", "extra_prompt": "extra prompt",
                 "anchor_first": "anchored diffusion", "heal": "token healing", "mode": "mode",
                 "temperature": "temperature", "seed": "seed", "top_k": "top-k", "top_p": "top-p"}
PROSE = ("prompt", "extra_prompt")  # named as edited: a prompt's text would swamp the note


def moved_settings(used: dict, current: dict) -> list[str]:
    """Each setting of `used` whose value `current` does not hold, named with both values ("γ 0.8 → 0.6")."""
    return [f"{SETTING_NAMES.get(key, key)} " + ("edited" if key in PROSE else f"{_show(was)} → {_show(current.get(key))}")
            for key, was in used.items() if not _same(was, current.get(key))]


def stale_note(used: dict | None, current: dict, run_name: str) -> str:
    """A line over a panel's results once a shared setting it read has moved since it ran ("" when none has, or
    nothing ran): the Race's cards and the Sweep's points stay on screen, and would otherwise read as measured
    at the settings now shown. used / current: {setting: value} (SETTING_NAMES' keys)."""
    moved = moved_settings(used, current) if used else []
    if not moved:
        return ""
    return note_html(f"Settings moved since this {run_name} ran ({', '.join(moved)}): the results below were "
                     f"measured at the earlier values; run the {run_name} again to measure these.")


def _same(a, b) -> bool:
    """Slider values compare as numbers (16 and 16.0, 0.6 and 0.6000000000000001 are one setting)."""
    try:
        return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)))
    except (TypeError, ValueError, OverflowError):  # (an API caller's 10**400 has no float)
        return a == b


def _show(value):
    if value is None:  # an unseeded run, an empty box
        return "none"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else value
