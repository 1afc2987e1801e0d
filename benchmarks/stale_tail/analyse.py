"""Would the rejected draft's tail make a free next draft? Measured offline from speculative runs.

After a round accepts n of k drafted tokens, the context tower's own token c replaces draft position n. The
denoiser's positions n+1 … k−1 were drafted after its own (rejected) token there, yet they may still match the
text that follows c. If they often do, the next round could verify that stale tail without a new denoiser
pass. This replays greedy speculative decoding on held-out prompts (its output is AR's text, so the text that
follows c is known) and counts, per partially accepted round, how many stale-tail tokens match it.

  PYTHONPATH=. python benchmarks/stale_tail/analyse.py [n_prompts] [block_size]
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "branches"))
from analyse import matched_prefix  # noqa: E402  (benchmarks/branches/analyse.py)
from twotower.engine import load_engine  # noqa: E402
from twotower.eval_prompts import next_line_items, prompt_ids  # noqa: E402


def main() -> None:
    n_prompts = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    block_size = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    engine = load_engine()
    fresh, stale, tails = [], [], Counter()
    for item in next_line_items(n_prompts, 0):
        ids = prompt_ids(engine, item["prompt"], 512)
        events = list(engine.stream("speculative", ids, max_new_tokens=64, block_size=block_size, stop_at_eos=False))
        text = events[-1].sequences[0, len(ids):].tolist()  # = AR's greedy text
        for ev in events:
            if ev.kind != "verify":
                continue
            drafted, n, start = ev.tokens[0].tolist(), ev.info["accepted"], ev.generated
            fresh.append(n)
            if n + 1 >= len(drafted):
                continue  # fully accepted, or rejected at the last position: no tail left
            tail = drafted[n + 1:]
            m = matched_prefix(tail, text[start + n + 1:])
            stale.append(m)
            tails[min(m, 4)] += 1
    rounds = len(fresh)
    print(f"{n_prompts} prompts x 64 tokens, S = {block_size}, 1 draft pass, greedy: {rounds} rounds")
    print(f"fresh draft: mean accepted {sum(fresh) / rounds:.2f} (acceptance length {1 + sum(fresh) / rounds:.2f})")
    print(f"stale tail after a partial acceptance ({len(stale)} rounds): mean matching prefix "
          f"{sum(stale) / len(stale):.2f}; share by length " +
          ", ".join(f"{k if k < 4 else '4+'}: {v / len(stale):.2f}" for k, v in sorted(tails.items())))


if __name__ == "__main__":
    main()
