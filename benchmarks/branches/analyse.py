"""Offline: how much would verifying several alternative drafts in one batched pass add to acceptance?

    OMP_NUM_THREADS=1 python benchmarks/branches/analyse.py > benchmarks/branches/analyse.txt

No verify pass runs: greedy verification accepts the longest draft prefix equal to AR's greedy text, so
AR's 64 greedy tokens on the bench's 8 prompts are the target. Each round gives the denoiser the block
[the given token, 16 masks] after the text so far (one pass, as the default speculative setting), reads
its top-2 tokens per position, and scores candidate sets (each candidate: the top-1 draft with one
position's second choice); the run itself follows the top-1 draft, as today's sampler does.
Printed: mean acceptance length (1 + accepted) over rounds, running, per prompt, then over all.
`one_pass_drafts` and `matched_prefix` also serve benchmarks/full_mask/probe.py.
"""
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from twotower.decoding import draft_block  # noqa: E402

S = 16


def matched_prefix(draft: list[int], target: list[int]) -> int:
    """How many leading draft tokens greedy verification accepts against AR's text."""
    n = 0
    for a, b in zip(draft, target):
        if a != b:
            break
        n += 1
    return n


def one_pass_drafts(model, prompt: list[int], ar: list[int], block_size: int = S):
    """Per round of a greedy speculative run over AR's text `ar`: (one-pass draft state, target tokens).

    AR[p] is given (the prefill's token or the last correction); the denoiser drafts p+1 … p+S from a fresh
    context prefill over prompt + AR[:p]; the run advances past the top-1 draft's accepted prefix + 1.
    """
    mask = model.config.mask_token_id
    p = 0
    while p < len(ar) - 1:
        cache = model.new_cache(1)
        model.context_forward(torch.tensor([prompt + ar[:p]]), cache)
        tokens = torch.tensor([[ar[p]] + [mask] * block_size])  # (1, 1 + S)
        masked = torch.arange(block_size + 1)[None] >= 1
        for state in draft_block(model, model.context_states(cache), tokens, masked, 1, 0.8, keep_commit_logits=True):
            pass
        target = ar[p + 1:p + 1 + block_size]
        yield state, target
        p += 1 + matched_prefix(state.tokens[0, 1:].tolist(), target)


def main() -> None:
    from twotower.decoding import generate_ar
    from twotower.engine import load_engine
    from twotower.eval_prompts import next_line_items

    torch.set_grad_enabled(False)
    engine = load_engine()
    model, mask = engine.model, engine.model.config.mask_token_id
    strategies = ["top1", "alt_first_low2", "alt_pos123", "alt_low3", "top2_first", "oracle_j_top2"]
    tot = {s: [] for s in strategies}
    for it in next_line_items(8, 0):
        prompt = engine.tokenizer.encode(it["prompt"])[-512:]
        ar = generate_ar(model, prompt, max_new_tokens=64).new_tokens[0]
        for state, target in one_pass_drafts(model, prompt, ar):
            logits = state.commit_logits[0, 1:].float()  # (S, V)
            logits[:, mask] = -1e9
            top = logits.softmax(-1).topk(2, -1)
            t1, t2 = top.indices[:, 0].tolist(), top.indices[:, 1].tolist()
            c1 = top.values[:, 0].tolist()

            def variant(j):  # the top-1 draft with position j's second choice
                return t1[:j] + [t2[j]] + t1[j + 1:]

            def least_confident(first, k):  # the k least confident of the first `first` positions
                return sorted(range(first), key=lambda i: c1[i])[:k]

            base = matched_prefix(t1, target)
            cands = {
                "top1": [t1],
                "top2_first": [t1, variant(0)],
                "alt_first_low2": [t1] + [variant(j) for j in least_confident(4, 1)],
                "alt_pos123": [t1, variant(0), variant(1), variant(2)],
                "alt_low3": [t1] + [variant(j) for j in least_confident(6, 3)],
                "oracle_j_top2": [t1, variant(base)] if base < S else [t1],
            }
            for s, bs in cands.items():
                tot[s].append(1 + max(matched_prefix(b, target) for b in bs))
        print(it["prompt"][-30:].replace("\n", "|"), {s: round(sum(v) / len(v), 2) for s, v in tot.items()},
              flush=True)
    print(json.dumps({s: sum(v) / len(v) for s, v in tot.items()}))


if __name__ == "__main__":
    main()
