"""The samplers, written once as generators of StepEvents.

`iter_mask_diffusion` (with block size 1 it is mock-AR) and `iter_ar` are the decoding loops, and `draft_block`
the denoiser's inner loop over one block, which speculative mode's round loop (spec_decode/) drafts with too;
`generate_*` drain them, calling `step_callback(event)` on each. The CLI, the UI, the benchmarks and the
tests consume the same iterators.

Every block has S positions, the last one too: when the budget (max_new_tokens − tokens so far) leaves
r < S, the block is denoised as any other and its passes stop once its first r positions are committed; the
block adds those r. The steps are those a longer run takes (the commit rule sees the whole block), so a run
is a prefix of a longer one with the same settings (greedy, or sampling with the same seed), and the
denoiser never sees a block shorter than those it was trained on. The step events of such a block carry
its S positions and `info["needed"] = r`; its block event carries the r tokens it adds. The price: such a
block may take more passes than its r tokens alone would (the rule commits the block's most confident
positions, which may lie past r), so tokens per pass fall when the budget is not a multiple of S.
"""

from __future__ import annotations

import time
from typing import Callable, Iterator

import torch

from dataclasses import dataclass

from .commit import predict_tokens, select_commits
from .events import GenerationResult, StepEvent, commit_event, done_event, draft_event, token_event
from .token_healing import check_allowed, constrain, constrain_position_0
from .validation import (NEW_TOKENS_LIMIT, as_batch, check_block_size, check_flag, check_gamma, check_int,
                         check_sampling, check_seed, check_steps, check_token_id, model_config)


def make_generator(seed: int | None, device) -> torch.Generator | None:
    """seed: already checked at the sampler's call (validation.check_seed), as every other argument.
    One generator serves the whole batch (draws are shaped by it): a row's sample depends on its batch."""
    if seed is None:
        return None
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(int(seed))
    return gen


@dataclass
class BlockDraft:
    """The state of one block after a denoiser pass. Tensors on the denoiser's device, (B, L)."""

    tokens: torch.Tensor  # long; still-open positions hold the mask id
    masked: torch.Tensor  # bool, still open
    confidence: torch.Tensor  # float: probability of the token last predicted at each position
    commit_step: torch.Tensor  # long: the pass that committed each position, -1 if open or given
    committed: torch.Tensor  # bool: committed by this very pass
    commit_logits: torch.Tensor | None  # (B, L, V) fp32: logits each position was committed from, if kept
    step: int = -1  # index of the pass just run
    # float: the confidence the commit rule ranked by at the last pass: `confidence`, or with
    # select_on_top_probability at temperature > 0 each position's top probability, which no draw moves
    select_confidence: torch.Tensor | None = None


