"""A seeded random search over the samplers' settings, checking on every run what must hold whatever the settings.

Each case draws a tiny random model (tests/tiny_models.py), a prompt (length 1..40, a batch of 1..4 where the mode
takes one), a mode and its settings (max_new_tokens 1..70, S 1..40, steps 1..S+3, γ at its edges, greedy or
sampled with top-k / top-p, seeds at their edges, EOS off / an id the model emits / scripted with force_tokens,
speculative's draft passes, adaptive length, proposal cut and rollback path, diffusion's anchor), drains the
events and checks them (`check_events`): the done event's tokens are what the block / token events added, in
order, cut after the first EOS with padding behind it; ids within the vocabulary, no mask id where the denoiser
committed; the stopping rule; the commit rule pass by pass (at least one commit per pass, at most
steps_per_block passes, committed tokens never change, exactly `select_commits` of the event's confidences);
the statistics against the events (nfe, context passes, tokens per pass, speculative's acceptance counts and
pass split); speculative's round structure and draft-length schedule. Then twin runs (`check_twins`): same seed
→ same output; EOS only cuts the run without it; greedy speculative = greedy AR; mock-AR = diffusion with S = 1;
anchored S = 1 = AR; top_k = 1 sampling = greedy; a greedy batch row = that row run alone; greedy runs against
cache-free references (AR / speculative: one full context pass; diffusion / mock-AR: every denoiser pass over a
context rebuilt from scratch); sampled AR / speculative tokens inside the support of the filtered target law.
Greedy twins computed from differently shaped passes may part at a near-tie (two probabilities equal to ~1e-9,
seen on the near-uniform "plain" model's batch rows): such a tie is counted, not reported (`event_tie`,
`context_tie`).

The per-run checks live in tests/sampler_checks.py. The test runs a small fixed sample; the full search is this
file run as a script:
    OMP_NUM_THREADS=1 python tests/test_sampler_invariants.py --cases 400 [--seed 0]
which prints every violation with the case that showed it.
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tiny_models, when run as a script
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tiny_models import VOCAB, force_tokens  # noqa: E402
from twotower.commit import predict_tokens, sampling_distribution, select_commits  # noqa: E402
from twotower.validation import SEED_LIMIT  # noqa: E402

from sampler_checks import (MODES, Patch, Violations, check_events, cut, draw_case, model_for,  # noqa: E402
                            run)

def forced_script(rng: random.Random, case: dict, eos: int) -> list:
    """Per row, the token every pass predicts with certainty: random bytes, EOS now and then."""
    n = 2 * case["max_new"] + 4
    rate = rng.choice([0.05, 0.2, 0.5])
    return [[eos if rng.random() < rate else rng.randrange(5, VOCAB) for _ in range(n)] for _ in case["prompt"]]


def run_case(case: dict, tally: Counter | None = None) -> list[str]:
    """Run one case and its twins; every violation as a line."""
    tally = Counter() if tally is None else tally
    v = Violations()
    rng = random.Random(case["index"] * 7919 + 1)
    model = model_for(*case["model"])
    mode = case["mode"]
    # the context tower's own tokens (AR, speculative's target tokens, an anchor) may be any id, the mask's too
    denoiser_only = mode == "mock_ar" or (mode == "diffusion" and not case["anchor"])
    eos, free, script = case["eos"], None, None
    patch = Patch()
    if eos == "forced":
        eos = rng.choice([model.config.eos_token_id, rng.randrange(5, VOCAB)])
        script = forced_script(rng, case, eos)
        tally["eos forced"] += 1

    def go(eos, **override):
        """A run of the case (or a twin); scripted towers count their passes afresh for each run."""
        patch.undo()
        if script is not None:
            force_tokens(patch, model, script)
        return run(case, model, eos, **override)

    try:
        if eos == "often":
            free = go(None)
            check_events(case, free, None, model, v, denoiser_only)
            row0 = free[-1].info["new_tokens"][0]
            eos = rng.choice(row0)  # a token the model does emit, weighted by how often
        events = go(eos)
        rows = check_events(case, events, eos, model, v, denoiser_only)
        if not rows:
            return [f"case {case['index']}: {line}" for line in v]
        tally[f"mode {mode}"] += 1
        tally["the mask id from the context tower"] += any(model.config.mask_token_id in r for r in rows)
        tally["stopped at EOS"] += eos is not None and any(r and r[-1] == eos for r in rows)
        if free is not None:  # EOS only stops a run: its tokens are the free run's, cut (any temperature, seeded)
            if case["temperature"] == 0 or case["seed"] is not None:
                want = [cut(r, eos) for r in free[-1].info["new_tokens"]]
                v.expect(rows == want, f"EOS {eos} changed the tokens: {rows} != free run cut {want}")
        check_twins(case, model, go, eos, events, rows, v, tally)
    finally:
        patch.undo()
    return [f"case {case['index']}: {line}" for line in v]


def check_twins(case, model, go, eos, events, rows, v: Violations, tally: Counter):
    """Runs that must give the same tokens as this one (go: run the case with settings overridden)."""
    mode, sampled = case["mode"], case["temperature"] > 0
    done = events[-1]
    if sampled and case["seed"] is not None:  # same seed, same output; another seed usually differs
        again = go(eos)[-1]
        v.expect(torch.equal(again.sequences, done.sequences) and again.stats["nfe"] == done.stats["nfe"],
                 "same seed, another output")
        other = go(eos, seed=(case["seed"] + 1) % SEED_LIMIT)[-1]
        if case["eos"] != "forced":  # scripted towers are certain: every seed draws the same
            tally["seeded reruns"] += 1
            tally["another seed differs"] += not torch.equal(other.sequences, done.sequences)
            if case["temperature"] >= 0.7 and case["top_k"] != 1 and (case["top_p"] or 1) >= 0.5 and len(rows[0]) >= 8:
                hot = f"hot {mode} {case['model'][0]}"  # where a seed should matter: warm, unfiltered, long
                tally[f"{hot}: reruns"] += 1
                tally[f"{hot}: another seed differs"] += not torch.equal(other.sequences, done.sequences)
    if mode == "speculative" and not sampled:  # greedy speculative is greedy AR, token for token
        ar = go(eos, mode="ar")[-1].info["new_tokens"]
        if ar != rows and context_tie(model, case["prompt"][0], rows[0], ar[0]):
            tally["speculative vs AR: rounding tie"] += 1
        else:
            v.expect(ar == rows, f"greedy speculative {rows} != greedy AR {ar}")
        tally["speculative = AR"] += 1
    if not sampled and case["eos"] != "forced":  # against cache-free references, recomputed from scratch
        check_reference(case, model, events, rows, v, tally)
    if sampled and mode in ("ar", "speculative") and case["eos"] != "forced":
        check_support(case, model, rows, v, tally)
    same_draws = not sampled or case["seed"] is not None  # unseeded sampling: no twin to compare with
    if mode == "mock_ar" and same_draws:  # diffusion with one-token blocks, any γ, same draws
        twin = go(eos, mode="diffusion", S=1, steps=1, gamma=case.get("gamma", 0.37), anchor=False)[-1]
        v.expect(twin.info["new_tokens"] == rows, "mock-AR != diffusion with S = 1")
        tally["mock-AR = diffusion S=1"] += 1
    if mode == "diffusion" and case["anchor"] and case["S"] == 1 and same_draws:  # every token an anchor: AR, same draws
        ar = go(eos, mode="ar")[-1]
        v.expect(ar.info["new_tokens"] == rows, "anchored S = 1 != AR")
        tally["anchored S=1 = AR"] += 1
    if sampled and case["top_k"] == 1 and same_draws:  # one token left per position: greedy's
        greedy = go(eos, temperature=0.0, seed=None)[-1]
        v.expect(greedy.info["new_tokens"] == rows, "top_k = 1 sampling != greedy")
        tally["top_k=1 = greedy"] += 1
    if not sampled and len(case["prompt"]) > 1 and case["eos"] != "forced":  # rows are independent
        for b, prompt in enumerate(case["prompt"]):
            alone = go(eos, prompt=[prompt])
            if alone[-1].info["new_tokens"][0] != rows[b] and event_tie(events, b, alone):
                tally["batch row vs alone: rounding tie"] += 1
                continue
            v.expect(alone[-1].info["new_tokens"][0] == rows[b], f"batch row {b} != the row run alone")
        tally["batch rows = alone"] += 1


@torch.no_grad()
def check_reference(case, model, events, rows, v: Violations, tally: Counter):
    """Greedy runs against twins with no cache: AR's tokens are the argmax of one full pass over prompt + output;
    each diffusion / mock-AR pass is the denoiser over a context tower run afresh over everything committed."""
    mode, mask_id = case["mode"], model.config.mask_token_id
    prompt = torch.tensor(case["prompt"])
    if mode in ("ar", "speculative"):
        for b, row in enumerate(rows):
            logits = model.context_forward(torch.cat([prompt[b], torch.tensor(row[:-1], dtype=torch.long)])[None],
                                           None, last_only=False)[0, prompt.shape[1] - 1:]
            want = logits.argmax(-1).tolist()
            if want != row:
                i = next(j for j, (a, c) in enumerate(zip(want, row)) if a != c)
                probs = logits[i].softmax(-1)
                if abs(float(probs[want[i]]) - float(probs[row[i]])) < TIE:
                    tally[f"{mode} vs full pass: rounding tie"] += 1
                    return
                v.expect(False, f"row {b} token {i}: {row[i]}, the cache-free argmax is {want[i]}")
                return
        tally[f"{mode} = full pass"] += 1
        return
    if mode == "diffusion" and case["anchor"]:
        return
    S, steps, gamma = (1, 1, 1.0) if mode == "mock_ar" else (case["S"], case["steps"], case["gamma"])
    seq = prompt.clone()
    step_events = iter(e for e in events if e.kind == "step")
    for block in (e for e in events if e.kind == "block"):
        size = block.tokens.shape[1]
        tokens = torch.full((prompt.shape[0], size), mask_id)
        masked = torch.ones_like(tokens, dtype=torch.bool)
        conf = torch.zeros(tokens.shape)
        cache = model.new_cache(prompt.shape[0])
        model.context_forward(seq, cache)
        ctx = model.context_states(cache)
        for step in range(steps):
            if not masked.any():
                break
            logits = model.denoise(tokens, ctx, masked.float().mean(-1))
            pred, pconf = predict_tokens(logits, forbid=mask_id)
            conf = torch.where(masked, pconf, conf)
            commit = select_commits(conf, masked, gamma, steps - step)
            tokens, masked = torch.where(commit, pred, tokens), masked & ~commit
            e = next(step_events, None)
            if e is None or not (torch.equal(e.tokens, tokens) and torch.equal(e.committed, commit)):
                if e is not None and torch.allclose(e.confidence, conf, rtol=0.0, atol=TIE):
                    tally[f"{mode} vs cache-free: rounding tie"] += 1
                else:
                    v.expect(False, f"block {block.block} pass {step} differs from the cache-free twin")
                return
        seq = torch.cat([seq, tokens], dim=1)
    tally[f"{mode} = cache-free"] += 1


@torch.no_grad()
def check_support(case, model, rows, v: Violations, tally: Counter):
    """Sampled AR and speculative tokens are draws from the context tower's tempered, filtered law (speculative:
    accepted only where p > 0, corrections from max(0, p - q), bonuses from p): each token must lie in that law's
    support, read off one full pass. Filters are widened by rounding (top-k ties, top-p + 1e-4): the cached
    passes round differently from the full one."""
    top_k, top_p = case["top_k"] or None, case["top_p"]
    prompt = torch.tensor(case["prompt"])
    for b, row in enumerate(rows):
        ids = torch.cat([prompt[b], torch.tensor(row[:-1], dtype=torch.long)])[None]
        logits = model.context_forward(ids, None, last_only=False)[0, prompt.shape[1] - 1:].float()
        allowed = torch.ones_like(logits, dtype=torch.bool)
        if top_p is not None and top_p < 1.0:
            allowed &= sampling_distribution(logits, case["temperature"], None, min(1.0, top_p + 1e-4)) > 0
        if top_k is not None and top_k < logits.shape[-1]:
            kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
            allowed &= logits >= kth - 1e-4 * kth.abs().clamp_min(1.0)
        outside = [i for i, t in enumerate(row) if not allowed[i, t]]
        v.expect(not outside, f"row {b}: tokens {[(i, row[i]) for i in outside]} outside the filtered law's support")
    tally[f"{case['mode']} sampled within the filters"] += 1


# Greedy twins that take their decisions from differently shaped passes (a batch against one row, a verify pass
# against 1-token steps) round differently, by an ulp or so: where two candidates' probabilities tie to that
# precision either may win. These helpers tell such a tie from a real divergence.
TIE = 1e-5


def event_tie(events: list, b: int, alone: list) -> bool:
    """Did batch row b and its run alone first part where their confidences agree to rounding (a near-tie)?"""
    batch = {(e.kind, e.block, e.step): e for e in events if e.kind in ("step", "token")}
    for e in alone:
        other = batch.get((e.kind, e.block, e.step))
        if e.kind not in ("step", "token") or other is None:
            continue
        if not (torch.equal(e.tokens[0], other.tokens[b]) and torch.equal(e.committed[0], other.committed[b])):
            return torch.allclose(e.confidence[0], other.confidence[b], rtol=0.0, atol=TIE)
    return False


@torch.no_grad()
def context_tie(model, prompt: list, ours: list, theirs: list) -> bool:
    """Where two greedy continuations first part, are the context tower's two best probabilities a near-tie?"""
    i = next((j for j, (a, b) in enumerate(zip(ours, theirs)) if a != b), None)
    if i is None:
        return False
    probs = model.context_forward(torch.tensor([prompt + ours[:i]]), None)[0, -1].float().softmax(-1)
    return abs(float(probs[ours[i]]) - float(probs[theirs[i]])) < TIE


