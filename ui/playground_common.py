"""What the Playground's live runs and its opened saved runs share (ui.handlers, ui.saved_runs): the caption of
a run's settings, the prompt its board shows, a recording folded into a board, the replay scrubber, the note
that the settings have moved since the board's run."""

from __future__ import annotations

import gradio as gr

from twotower.engine import normalise_mode
from twotower.token_healing import prompt_less_prefix
from twotower.trace import MODE_SETTINGS

from .board import Board, fold
from .panel_common import whole
from .render import note_html, token_text
from .render_panels import MODE_LABELS, moved_settings

SAMPLED = ("seed", "top_k", "top_p")  # read by a sampled draw only


def run_caption(mode: str, settings: dict, anchor_first: bool = False, draft_steps: int | None = None,
                healed: str = "") -> str:
    """The settings a Playground run used, for its statistics: the board stays after the sliders move on."""
    try:
        mode = normalise_mode(mode)
    except ValueError:
        return str(mode)
    parts = [MODE_LABELS.get(mode, mode)]
    if mode == "diffusion":
        size, steps = settings["block_size"], settings["steps_per_block"]
        # a block of S positions takes at most S passes, whatever the slider says ("S 4 · 64 steps per block")
        capped = isinstance(size, int) and isinstance(steps, int) and steps > size
        ran = f" (at most {size} step{' runs' if size == 1 else 's run'})" if capped else ""
        parts += [f"γ {settings['gamma']}", f"S {size}", f"{steps} step{'' if steps == 1 else 's'} per block{ran}"]
        parts += ["anchored"] if anchor_first else []
    elif mode == "speculative":  # drafts with the model's passes (the steps slider is diffusion's); γ acts on >1
        parts += [f"S {settings['block_size']}"]
        if draft_steps is not None:
            parts += [f"{draft_steps} draft pass{'' if draft_steps == 1 else 'es'}"]
            parts += [f"draft γ {settings['gamma']}"] if draft_steps > 1 else []
    temperature = settings.get("temperature") or 0
    seed = settings.get("seed")
    # the filters at their "every token" ends (top-k 0, top-p 1) change nothing: not named
    top_k, top_p = settings.get("top_k"), settings.get("top_p")
    filters = ([f"top-k {top_k}"] if top_k else []) + ([f"top-p {top_p}"] if top_p not in (None, 1, 1.0) else [])
    parts += ([", ".join([f"temperature {temperature}", *filters, "unseeded" if seed is None else f"seed {seed}"])]
              if temperature else ["greedy"])
    # token healing (twotower/token_healing.py): the prompt's last token was taken back and chosen again
    # (whitespace drawn as the board draws it: a quoted run of spaces read as one space in the page)
    parts += [f"healed: the prompt's last token ‘{token_text(healed)}’ chosen again"] if healed else []
    return " · ".join(parts)


def board_prompt(record: dict) -> str:
    """The prompt the board shows before the run's cells: the typed one, but for the healed last token's text,
    which the first cell holds (it was generated)."""
    return prompt_less_prefix(record["prompt"], record.get("healed", ""))


def recorded_board(record: dict, upto: int | None = None) -> Board:
    """The recorded run folded up to its `upto`-th step (None: all of it). A stopped run's last step shows the
    block Stop left unfinished as stopped; an earlier step shows it as it was then, being denoised."""
    board = fold(record["events"], upto)
    board.stopped = upto is None and bool(record.get("stopped"))
    return board


def replay_scrubber(frames: int):
    """The step slider over a finished run; hidden when there is nothing to scrub (a run of 0 or 1 steps, e.g.
    one token, or a whole block committed in one pass), where Gradio refuses a slider whose ends meet."""
    if frames < 2:
        return gr.Slider(visible=False)
    return gr.Slider(minimum=1, maximum=frames, value=frames, step=1, visible=True, interactive=True,
                     label=f"Replay step (1–{frames})")


def board_stale_note(ran: dict | None, current: dict, draft_steps: int = 1) -> str:
    """A line over the board once the settings shown have moved since its run ("" when none has, or no run is
    there): a slider moved from the keyboard, a box typed in, or a setting no release re-runs (temperature, seed,
    top-k / top-p, max new tokens) left the board under settings that did not make it.
    ran: the board's run, as a recording holds it ({prompt, mode, settings, heal, healed}); current: the panel's
    inputs as sent ({prompt, mode, heal, **run_settings' keys, anchor_first}), compared, never refused;
    draft_steps: the model's speculative draft passes (one: γ does not act there, and is not compared)."""
    if not ran or not ran.get("settings"):
        return ""
    try:
        ran_mode, mode = normalise_mode(ran.get("mode")), normalise_mode(current.get("mode"))
    except ValueError:
        ran_mode, mode = ran.get("mode"), current.get("mode")
    now = {key: whole(value) for key, value in current.items()}
    now["mode"] = MODE_LABELS.get(mode, mode)
    now["seed"] = None if now.get("seed") in (None, "") else now["seed"]  # an empty box: unseeded
    now["top_k"] = now.get("top_k") or None  # top-k 0 and top-p 1 keep every token: recorded as None
    now["top_p"] = None if now.get("top_p") in (1, 1.0) else now.get("top_p")
    # what the mode reads beside the prompt, the mode, max new tokens, temperature and healing (AR and mock-AR read
    # none of γ, S, the steps or the anchor: the same run whatever they say; speculative's draft settings have no
    # Playground input, None on both sides)
    reads = MODE_SETTINGS.get(ran_mode, ())
    if ran_mode == "speculative" and draft_steps <= 1:  # one draft pass commits the whole block: γ unread
        reads = tuple(key for key in reads if key != "gamma")
    settings = ran["settings"]
    used = {"prompt": ran.get("prompt"), "mode": MODE_LABELS.get(ran_mode, ran_mode),
            **{key: settings.get(key) for key in reads},
            "max_new_tokens": settings.get("max_new_tokens"), "temperature": settings.get("temperature")}
    if settings.get("temperature") and now.get("temperature"):  # both sampled: the draw's settings
        used.update({key: settings.get(key) for key in SAMPLED})
    # healing: a prompt with nothing to heal ran the same either way (healed None: not known yet, a run starting)
    if ran.get("healed") or not ran.get("heal"):
        used["heal"] = bool(ran.get("heal"))
        now["heal"] = bool(now.get("heal"))
    moved = moved_settings(used, now)
    if not moved:
        return ""
    return note_html(f"Settings moved since the run on the board ({', '.join(moved)}): Generate runs them.")