def draft_block(
    model,
    ctx,
    tokens: torch.Tensor,
    masked: torch.Tensor,
    steps: int,
    gamma: float,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    select_on_top_probability: bool = False,
    keep_commit_logits: bool = False,
    skip_finished_rows: bool = True,
    needed: int | None = None,
    first_allowed: torch.Tensor | None = None,
) -> Iterator[BlockDraft]:
    """Fill the open positions of `tokens` (B, L) in at most `steps` denoiser passes; yield after each.

    ctx: the context tower's states (model.context_states), read-only. Positions with masked=False are
    given (kept as they are, e.g. a token emitted but not yet read by the context tower).
    needed: only the first `needed` positions are wanted (the budget's last block); the passes stop once
    they are committed in every row, and until then run as over a whole block (None: all L are wanted).
    skip_finished_rows: in a batch, a row whose block is complete sits out the remaining passes (rows are
    independent; a CPU pass costs in proportion to its tokens). False runs every row every pass: the
    reference twin.
    select_on_top_probability, keep_commit_logits: speculative drafting's (off in diffusion): choose the
    positions to commit by each distribution's top probability, not the drawn token's, and keep the logits
    each position was committed from; spec_decode/draft.py says why rejection sampling needs both.
    first_allowed: (B, V) bool, the ids position 0 may be while open (token healing, in the completion's first
    block; see twotower/token_healing.py); None: any.
    """
    mask_id = model.config.mask_token_id
    device = model.den_device
    masked = masked.to(device).clone()
    tokens = tokens.to(device)
    tokens = torch.where(masked, torch.full_like(tokens, mask_id), tokens)
    state = BlockDraft(
        tokens=tokens,
        masked=masked,
        confidence=torch.zeros(tokens.shape, device=device),
        commit_step=torch.full(tokens.shape, -1, dtype=torch.long, device=device),
        committed=torch.zeros_like(masked),
        commit_logits=None,
    )
    if keep_commit_logits:
        state.commit_logits = torch.zeros(*tokens.shape, model.config.vocab_size, device=device)
    for step in range(steps):
        wanted = state.masked[:, :needed]  # (B, needed or L): None slices the whole block
        if not wanted.any():
            break
        open_before = state.masked
        t = open_before.float().mean(-1)  # (B,) fraction of the block still masked
        # Every row with open positions runs as over a whole block, those past `needed` included, until every
        # row has its wanted ones: a row that stopped drawing early would shift its batch-mates' random draws
        # (one Gumbel draw over all open positions), and a sampled batch would not be a longer run's prefix.
        # Only open positions need a prediction: the vocab projection runs on those N rows alone
        # (it is the largest matmul of a pass), and the results are scattered back to (B, L).
        active = open_before.any(-1)  # (B,) rows with open positions
        if skip_finished_rows and not bool(active.all()):
            # Finished rows sit out; they have no open position, so the N head rows keep their order.
            rows = active.nonzero().squeeze(1)  # (n,)
            logits = model.denoise(state.tokens[rows], ctx.rows(rows), t[rows], head_positions=open_before[rows])
        else:
            rows = None
            logits = model.denoise(state.tokens, ctx, t, head_positions=open_before)  # (N, V)
        if first_allowed is not None:
            logits = constrain_position_0(logits, open_before if rows is None else open_before[rows],
                                          first_allowed if rows is None else first_allowed[rows.cpu()])
        pred_open, conf_open = predict_tokens(logits, temperature, generator, top_k, top_p, forbid=mask_id)
        pred = state.tokens.masked_scatter(open_before, pred_open)
        conf = state.confidence.masked_scatter(open_before, conf_open)
        if select_on_top_probability and temperature > 0.0:
            _, top_open = predict_tokens(logits, 0.0, forbid=mask_id)  # top probability, independent of the draw
            # positions committed at earlier passes keep the top probability they were ranked by (scattered
            # into `confidence` they held the drawn token's, which a draw moves)
            ranked = state.confidence if state.select_confidence is None else state.select_confidence
            select_conf = ranked.masked_scatter(open_before, top_open)
        else:
            select_conf = conf
        commit = select_commits(select_conf, open_before, gamma, steps - step)
        state.tokens = torch.where(commit, pred, state.tokens)
        state.masked = open_before & ~commit
        state.commit_step = torch.where(commit, torch.full_like(state.commit_step, step), state.commit_step)
        state.confidence = conf  # already the old values wherever the block was not open
        state.select_confidence = select_conf
        if keep_commit_logits:
            # logits' rows are the open positions, row-major: those committed now, (n_commit, V)
            state.commit_logits[commit] = logits[commit[open_before]].float()
        state.committed = commit
        state.step = step
        yield state