def search(cases: int, seed: int = 0, verbose: bool = False, modes=MODES, longest: int = 70
           ) -> tuple[list[str], Counter]:
    rng, tally, found = random.Random(seed), Counter(), []
    for index in range(cases):
        case = draw_case(rng, index, modes, longest)
        try:
            lines = run_case(case, tally)
        except Exception as exc:  # a sampler that raises on valid settings is a violation too
            lines = [f"case {index}: raised {type(exc).__name__}: {exc}"]
        if lines:
            found.append(f"{case}\n  " + "\n  ".join(lines[:8]))
        if verbose:
            print(index, case["mode"], "FAIL" if lines else "ok", flush=True)
    return found, tally


# ------------------------------------------------------------------------------------------------- the tests
def test_sampler_invariants_hold_over_a_seeded_sample():
    """A small fixed sample of the search: every invariant on every run, and the paths it means to reach."""
    found, tally = search(40, seed=2026, longest=40)  # ~20 s on one thread
    assert not found, "\n".join(found)
    for path in ("mode diffusion", "mode speculative", "mode mock_ar", "mode ar", "stopped at EOS", "eos forced",
                 "seeded reruns", "speculative = AR", "batch rows = alone", "mock-AR = diffusion S=1",
                 "top_k=1 = greedy", "ar = full pass", "diffusion = cache-free", "mock_ar = cache-free"):
        assert tally[path] > 0, f"the sample never reached: {path} ({dict(tally)})"
    assert tally["another seed differs"] >= tally["seeded reruns"] // 2, dict(tally)


if __name__ == "__main__":
    import argparse
    import time

    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description="the full seeded search over the samplers' invariants")
    parser.add_argument("--cases", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated, e.g. speculative,ar")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    found, tally = search(args.cases, args.seed, args.verbose, tuple(args.modes.split(",")))
    print(f"{args.cases} cases in {time.perf_counter() - start:.0f} s; {len(found)} with violations")
    print(dict(sorted(tally.items())))
    for line in found:
        print(line)
