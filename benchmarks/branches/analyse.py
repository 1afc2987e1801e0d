"""Offline: how much would verifying several alternative drafts in one batched pass add to acceptance?

    OMP_NUM_THREADS=1 python benchmarks/branches/analyse.py > benchmarks/branches/analyse.txt

No verify pass runs: greedy verification accepts the longest draft prefix equal to AR's greedy text, so
AR's 64 greedy tokens on the bench's 8 prompts are the target. Each round gives the denoiser the block
[the given token, 16 masks] after the text so far (one pass, as the default speculative setting), reads
its top-2 tokens per position, and scores candidate sets (each candidate: the top-1 draft with one
position's second choice); the run itself follows the top-1 draft, as today's sampler does.
Printed: mean acceptance length (1 + accepted) over rounds, running, per prompt, then over all.
"""
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from twotower.engine import load_engine
from twotower.decoding import generate_ar, draft_block
from twotower.eval_prompts import next_line_items

torch.set_grad_enabled(False)
eng = load_engine(); model = eng.model
mask = model.config.mask_token_id
S = 16
items = next_line_items(8, 0)
res = {}
def accept(branch, target):
    n = 0
    for a, b in zip(branch, target):
        if a != b: break
        n += 1
    return n
strategies = ["top1", "alt_first_low2", "alt_pos123", "alt_low3", "top2_first", "oracle_j_top2"]
tot = {s: [] for s in strategies}
for it in items:
    prompt = eng.tokenizer.encode(it["prompt"])[-512:]
    ar = generate_ar(model, prompt, max_new_tokens=64).new_tokens[0]
    p = 0  # AR[p] is given (prefill token / correction), draft p+1..
    while p < len(ar) - 1:
        cache = model.new_cache(1)
        model.context_forward(torch.tensor([prompt + ar[:p]]), cache)
        ctx = model.context_states(cache)
        tokens = torch.tensor([[ar[p]] + [mask] * S]); masked = torch.arange(S + 1)[None] >= 1
        state = None
        for state in draft_block(model, ctx, tokens, masked, 1, 0.8, keep_commit_logits=True):
            pass
        logits = state.commit_logits[0, 1:].float()
        logits[:, mask] = -1e9
        probs = logits.softmax(-1)
        top = probs.topk(2, -1)
        t1, t2 = top.indices[:, 0].tolist(), top.indices[:, 1].tolist()
        c1 = top.values[:, 0].tolist()
        target = ar[p + 1:p + 1 + S]
        def variant(j):
            b = list(t1); b[j] = t2[j]; return b
        base = accept(t1, target)
        low = sorted(range(S), key=lambda i: c1[i])
        cands = {
            "top1": [t1],
            "top2_first": [t1, variant(0)],
            "alt_first_low2": [t1] + [variant(j) for j in sorted(range(4), key=lambda i: c1[i])[:1]],
            "alt_pos123": [t1, variant(0), variant(1), variant(2)],
            "alt_low3": [t1] + [variant(j) for j in sorted(range(6), key=lambda i: c1[i])[:3]],
            "oracle_j_top2": [t1, variant(base)] if base < S else [t1],
        }
        for s, bs in cands.items():
            tot[s].append(1 + max(accept(b, target) for b in bs))
        p += 1 + base  # the real run follows the top-1 branch
    print(it["prompt"][-30:].replace("\n", "|"), {s: round(sum(v) / len(v), 2) for s, v in tot.items()}, flush=True)
print(json.dumps({s: sum(v) / len(v) for s, v in tot.items()}))