def iter_mask_diffusion(
    model,
    input_ids,
    max_new_tokens: int = 128,
    block_size: int = 16,
    steps_per_block: int = 16,
    confidence_threshold: float = 0.8,
    temperature: float = 0.0,
    eos_token_id: int | None = None,
    seed: int | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    mode: str = "diffusion",
    anchor_first: bool = False,
    first_token_allowed: torch.Tensor | None = None,
) -> Iterator[StepEvent]:
    """Masked block diffusion: per block, S masks filled by `draft_block` (one denoiser pass per step, the
    release's commit rule), then one context-tower pass over the committed block.

    anchor_first (a variant, off by default; not the release's rule): each block's first token is the
    context tower's own next token, from the row its pass over the previous block (or the prompt) computes
    anyway; the denoiser sees it as given and fills the other S - 1 positions. It costs no denoiser pass.

    first_token_allowed: (V,) or (B, V) bool, the ids the completion's first token may be (token healing:
    `Engine.heal`, twotower/token_healing.py), honoured by the denoiser's pass or by the anchor; None: any.

    Arguments are checked here, at the call, so bad input raises ValueError before any event is asked for.
    """
    cfg = model_config(model)
    prompt = as_batch(input_ids, cfg.vocab_size)
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, maximum=NEW_TOKENS_LIMIT)
    block_size = check_block_size(block_size)
    steps_per_block = check_steps("steps per block", steps_per_block)
    gamma = check_gamma(confidence_threshold)
    temperature, top_k, top_p = check_sampling(temperature, top_k, top_p)
    eos = check_token_id("eos_token_id", eos_token_id, cfg.vocab_size)
    seed = check_seed(seed)
    anchor_first = check_flag("anchor_first", anchor_first)
    allowed = check_allowed(first_token_allowed, prompt.shape[0], cfg)
    return _mask_diffusion_events(model, prompt, max_new_tokens, block_size, steps_per_block, gamma, temperature,
                                  eos, seed, top_k, top_p, mode, anchor_first, allowed)


@torch.inference_mode()
def _mask_diffusion_events(model, prompt, max_new_tokens, block_size, steps_per_block, gamma, temperature, eos,
                           seed, top_k, top_p, mode, anchor_first=False, allowed=None) -> Iterator[StepEvent]:
    cfg = model.config
    mask_id = cfg.mask_token_id
    gen = make_generator(seed, model.den_device)

    t_start, t_first = time.perf_counter(), None
    bsz = prompt.shape[0]
    cache = model.new_cache(bsz)
    next_row = model.context_forward(prompt, cache)[:, -1]  # prefill: KV cache, Mamba states; (B, V) next row
    ctx_passes, nfe, anchored = 1, 0, 0
    new = torch.empty(bsz, 0, dtype=torch.long)
    done_rows = torch.zeros(bsz, dtype=torch.bool)
    block_idx = 0
    while new.shape[1] < max_new_tokens:
        size = min(block_size, max_new_tokens - new.shape[1])  # the tokens this block adds (S but for the last)
        needed = size if size < block_size else None
        ctx = model.context_states(cache)  # read-only for every step of this block
        block = torch.full((bsz, block_size), mask_id, dtype=torch.long, device=model.den_device)
        open_ = torch.ones_like(block, dtype=torch.bool)
        start = new.shape[1]
        if anchor_first:  # position 0 from the context tower's row; the denoiser sees it as a given token
            # (the mask id forbidden, as the denoiser's predictions forbid it: given, it would read as a hole)
            row = constrain(next_row, allowed) if block_idx == 0 else next_row
            first, first_conf = predict_tokens(row.to(model.den_device), temperature, gen, top_k, top_p,
                                               forbid=mask_id)  # (B,)
            block[:, 0], open_[:, 0] = first, False
            anchored += 1
            t_first = t_first or time.perf_counter()  # a token, though no denoiser pass made it (S = 1)
        # what the block event reports if nothing is left to draft (S = 1 with the anchor)
        none_open = torch.zeros_like(open_)
        state = BlockDraft(block, none_open, torch.zeros(block.shape, device=block.device),
                           torch.full_like(block, -1), none_open, None)
        for state in draft_block(model, ctx, block, open_, steps_per_block, gamma, temperature, gen, top_k, top_p,
                                 needed=needed, first_allowed=allowed if block_idx == 0 else None):
            nfe += 1
            t_first = t_first or time.perf_counter()
            yield draft_event(mode, state, block=block_idx, block_start=start, nfe=nfe, ctx_passes=ctx_passes,
                              generated=start + int((~state.masked[0, :size]).sum()),
                              elapsed=time.perf_counter() - t_start,
                              info=None if needed is None else {"needed": needed})
        # (B, size): the positions this block adds (a copy: the last step event keeps its S positions)
        block = state.tokens.cpu()[:, :size].clone()
        confidence, commit_step = state.confidence.cpu()[:, :size].clone(), state.commit_step.cpu()[:, :size].clone()
        if anchor_first:  # on the copy above: the step events keep the anchor's confidence as they had it
            confidence[:, 0] = first_conf.cpu()
        new = torch.cat([new, block], dim=1)
        if eos is not None:
            done_rows |= (block == eos).any(-1)
        finished = bool(done_rows.all()) or new.shape[1] >= max_new_tokens
        if not finished:  # the context tower reads the committed block once (not needed after the last)
            next_row = model.context_forward(block, cache)[:, -1]
            ctx_passes += 1
        yield commit_event(mode, block, confidence, commit_step, block=block_idx, generated=new.shape[1], nfe=nfe,
                           ctx_passes=ctx_passes, elapsed=time.perf_counter() - t_start, just_committed=False)
        block_idx += 1
        if finished:
            break
    # the settings that ran, defaults filled in, as speculative's stats carry its own (mock-AR's are fixed)
    info = {"gamma": gamma, "block_size": block_size, "steps_per_block": steps_per_block,
            "anchor_first": anchor_first} if mode == "diffusion" else {}
    if anchor_first:
        info["anchored_tokens"] = anchored  # per row: one per block
    yield done_event(mode, prompt, new, eos, cfg.pad_token_id or 0, nfe, ctx_passes, t_start, t_first,
                     time.perf_counter(), info)


