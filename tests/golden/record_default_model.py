"""Record the shipped model's numerics that tests/test_default_model.py checks on every run.

  OMP_NUM_THREADS=1 python tests/golden/record_default_model.py      (writes default_model.json beside it)

Run it only when assets/default changes on purpose. The test exists because the model card's figures hold
only while the model computes what it computed when they were measured, and what it computes also depends on
transformers, whose NemotronH internals move between minor versions (5.25 changed the Mamba step's clamp,
which moved the default model's logits by up to 8e-4 before twotower.hf_compat pinned it back).
"""

import json
from pathlib import Path

import torch

from twotower.decoding import generate_ar, generate_mask_diffusion
from twotower.engine import load_engine

OUT = Path(__file__).with_name("default_model.json")
PROMPTS = {
    # over 64 tokens: the prefill takes transformers' chunk scan, not the short scan
    "long": ('import os\nimport sys\n\n\nclass Config:\n    """Settings read from the environment."""\n\n'
             '    def __init__(self, prefix="APP_"):\n        self.prefix = prefix\n        self.values = {}\n'
             '        for key, value in os.environ.items():\n            if key.startswith(prefix):\n'
             '                self.values[key[len(prefix):].lower()] = value\n\n    def get(self, name, default=None):\n'),
    "short": "import os\nimport sys\n\n\ndef main(",
}
TOP = 32  # context logits recorded: the top ids and their values
DEN_POSITIONS, DEN_TOP = 4, 8  # denoiser: the first positions of a fully masked block, their top ids


def compute(engine, text: str) -> dict:
    """The next token's context logits (V,), a fully masked block's first denoiser rows (P, V), and 16
    greedy tokens of AR and of diffusion at the model's defaults."""
    model, cfg = engine.model, engine.model.config
    ids = engine.encode_prompt(text)
    with torch.inference_mode():
        cache = model.new_cache(1)
        context = model.context_forward(torch.tensor([ids]), cache).reshape(-1)  # (V,)
        block = torch.full((1, cfg.default_block_size), cfg.mask_token_id)
        denoiser = model.denoise(block, model.context_states(cache), torch.ones(1))[0, :DEN_POSITIONS]  # (P, V)
    ar = generate_ar(model, ids, max_new_tokens=16)
    diffusion = generate_mask_diffusion(model, ids, max_new_tokens=16, block_size=cfg.default_block_size,
                                        steps_per_block=cfg.default_steps_per_block,
                                        confidence_threshold=cfg.default_gamma)
    return {"n_prompt_tokens": len(ids), "context": context, "denoiser": denoiser,
            "ar_tokens": ar.new_tokens[0], "diffusion_tokens": diffusion.new_tokens[0]}


def snapshot(engine, text: str) -> dict:
    got = compute(engine, text)
    top, den_top = got["context"].topk(TOP), got["denoiser"].topk(DEN_TOP, dim=-1)
    return {"prompt": text, "n_prompt_tokens": got["n_prompt_tokens"],
            "context_ids": top.indices.tolist(), "context_logits": [round(v, 6) for v in top.values.tolist()],
            "denoiser_ids": den_top.indices.tolist(),
            "denoiser_logits": [[round(v, 6) for v in row] for row in den_top.values.tolist()],
            "ar_tokens": got["ar_tokens"], "diffusion_tokens": got["diffusion_tokens"]}


def main() -> None:
    torch.set_num_threads(1)
    engine = load_engine()
    record = {name: snapshot(engine, text) for name, text in PROMPTS.items()}
    # the test compares logits at 1e-4 and tokens exactly on any CPU: the other weight layout, whose products
    # round differently (~1e-5 here), must give the same tokens, or a prompt sits too near a tie to record
    twin = load_engine(input_major=False)
    for name, text in PROMPTS.items():
        other = snapshot(twin, text)
        for key in ("ar_tokens", "diffusion_tokens", "context_ids", "denoiser_ids"):
            assert other[key] == record[name][key], (name, key)
    OUT.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {OUT}: " + ", ".join(f"{k} ({v['n_prompt_tokens']} prompt tokens)" for k, v in record.items()))


if __name__ == "__main__":
    main()
