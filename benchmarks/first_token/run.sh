#!/bin/bash
# The record of how the bench_*.json beside it were made on 2026-12-04: two git worktrees of this repository,
# /work/wt_old at f2f3ff5 (before the change) and /work/wt_new at aa8f363 (after it), benched alternately, one
# thread a run, each bench importing its own worktree's code (PYTHONPATH); outputs went to runs/first_token.
cd /work/main/runs/first_token
for pair in 1 2; do
  for v in old new; do
    (cd /work/wt_$v && PYTHONPATH=/work/wt_$v OMP_NUM_THREADS=1 python -m twotower.cli bench --modes ar,speculative \
      --n-prompts 8 --max-new-tokens 64 --repeats 3 --batch-size 1 --json) > bench_${v}_$pair.json 2> bench_${v}_$pair.err
  done
done
echo done > finished
