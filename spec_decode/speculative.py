"""Speculative decoding with the two towers: the denoiser drafts a block, the context tower verifies it.

The prompt's prefill gives the context tower's own first token, emitted at once as AR emits it (a
"token" event; time to first token is AR's). Then per round: the denoiser fills k open positions in a few
passes (draft.draft_block, "step" events); the context tower reads the draft in one causal pass
(context_cursor.ContextCursor.verify); verify.py's rule keeps the longest acceptable prefix plus one target
token (a "verify" event); the cache is rolled back to just after the kept tokens and the tokens are
emitted (a "block" event). A round drafts at most one fewer token than the budget leaves (its own token
fills it), and with one token left there is no round: the context tower's own token from one pass over the
unread tokens (a last "token" event). Greedy output equals twotower.decoding.iter_ar token for token; at
temperature > 0 it is distributed exactly as it.
"""

from __future__ import annotations

import time
from typing import Iterator

import torch

from twotower.commit import predict_tokens, sampling_distribution
from twotower.decoding import drain, make_generator
from twotower.events import GenerationResult, StepEvent, commit_event, done_event, draft_event, token_event
from twotower.metrics import cut_after_eos
from twotower.token_healing import check_allowed, constrain
from twotower.validation import (NEW_TOKENS_LIMIT, SEED_LIMIT, as_batch, check_block_size, check_flag, check_fraction,
                                 check_gamma, check_int, check_sampling, check_seed, check_steps, check_token_id,
                                 model_config)

from .context_cursor import ContextCursor
from .draft import BlockDraft, adapt_block_size, confident_prefix_length, draft_block, draft_distributions
from .metrics import AcceptanceCounter, pass_counts
from .verify import Verdict, greedy_verdict, rejection_verdict

MODE = "speculative"
CUT_REASON = "a position's confidence can depend on tokens drawn after it, so a cut could favour them"
CUT_OFF_WHEN_SAMPLING = ("the proposal cut (min draft confidence) is off when sampling over several draft passes: "
                         + CUT_REASON)


def proposal_cut(temperature: float, draft_steps: int, min_draft_confidence: float) -> float:
    """The min draft confidence a run applies: the one asked for, except 0 (the whole draft verified) when
    sampling over several draft passes (see iter_speculative). Trace, CLI and app report this value."""
    return 0.0 if temperature > 0.0 and draft_steps > 1 else min_draft_confidence


def iter_speculative(model, input_ids, max_new_tokens: int = 128, block_size: int | None = None,
                     draft_steps: int | None = None, draft_threshold: float | None = None, temperature: float = 0.0,
                     eos_token_id: int | None = None, seed: int | None = None, adaptive: bool = False,
                     top_k: int | None = None, top_p: float | None = None,
                     min_draft_confidence: float | None = None,
                     per_position_rollback: bool = True,
                     first_token_allowed: torch.Tensor | None = None) -> Iterator[StepEvent]:
    """Events of one speculative generation. Inputs are checked now, so bad values raise here.

    block_size: S, the drafted tokens per round (with adaptive=True the start of a length that moves
    within [1, 2·S] with the acceptance). draft_steps / draft_threshold: denoiser passes per draft and
    the commit rule's γ. temperature 0 is greedy; top_k / top_p filter both the target and the draft.
    min_draft_confidence: verify only the drafted prefix whose confidence reaches it (at least one
    token), the confidence being each position's top draft probability, which no draw moves. Applied where
    it cannot bias the output: greedy, or one draft pass (every top probability then comes from the same
    pass, before any token is drawn); with several sampled draft passes a position's confidence can
    depend on tokens drawn after it, so the whole draft is verified.
    per_position_rollback: after a partial acceptance, roll the context tower back from the verify pass's
    per-position states where it has them (context_cursor.py); False: always the snapshot path, the twin.
    first_token_allowed: (V,) bool, the ids the first token may be (token healing, twotower/token_healing.py):
    that token is the context tower's, from the prefill, so the constraint is AR's and the output still AR's.
    block_size, draft_steps, draft_threshold, min_draft_confidence: None takes the checkpoint's own (its config's
    default_block_size, default_draft_steps, default_gamma, default_min_draft_confidence), as Engine.stream,
    the CLI and the app do: a script gets the settings the documented figures were measured at.
    """
    cfg = model_config(model)
    block_size = cfg.default_block_size if block_size is None else block_size
    draft_steps = cfg.default_draft_steps if draft_steps is None else draft_steps
    draft_threshold = cfg.default_gamma if draft_threshold is None else draft_threshold
    min_draft_confidence = cfg.default_min_draft_confidence if min_draft_confidence is None else min_draft_confidence
    prompt = as_batch(input_ids, cfg.vocab_size, one_prompt="speculative mode")
    if prompt.shape[0] != 1:  # a tensor or array of several rows
        raise ValueError(f"speculative mode runs one prompt at a time (got a batch of {prompt.shape[0]})")
    settings = dict(
        max_new_tokens=check_int("max_new_tokens", max_new_tokens, maximum=NEW_TOKENS_LIMIT),
        block_size=check_block_size(block_size),
        draft_steps=check_steps("draft steps", draft_steps),
        gamma=check_gamma(draft_threshold),
        eos=check_token_id("eos_token_id", eos_token_id, cfg.vocab_size),
        adaptive=check_flag("adaptive", adaptive),
        seed=check_seed(seed),
        min_confidence=check_fraction("min_draft_confidence", min_draft_confidence),
        per_position=check_flag("per_position_rollback", per_position_rollback),
        allowed=check_allowed(first_token_allowed, 1, cfg),
    )
    settings["temperature"], settings["top_k"], settings["top_p"] = check_sampling(temperature, top_k, top_p)
    return _speculative_events(model, prompt, **settings)