def iter_mock_ar(model, input_ids, max_new_tokens=128, temperature=0.0, top_k=None, top_p=None,
                 eos_token_id=None, seed=None, first_token_allowed=None) -> Iterator[StepEvent]:
    """Both towers, one token per step: diffusion with S = 1 (isolates the two-tower architecture)."""
    return iter_mask_diffusion(model, input_ids, max_new_tokens, block_size=1, steps_per_block=1,
                               confidence_threshold=1.0, temperature=temperature, eos_token_id=eos_token_id,
                               seed=seed, top_k=top_k, top_p=top_p, mode="mock_ar",
                               first_token_allowed=first_token_allowed)


def iter_ar(model, input_ids, max_new_tokens=128, temperature=0.0, top_k=None, top_p=None,
            eos_token_id=None, seed=None, first_token_allowed=None) -> Iterator[StepEvent]:
    """Plain autoregressive decoding with the context tower alone, KV cache and Mamba states.
    Arguments are checked at the call, as in `iter_mask_diffusion`."""
    cfg = model_config(model)
    prompt = as_batch(input_ids, cfg.vocab_size)
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, maximum=NEW_TOKENS_LIMIT)
    temperature, top_k, top_p = check_sampling(temperature, top_k, top_p)
    eos = check_token_id("eos_token_id", eos_token_id, cfg.vocab_size)
    seed = check_seed(seed)
    allowed = check_allowed(first_token_allowed, prompt.shape[0], cfg)
    return _ar_events(model, prompt, max_new_tokens, temperature, top_k, top_p, eos, seed, allowed)


@torch.inference_mode()
def _ar_events(model, prompt, max_new_tokens, temperature, top_k, top_p, eos, seed,
               allowed=None) -> Iterator[StepEvent]:
    cfg = model.config
    gen = make_generator(seed, model.ctx_device)
    t_start, t_first = time.perf_counter(), None
    bsz = prompt.shape[0]
    cache = model.new_cache(bsz)
    logits = constrain(model.context_forward(prompt, cache)[:, -1], allowed)  # (B, V); healing: the first only
    passes = 1
    new = torch.empty(bsz, 0, dtype=torch.long)
    done_rows = torch.zeros(bsz, dtype=torch.bool)
    for i in range(max_new_tokens):
        token, conf = predict_tokens(logits, temperature, gen, top_k, top_p)  # (B,)
        token = token.cpu()[:, None]
        new = torch.cat([new, token], dim=1)
        t_first = t_first or time.perf_counter()
        yield token_event("ar", i, token, conf, passes, time.perf_counter() - t_start)
        if eos is not None:
            done_rows |= token[:, 0] == eos
        if bool(done_rows.all()) or i == max_new_tokens - 1:
            break
        logits = model.context_forward(token, cache)[:, -1]
        passes += 1
    yield done_event("ar", prompt, new, eos, cfg.pad_token_id or 0, 0, passes, t_start, t_first, time.perf_counter())


