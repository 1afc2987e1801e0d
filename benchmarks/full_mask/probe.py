"""Probe a model directory on the bench's 8 prompts (test split, seed 0), greedy, one thread:

    OMP_NUM_THREADS=1 python benchmarks/full_mask/probe.py MODEL_DIR

draft_acceptance: mean acceptance length per round of one-pass S = 16 drafts after a given token, scored
against AR's greedy text (what greedy verification accepts; the rounds of benchmarks/branches/analyse.py);
diffusion_tokens_per_pass: diffusion at γ = 0.8, S = 16, 64 tokens with EOS ignored (the bench's setting);
agreement: share of diffusion's tokens equal to AR's at the same position. The tokenizer is the shipped one.
"""
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks" / "branches")]
from analyse import matched_prefix, one_pass_drafts  # noqa: E402
from twotower.checkpoint import from_pretrained  # noqa: E402
from twotower.decoding import generate_ar, generate_mask_diffusion  # noqa: E402
from twotower.eval_prompts import next_line_items  # noqa: E402
from twotower.tokenizer import SentencePieceTokenizer  # noqa: E402

torch.set_grad_enabled(False)
model = from_pretrained(sys.argv[1]).float().eval()
tok = SentencePieceTokenizer(str(ROOT / "assets/default/tokenizer.model"))
acc, tpp_tok, tpp_nfe, agree = [], 0, 0, []
for it in next_line_items(8, 0):
    prompt = tok.encode(it["prompt"])[-512:]
    ar = generate_ar(model, prompt, max_new_tokens=64).new_tokens[0]
    d = generate_mask_diffusion(model, prompt, max_new_tokens=64, block_size=16, steps_per_block=16,
                                confidence_threshold=0.8)
    tpp_tok += len(d.new_tokens[0])
    tpp_nfe += d.stats["nfe"]
    agree.append(sum(a == b for a, b in zip(d.new_tokens[0], ar)) / len(ar))
    acc += [1 + matched_prefix(state.tokens[0, 1:].tolist(), target) for state, target in one_pass_drafts(model, prompt, ar)]
print(json.dumps({"model": sys.argv[1], "draft_acceptance": round(sum(acc) / len(acc), 3),
                  "diffusion_tokens_per_pass": round(tpp_tok / tpp_nfe, 3), "agreement": round(sum(agree) / len(agree), 3)}))