def generate_speculative(model, input_ids, max_new_tokens=128, block_size=None, draft_steps=None,
                         draft_threshold=None, temperature=0.0, seed=None, step_callback=None, eos_token_id=None,
                         adaptive=False, top_k=None, top_p=None, min_draft_confidence=None,
                         per_position_rollback=True, first_token_allowed=None) -> GenerationResult:
    """Speculative decoding (`iter_speculative`), drained: `step_callback(event)` sees every StepEvent. The
    arguments after `step_callback` are keyword arguments by intent; greedy output is AR's, token for token."""
    return drain(iter_speculative(model, input_ids, max_new_tokens=max_new_tokens, block_size=block_size,
                                  draft_steps=draft_steps, draft_threshold=draft_threshold, temperature=temperature,
                                  eos_token_id=eos_token_id, seed=seed, adaptive=adaptive, top_k=top_k, top_p=top_p,
                                  min_draft_confidence=min_draft_confidence,
                                  per_position_rollback=per_position_rollback,
                                  first_token_allowed=first_token_allowed), step_callback)


@torch.inference_mode()
def _speculative_events(model, prompt, *, max_new_tokens, block_size, draft_steps, gamma, eos, adaptive, seed,
                        temperature, top_k, top_p, min_confidence, per_position, allowed) -> Iterator[StepEvent]:
    mask_id = model.config.mask_token_id
    draft_gen = make_generator(seed, model.den_device)
    verify_gen = make_generator(None if seed is None else (seed + 1) % SEED_LIMIT, model.ctx_device)
    t_start = time.perf_counter()
    # unread tokens: the denoiser sees them as given tokens (up to S of them on the snapshot path)
    cursor = ContextCursor(model, prompt, max_unread=block_size, per_position=per_position)
    counter = AcceptanceCounter()
    # seconds the sampler spent drafting (denoiser passes and their token selection) and verifying (the
    # context tower's pass, the verdict, rollback and re-scan), per round; the prompt's prefill and a last
    # token's pass (no round) are in neither
    clock = {"draft_s": 0.0, "verify_s": 0.0}
    rollbacks: dict[str, int] = {}  # rounds per ContextCursor.commit outcome ("none": full acceptance or the end)
    new: list[int] = []
    nfe, size, round_idx, last_token, last_tokens = 0, block_size, 1, 0, 0  # round 0: the prefill's token
    max_size = 2 * block_size if adaptive else block_size
    min_confidence = proposal_cut(temperature, draft_steps, min_confidence)  # the docstring says when it is 0
    # The prefill already scored the first new position: its token is the context tower's, as AR's first
    # token is (same rule, same law), so it needs no draft. It stays unread, like a bonus token, and the
    # first draft starts after it, as every later one does.
    first, conf = predict_tokens(constrain(cursor.next_logits[None], allowed), temperature, verify_gen, top_k,
                                 top_p)  # (1,), (1,)
    new.append(int(first[0]))
    finished = max_new_tokens == 1 or new[0] == eos
    if not finished:
        cursor.emit_next(new[0])
    t_first = time.perf_counter()
    # drawn grey on the board, as given: the context tower's token, beside the rounds' denoiser commits
    yield token_event(MODE, 0, torch.tensor([new]), conf, cursor.passes, t_first - t_start, {"source": "prefill"},
                      commit_step=-1)
    while not finished:
        tick = time.perf_counter()  # the clocks stop while an event is out with the consumer
        # a round emits at most k + 1 tokens (the accepted drafts and the verifier's own token), so the last
        # round drafts one fewer than the budget leaves: a full acceptance's own token fills it, none is cut
        left = max_new_tokens - len(new)
        if left == 1:  # no draft can add anything: the last token is the context tower's own, as AR's would be
            last_token = int(bool(cursor.unread))  # its pass, if it needs one, is counted apart from the rounds'
            last_tokens = 1  # with or without a pass (after a re-scan the cursor holds its logits already)
            yield _last_token_event(cursor, temperature, verify_gen, top_k, top_p, new, round_idx, nfe, t_start)
            break
        k = min(size, left - 1)
        lead = len(cursor.unread)  # emitted tokens the context tower has not read yet lead the block
        tokens = torch.tensor([cursor.unread + [mask_id] * k])  # (1, lead + k)
        masked = torch.arange(lead + k)[None] >= lead
        ctx = model.context_states(cursor.cache)  # read-only while drafting
        state: BlockDraft | None = None
        for state in draft_block(model, ctx, tokens, masked, draft_steps, gamma, temperature, draft_gen, top_k, top_p,
                                 select_on_top_probability=True, keep_commit_logits=True):
            nfe += 1
            event = draft_event(MODE, state, block=round_idx, block_start=len(new), generated=len(new), nfe=nfe,
                                ctx_passes=cursor.passes, elapsed=time.perf_counter() - t_start,
                                lead=lead)  # copies: waits for a GPU
            clock["draft_s"] += time.perf_counter() - tick
            yield event
            tick = time.perf_counter()
        # cut on the top probabilities, not the drawn tokens' (at temperature > 0 those depend on the draw, and
        # proposing a position because of the token drawn there would bias the output away from AR's law)
        k_drafted, k = k, confident_prefix_length(state.select_confidence[0, lead:], min_confidence)  # 0: whole draft
        drafted = state.tokens[0, lead:lead + k].cpu()  # (k,) the proposal: the drafted tokens that are verified
        target_logits = cursor.verify(drafted.tolist())  # (k + 1, V)
        verdict, p, q = _verify(drafted, target_logits, state, lead, temperature, top_k, top_p, mask_id, verify_gen)
        n, token = int(verdict.n_accepted), int(verdict.token)
        counter.record(k, n)
        probs = round_probabilities(drafted, n, token, p, q)
        info = _verify_info(drafted, n, token, probs)
        info["draft_passes"] = state.step + 1
        info["drafted_before_cut"] = k_drafted  # the denoiser's block; info["block_size"] is what was proposed
        clock["verify_s"] += time.perf_counter() - tick
        yield StepEvent(mode=MODE, kind="verify", block=round_idx, step=state.step + 1, block_start=len(new),
                        tokens=drafted[None], masked=torch.zeros(1, k, dtype=torch.bool),
                        confidence=state.confidence[:, lead:lead + k].cpu(), committed=(torch.arange(k) < n)[None],
                        commit_step=state.commit_step[:, lead:lead + k].cpu(), nfe=nfe, context_passes=cursor.passes,
                        elapsed=time.perf_counter() - t_start, generated=len(new), info=info)

        # k < the tokens left: the budget never cuts a round; an EOS does, as AR stops there
        emitted = cut_after_eos(drafted[:n].tolist() + [token], eos)
        new.extend(emitted)
        finished = len(new) >= max_new_tokens or (eos is not None and emitted[-1] == eos)
        tick = time.perf_counter()
        rollback = cursor.commit(n, token) if not finished else "none"  # counts as verifying, a re-scan too
        rollbacks[rollback] = rollbacks.get(rollback, 0) + 1
        clock["verify_s"] += time.perf_counter() - tick
        event = _commit_event(emitted, n, k, state, lead, probs, round_idx, len(new), nfe, cursor.passes, t_start)
        event.info["rollback"] = rollback  # see ContextCursor.commit ("rescan": the kept tokens re-run at once)
        yield event
        if finished:
            break
        if adaptive:
            size = adapt_block_size(size, k, n, max_size)
        round_idx += 1
    stats = counter.summary()
    stats.update(pass_counts(counter.rounds, nfe, cursor.passes, last_token))
    stats["last_tokens"] = last_tokens  # 0 or 1: new tokens = 1 (prefill) + accepted + rounds + this, EOS aside
    stats.update(clock)
    stats.update(block_size=block_size, draft_steps=draft_steps, draft_threshold=gamma, adaptive=adaptive,
                 temperature=temperature, min_draft_confidence=min_confidence,
                 per_position_rollback=cursor.per_position, rollbacks=rollbacks)
    yield done_event(MODE, prompt, torch.tensor([new]), eos, model.config.pad_token_id or 0, nfe, cursor.passes,
                     t_start, t_first, time.perf_counter(), stats)