def drain(events: Iterator[StepEvent], step_callback: Callable[[StepEvent], None] | None = None,
          keep_events: bool = False) -> GenerationResult:
    """Run an event iterator to its end; the 'done' event carries the result."""
    if step_callback is not None and not callable(step_callback):  # before the prefill runs
        raise ValueError(f"step_callback must be a function of one StepEvent, got {type(step_callback).__name__}")
    kept = [] if keep_events else None
    if not hasattr(events, "__iter__"):
        raise ValueError(f"drain takes a sampler's events (iter_* or Engine.stream), got {type(events).__name__}")
    seen = False
    for event in events:
        seen = True
        if not hasattr(event, "kind"):  # a list of token ids read as "'int' object has no attribute 'kind'"
            raise ValueError(f"drain takes a sampler's events (iter_* or Engine.stream); this one yielded a "
                             f"{type(event).__name__}")
        if step_callback is not None:
            step_callback(event)
        if kept is not None:
            kept.append(event)
        if event.kind == "done":
            return GenerationResult(event.sequences, event.info["new_tokens"], event.stats, kept)
    if not seen:  # a generator drained twice: "ended without a 'done' event" read as the sampler's bug
        raise ValueError("these events were already used up: a sampler's events run once (call iter_* or "
                         "Engine.stream again for another run)")
    raise RuntimeError("sampler ended without a 'done' event")


def generate_mask_diffusion(model, input_ids, max_new_tokens=128, block_size=16, steps_per_block=16,
                            mask_token_id=None, temperature=0.0, confidence_threshold=0.8, eos_token_id=None,
                            step_callback=None, seed=None, anchor_first=False, top_k=None,
                            top_p=None, first_token_allowed=None) -> GenerationResult:
    """Masked block diffusion (`iter_mask_diffusion`), drained: `step_callback(event)` sees every StepEvent.
    The arguments after the model are in the release's order (the design note's signature), so a call written
    for it positionally means the same here; seed, anchor_first, top_k, top_p and first_token_allowed (token
    healing) are this project's.
    mask_token_id: optional, only checked against the model's (the denoiser was trained with one)."""
    if mask_token_id is not None and mask_token_id != model.config.mask_token_id:
        raise ValueError(f"this model was trained with mask_token_id={model.config.mask_token_id}, got {mask_token_id!r}")
    return drain(iter_mask_diffusion(model, input_ids, max_new_tokens, block_size, steps_per_block,
                                     confidence_threshold, temperature, eos_token_id, seed, top_k, top_p,
                                     anchor_first=anchor_first, first_token_allowed=first_token_allowed),
                 step_callback)


def generate_mock_ar(model, input_ids, max_new_tokens=128, temperature=0.0, top_k=None, top_p=None,
                     eos_token_id=None, step_callback=None, seed=None, first_token_allowed=None) -> GenerationResult:
    """Mock-AR (`iter_mock_ar`: both towers, one token a step), drained through `step_callback`."""
    return drain(iter_mock_ar(model, input_ids, max_new_tokens, temperature, top_k, top_p, eos_token_id, seed,
                              first_token_allowed), step_callback)


def generate_ar(model, input_ids, max_new_tokens=128, temperature=0.0, top_k=None, top_p=None,
                eos_token_id=None, step_callback=None, seed=None, first_token_allowed=None) -> GenerationResult:
    """AR with the context tower alone (`iter_ar`), drained through `step_callback`."""
    return drain(iter_ar(model, input_ids, max_new_tokens, temperature, top_k, top_p, eos_token_id, seed,
                         first_token_allowed), step_callback)
