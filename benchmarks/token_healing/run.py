"""Token healing measured: next-line exact match and edit similarity of the shipped model, healed and not, on
held-out prompts that end inside one of the file's own tokens and on as many that end on a token boundary.

The eval (`twotower eval`) keeps only prompts that end on a token boundary (eval_prompts.ends_on_a_token_boundary);
the ones it passes over are what a prompt typed mid-token looks like. Both groups come from the same next-line
pool (test split, seed 0, in the eval's order), each prompt's last 512 tokens, greedy, 32 new tokens, as the eval.

    python benchmarks/token_healing/run.py --pool 600 --modes ar,diffusion --out benchmarks/token_healing/result.json
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from twotower import metrics  # noqa: E402
from twotower.decoding import drain  # noqa: E402
from twotower.engine import load_engine  # noqa: E402
from twotower.eval_prompts import ends_on_a_token_boundary, next_line_items, prompt_ids  # noqa: E402
from twotower.token_healing import completion_text  # noqa: E402


def score(engine, mode, item, heal):
    ids = prompt_ids(engine, item["prompt"], 512)
    healing = engine.heal(engine.decode(ids), ids) if heal else None
    extra = {"first_token_allowed": healing.allowed} if healing else {}
    result = drain(engine.stream(mode, healing.ids if healing else ids, max_new_tokens=32, temperature=0.0, seed=0,
                                 **extra))
    text = completion_text(engine.decode(result.new_tokens[0]), healing.prefix if healing else "")
    line = metrics.first_line(text)
    return {"exact": metrics.exact_match(line, item["target"]), "edit": metrics.edit_similarity(line, item["target"]),
            "healed": healing is not None}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", type=int, default=600, help="next-line candidates drawn (both groups come from it)")
    parser.add_argument("--modes", default="ar,diffusion")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    engine = load_engine()
    encode = engine.tokenizer.encode
    items = next_line_items(args.pool, encode=None)
    on_boundary = [ends_on_a_token_boundary(encode, it["prompt"], it["target"] + "\n") for it in items]
    mid = [it for it, boundary in zip(items, on_boundary) if not boundary]
    on = [it for it, boundary in zip(items, on_boundary) if boundary][: len(mid)]
    # prompts of one file are alike (the eval resamples files for its intervals): say how many files each group spans
    report = {"pool": args.pool, "groups": {"mid_token": len(mid), "on_boundary": len(on)},
              "files": {"mid_token": len({it["file"] for it in mid}), "on_boundary": len({it["file"] for it in on})},
              "host": platform.processor() or platform.machine(), "python": platform.python_version(),
              "date": time.strftime("%Y-%m-%d"), "results": {}}
    start = time.perf_counter()
    for mode in args.modes.split(","):
        for group, chosen in (("mid_token", mid), ("on_boundary", on)):
            for heal in (False, True):
                rows = [score(engine, mode, item, heal) for item in chosen]
                key = f"{mode}/{group}/{'healed' if heal else 'as_typed'}"
                report["results"][key] = {
                    "exact_match": sum(r["exact"] for r in rows) / len(rows),
                    "edit_similarity": sum(r["edit"] for r in rows) / len(rows),
                    "prompts_healed": sum(r["healed"] for r in rows), "prompts": len(rows)}
                print(key, json.dumps(report["results"][key]), flush=True)
    report["seconds"] = round(time.perf_counter() - start, 1)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
