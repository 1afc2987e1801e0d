"""A context-tower pass over 17 tokens with and without the per-position record speculative rollback uses,
eager and under torch.compile (default model, CPU, one thread), and a 1-token step for scale.

  OMP_NUM_THREADS=1 python benchmarks/compiled_rollback/record_cost.py

Each figure: the mean of 30 passes after 5 warm-ups, from the same restored cache (a 200-token prompt);
three alternations of without / with. The compile happens in the first calls (their time is printed).
"""

import copy
import time

import torch
import torch._dynamo.utils

from twotower.bench import mean_ms
from twotower.compiled import compile_towers
from twotower.engine import load_engine
from twotower.seeded_states import clone_cache_states, restore_cache_states

torch.set_num_threads(1)
engine = load_engine()
eager = engine.model
compiled = compile_towers(copy.deepcopy(eager))
prompt = torch.tensor([engine.encode_prompt(open("README.md").read()[:1500])[-200:]])


with torch.inference_mode():
    for name, model in (("eager", eager), ("compiled", compiled)):
        cache = model.new_cache(1)
        model.context_forward(prompt, cache)
        snapshot = clone_cache_states(cache)
        draft = torch.randint(10, 8000, (1, 17))

        def verify_pass(record):
            restore_cache_states(cache, snapshot)
            cache.position_record = {} if record else None
            model.context_forward(draft, cache, last_only=False)
            out, cache.position_record = cache.position_record, None
            return out

        start = time.time()
        recorded = verify_pass(True)
        verify_pass(False)
        print(f"{name}: first calls {time.time() - start:.1f} s; Mamba layers recorded: {sorted(recorded)}")
        for _ in range(3):
            print(f"{name}: T = 17 without the record {mean_ms(lambda: verify_pass(False), warmup=5):.2f} ms, "
                  f"with it {mean_ms(lambda: verify_pass(True), warmup=5):.2f} ms")
        step = torch.randint(10, 8000, (1, 1))

        def ar_step():
            restore_cache_states(cache, snapshot)
            model.context_forward(step, cache)

        print(f"{name}: T = 1 {mean_ms(ar_step, warmup=5):.2f} ms")
print("graph breaks:", dict(torch._dynamo.utils.counters["graph_break"]))