def _last_token_event(cursor, temperature, generator, top_k, top_p, new: list[int], round_idx: int, nfe: int,
                      t_start: float) -> StepEvent:
    """The last token of the budget from one pass over the unread tokens (drawn from the target's law, as the
    prefill's is), appended to `new`; a row of its own on the board, grey as given, and no round."""
    token, conf = predict_tokens(cursor.read_unread()[None], temperature, generator, top_k, top_p)  # (1,), (1,)
    new.append(int(token[0]))
    return token_event(MODE, len(new) - 1, torch.tensor([[new[-1]]]), conf, cursor.passes,
                       time.perf_counter() - t_start, {"source": "last token"}, commit_step=-1, block=round_idx,
                       nfe=nfe)


def _verify(drafted, target_logits, state: BlockDraft, lead, temperature, top_k, top_p, mask_id, generator
            ) -> tuple[Verdict, torch.Tensor, torch.Tensor]:
    """The verdict, and the target / draft probabilities it was decided on: p (k + 1, V), q (k, V).

    Greedy reports the untempered softmax of both towers (for the UI); sampling uses, and reports, the
    laws the tokens are drawn from, with the same temperature and filters on both sides.
    """
    k = drafted.shape[0]
    commit_logits = state.commit_logits[0, lead:lead + k].to(target_logits.device)  # (k, V)
    if temperature <= 0.0:
        q_logits = commit_logits.clone()
        q_logits[:, mask_id] = float("-inf")
        return greedy_verdict(drafted, target_logits), target_logits.softmax(-1), q_logits.softmax(-1)
    p = sampling_distribution(target_logits, temperature, top_k, top_p)
    device = commit_logits.device
    q = draft_distributions(commit_logits, drafted.to(device), state.commit_step[0, lead:lead + k].to(device),
                            temperature, top_k, top_p, forbid=mask_id)
    return rejection_verdict(drafted, p, q, generator), p, q


