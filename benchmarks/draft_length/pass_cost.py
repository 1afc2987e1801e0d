"""Cost of one context-tower pass over T tokens and one denoiser pass over T positions, default model, CPU.

  OMP_NUM_THREADS=1 python benchmarks/draft_length/pass_cost.py

Each pass starts from the same cache (a 200-token prompt, restored before every pass); 3 warm-ups, then the
mean of 30. Then torch.profiler's op table for a 1-token and a 17-token context pass (10 each).
"""


import torch
from torch.profiler import ProfilerActivity, profile

from twotower.bench import mean_ms
from twotower.engine import load_engine
from twotower.seeded_states import clone_cache_states, restore_cache_states

torch.set_num_threads(1)
engine = load_engine()
model = engine.model
prompt = torch.tensor([engine.encode_prompt(open("README.md").read()[:1500])[-200:]])
cache = model.new_cache(1)


with torch.inference_mode():
    model.context_forward(prompt, cache)
    snapshot = clone_cache_states(cache)

    def context_pass(t):
        restore_cache_states(cache, snapshot)
        return model.context_forward(torch.randint(10, 8000, (1, t)), cache, last_only=(t == 1))

    for t in (1, 2, 4, 8, 17):
        print(f"context pass, T = {t:2d}: {mean_ms(lambda: context_pass(t)):.2f} ms")
    restore_cache_states(cache, snapshot)
    ctx = model.context_states(cache)
    for t in (1, 4, 8, 16):
        block = torch.full((1, t), model.config.mask_token_id)
        print(f"denoiser pass, T = {t:2d}: {mean_ms(lambda: model.denoise(block, ctx, torch.ones(1))):.2f} ms")
    for t in (1, 17):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(10):
                context_pass(t)
        print(f"context pass, T = {t}, 10 passes:")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=6))
