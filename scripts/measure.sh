#!/usr/bin/env bash
# Re-measure the default model and rewrite what quotes it: benchmarks/*.json, BENCHMARKS.md, the README's
# measured tables and the model card (assets/default/README.md). One thread per process, as the tables say.
# On this project's 2-core host the three evals whose wall time was noted took 7-20 minutes each (two worker
# processes; fp32, denoiser-bf16, bf16), the timed runs 27-37 minutes (26 on the Intel Xeon of 2026-12-06): a full
# run takes about an hour or more.
#   bash scripts/measure.sh            # everything
#   SKIP_EVAL=1 bash scripts/measure.sh  # keep benchmarks/eval_*.json (the model did not change)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
# the interpreter the other scripts use (a Debian host may have no bare `python`); its console script need not be
# on PATH
twotower() { "${PYTHON:-python3}" -m twotower.cli "$@"; }
# Everything is written under runs/measure first and copied into benchmarks/ at the end: a tracked file
# rewritten mid-run would mark the commit the reports record as "-dirty".
out=runs/measure
mkdir -p benchmarks "$out"
if [ -z "${SKIP_EVAL:-}" ]; then
  # Quality runs time nothing: each spreads its prompts over two worker processes (the same report as one
  # process, benchmarks/eval_workers/), one eval at a time; each has AR as its baseline.
  # (the options after --json, as the published reports' commands have them)
  evaluate() { local name=$1; shift; twotower eval --workers 2 --n-prompts 500 --syntax-prompts 100 --json "$@" \
    > "$out/$name.json"; }
  evaluate eval_diffusion --modes ar,diffusion
  evaluate eval_mock_ar --modes ar,mock_ar
  # bf16 compute (the checkpoint's own dtype): faster multi-token passes on CPUs with native bf16 matmuls;
  # and bf16 for the denoiser alone: the context tower (AR, the speculative verifier) stays fp32.
  evaluate eval_bf16_diffusion --dtype bf16 --modes ar,diffusion
  evaluate eval_mixed_diffusion --den-dtype bf16 --modes ar,diffusion
  # the anchored-diffusion variant (each block's first token from the context tower)
  evaluate eval_anchor_diffusion --anchor-first --modes ar,diffusion
else
  cp benchmarks/eval_*.json "$out"/  # the two the card reads, and the variants measured on this model
fi
# Timed runs: one at a time.
twotower bench --n-prompts 8 --max-new-tokens 64 --repeats 3 --batch-size 4 --json > "$out"/bench.json
twotower bench --modes ar,speculative --draft-steps 2 --n-prompts 8 --max-new-tokens 64 --repeats 2 --batch-size 1 \
  --json > "$out"/bench_speculative_2pass.json
twotower bench --modes ar,speculative --draft-steps 1 --block-size 8 --n-prompts 8 --max-new-tokens 64 --repeats 2 \
  --batch-size 1 --json > "$out"/bench_speculative_1pass_s8.json
twotower bench --modes ar,speculative --adaptive --n-prompts 8 --max-new-tokens 64 --repeats 2 --batch-size 1 \
  --json > "$out"/bench_speculative_adaptive.json
twotower bench --modes ar,speculative --min-draft-confidence 0.2 --n-prompts 8 --max-new-tokens 64 --repeats 2 \
  --batch-size 1 --json > "$out"/bench_speculative_cut.json
# the rollback's reference twin: restore a snapshot and re-read the kept tokens (the fallback where a pass records no per-position states)
twotower bench --modes ar,speculative --snapshot-rollback --n-prompts 8 --max-new-tokens 64 --repeats 2 \
  --batch-size 1 --json > "$out"/bench_speculative_snapshot.json
twotower bench --dtype bf16 --n-prompts 8 --max-new-tokens 64 --repeats 3 --batch-size 4 --json > "$out"/bench_bf16.json
twotower bench --den-dtype bf16 --n-prompts 8 --max-new-tokens 64 --repeats 3 --batch-size 4 --json \
  > "$out"/bench_mixed.json
twotower bench --anchor-first --modes ar,diffusion --n-prompts 8 --max-new-tokens 64 --repeats 3 --batch-size 4 \
  --json > "$out"/bench_anchor.json
# torch.compile over both towers' decode passes (the compile happens in the untimed warm-up)
twotower bench --compile --n-prompts 8 --max-new-tokens 64 --repeats 3 --batch-size 4 --json > "$out"/bench_compiled.json
twotower bench --compile --den-dtype bf16 --n-prompts 8 --max-new-tokens 64 --repeats 3 --batch-size 4 --json \
  > "$out"/bench_compiled_mixed.json
twotower sweep --gammas 0.3,0.5,0.7,0.8,0.9 --block-sizes 4,8,16 --n-prompts 6 --max-new-tokens 48 \
  --out-dir runs/measure/sweep --json > "$out"/sweep.json
for report in "$out"/eval_*.json "$out"/bench*.json "$out"/sweep.json; do  # each a whole JSON report
  "${PYTHON:-python3}" -c 'import json, sys; json.load(open(sys.argv[1]))' "$report" || { echo "not a JSON report: $report" >&2; exit 1; }
done
cp "$out"/eval_*.json "$out"/bench*.json "$out"/sweep.json "$out"/sweep/sweep.csv benchmarks/
out=benchmarks
PREVIOUS=${PREVIOUS-benchmarks/cpu_model_20261204}  # the model shipped before this one: the card compares
UNSHIPPED=${UNSHIPPED-}  # a trained model the card records but does not ship (a lease's folder)
# the reports this model has (one shipped since the last full run may lack the variants it was not measured on)
existing() { for f in "$@"; do if [ -s "$out/$f.json" ]; then echo "$out/$f.json"; fi; done; }
mapfile -t bench_extras < <(existing bench_speculative_2pass bench_speculative_1pass_s8 bench_speculative_adaptive \
  bench_speculative_cut bench_speculative_snapshot bench_bf16 bench_mixed bench_compiled bench_compiled_mixed bench_anchor)
mapfile -t eval_extras < <(existing eval_bf16_diffusion eval_mixed_diffusion eval_anchor_diffusion)
"${PYTHON:-python3}" scripts/write_benchmarks.py --bench "$out"/bench.json --bench-extra "${bench_extras[@]}" \
  --eval "$out"/eval_diffusion.json "$out"/eval_mock_ar.json --eval-extra "${eval_extras[@]}" \
  --sweep "$out"/sweep.json \
  --intro "${INTRO:-benchmarks/intro.md}" --readme README.md > /dev/null
"${PYTHON:-python3}" scripts/model_card.py --model assets/default --eval "$out"/eval_diffusion.json "$out"/eval_mock_ar.json \
  --bench "$out"/bench.json ${PREVIOUS:+--previous "$PREVIOUS"} ${UNSHIPPED:+--unshipped "$UNSHIPPED"} > /dev/null
echo "wrote BENCHMARKS.md and assets/default/README.md"