def round_probabilities(drafted: torch.Tensor, n: int, token: int, p: torch.Tensor, q: torch.Tensor) -> dict:
    """Every probability a round reports, gathered where p and q live and read back in one copy.

    drafted (k,) on the CPU; p (k + 1, V) the target's laws, q (k, V) the draft's, on one device. Read one
    float() at a time, these were ~25 device syncs a round on a GPU, where a decode pass is launch-bound.
    Returns p_target (k,) — the target's probability of each drafted token — and, at the first rejected
    position n (None after a full acceptance), both towers' probabilities of the drafted and the target's token.
    """
    k = drafted.shape[0]
    rejected = n < k
    draft_token = int(drafted[n]) if rejected else None
    idx = drafted.to(p.device)
    parts = [p[torch.arange(k, device=p.device), idx], p[n, token].reshape(1)]  # (k,), (1,)
    if rejected:
        parts += [q[n, draft_token].reshape(1), q[n, token].reshape(1)]
    values = torch.cat([part.float() for part in parts]).tolist()
    p_target, p_target_of_target = values[:k], values[k]
    return {
        "draft_token": draft_token,
        "p_draft_of_draft": values[k + 1] if rejected else None,
        "p_target_of_draft": p_target[n] if rejected else None,
        "p_draft_of_target": values[k + 2] if rejected else None,
        "p_target_of_target": p_target_of_target,
        "p_target": p_target,
    }


def _verify_info(drafted: torch.Tensor, n: int, token: int, probs: dict) -> dict:
    """What the UI shows for a verification round; probabilities (round_probabilities) at the first rejected
    position, and the target's probability of each drafted token (p_target)."""
    k = drafted.shape[0]
    return {
        "drafted": drafted.tolist(),
        "accepted": n,
        "rejected_pos": n if n < k else None,
        "target_token": token,  # the correction at rejected_pos, or the bonus after a full acceptance
        "bonus": n == k,
        "block_size": k,
        **probs,  # draft_token, p_{draft,target}_of_{draft,target}, p_target
    }


def _commit_event(emitted: list[int], n: int, k: int, state: BlockDraft, lead: int, probs: dict,
                  round_idx: int, generated: int, nfe: int, ctx_passes: int, t_start: float) -> StepEvent:
    """The tokens a round adds to the output: accepted draft tokens, then the target's own token.

    confidence: the target's probability of each (probs: round_probabilities); commit_step: the draft pass
    of accepted tokens, and the verify "step" (number of draft passes) for the target's token.
    """
    m = len(emitted)  # a prefix of drafted[:n] + [the target's token] (cut at EOS)
    ids = torch.tensor([emitted])  # (1, m)
    confidence = torch.tensor([(probs["p_target"][:n] + [probs["p_target_of_target"]])[:m]])
    commit_step = torch.full((1, m), state.step + 1, dtype=torch.long)
    n_kept = min(n, m)
    commit_step[0, :n_kept] = state.commit_step[0, lead:lead + n_kept].cpu()  # n_kept <= k: within the proposal
    return commit_event(MODE, ids, confidence, commit_step, block=round_idx, generated=generated, nfe=nfe,
                        ctx_passes=ctx_passes, elapsed=time.perf_counter() - t_start, just_committed=True,
                        info={"accepted": n, "bonus": n == k})
