"""OMP_NUM_THREADS=1 python benchmarks/step_clamp/find_flips.py [N]

Broad search: prompts cut from Python stdlib sources; greedy AR tokens vs argmax of one multi-token pass over
the same text. A disagreement means speculative greedy (which reads text in multi-token passes) can differ from AR."""
import glob, random, sys, sysconfig, torch
torch.set_num_threads(1)
from twotower.engine import load_engine
from twotower import generate_ar
eng = load_engine(); model = eng.model
rng = random.Random(0)
files = sorted(glob.glob(sysconfig.get_paths()["stdlib"] + "/*.py"))  # this interpreter's standard library
N = int(sys.argv[1]) if len(sys.argv) > 1 else 150
count = 0
for trial in range(N):
    src = open(rng.choice(files), encoding="utf-8", errors="replace").read()
    if len(src) < 500: continue
    i = rng.randrange(0, len(src) - 300)
    p = src[i:i + rng.randint(20, 200)]
    if not p.strip(): continue
    ids = eng.encode_prompt(p)
    ar = generate_ar(model, ids, max_new_tokens=64)
    seq = ar.sequences
    with torch.inference_mode():
        full = model.context_forward(seq, model.new_cache(), last_only=False)[0]
    P = len(ids)
    arg = full[P - 1:-1].argmax(-1).tolist()
    new = ar.new_tokens[0]
    d = [j for j, (a, b) in enumerate(zip(arg, new)) if a != b]
    if d:
        count += 1
        print("FLIP trial", trial, "at", d[0], repr(p), flush=True)
print("trials", N, "flips", count, flush=True)
