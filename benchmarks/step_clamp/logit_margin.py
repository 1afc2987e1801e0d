"""OMP_NUM_THREADS=1 python benchmarks/step_clamp/logit_margin.py [N] > benchmarks/step_clamp/logit_margin.txt

How close speculative's verify logits are to AR's, and how close AR's greedy choices are to a tie. For N prompts
cut from the standard library (find_flips.py's draw), 48 greedy AR steps read one token at a time; the same 48
tokens are then read from the prompt's cache in three 16-token passes, as a verify pass reads a draft. Printed per
prompt: the largest |logit difference| between the two readings and the smallest top-1 - top-2 gap of AR's rows.
A greedy token can differ only where the gap is below the difference."""
import glob, random, sys, sysconfig, torch
torch.set_num_threads(1)
from twotower.engine import load_engine
eng = load_engine(); model = eng.model
rng = random.Random(0)
files = sorted(glob.glob(sysconfig.get_paths()["stdlib"] + "/*.py"))  # this interpreter's standard library
N = int(sys.argv[1]) if len(sys.argv) > 1 else 20
STEPS, PASS = 48, 16
worst_diff, worst_gap, done = 0.0, float("inf"), 0
print(f"torch {torch.__version__}, one thread; {STEPS} AR steps against {STEPS // PASS} passes of {PASS} tokens")
while done < N:
    src = open(rng.choice(files), encoding="utf-8", errors="replace").read()
    if len(src) < 500: continue
    i = rng.randrange(0, len(src) - 300)
    p = src[i:i + rng.randint(20, 200)]
    if not p.strip(): continue
    ids = torch.tensor([eng.encode_prompt(p)])  # (1, P)
    with torch.inference_mode():
        cache = model.new_cache(1)
        row = model.context_forward(ids, cache)[0, -1]  # (V,)
        rows, tokens = [], []
        for _ in range(STEPS):  # AR: row i scores token i; each token then read alone
            rows.append(row)
            tokens.append(int(row.argmax()))
            row = model.context_forward(torch.tensor([[tokens[-1]]]), cache)[0, -1]
        ar = torch.stack(rows[1:])  # (STEPS - 1, V): the rows after each token read alone
        cache = model.new_cache(1)
        model.context_forward(ids, cache)
        seq = torch.tensor([tokens])  # (1, STEPS)
        passes = [model.context_forward(seq[:, j:j + PASS], cache, last_only=False)[0] for j in range(0, STEPS, PASS)]
        multi = torch.cat(passes)[:-1]  # (STEPS - 1, V): the same rows, read in 16-token passes
    diff = (ar - multi).abs().max().item()
    top2 = torch.stack(rows).topk(2, dim=-1).values  # (STEPS, 2)
    gap = (top2[:, 0] - top2[:, 1]).min().item()
    worst_diff, worst_gap, done = max(worst_diff, diff), min(worst_gap, gap), done + 1
    print(f"prompt {done:2d}  max |logit diff| {diff:.2e}  smallest top-2 gap {gap:.4f}", flush=True)
print(f"over {done} prompts: max |logit diff| {worst_diff:.2e}, smallest top-2 gap {worst_gap:.4f}")
