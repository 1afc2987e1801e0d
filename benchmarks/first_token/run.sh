#!/bin/bash
# alternating old (f2f3ff5) / new (aa8f363) speculative benches, one thread
cd /work/main/runs/first_token
for pair in 1 2; do
  for v in old new; do
    (cd /work/wt_$v && PYTHONPATH=/work/wt_$v OMP_NUM_THREADS=1 python -m twotower.cli bench --modes ar,speculative \
      --n-prompts 8 --max-new-tokens 64 --repeats 3 --batch-size 1 --json) > bench_${v}_$pair.json 2> bench_${v}_$pair.err
  done
done
echo done > finished
