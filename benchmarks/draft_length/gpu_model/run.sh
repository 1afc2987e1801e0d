#!/bin/bash
# alternating passes over draft lengths on the shipped (GPU-trained) model; each bench has its own AR baseline
cd /work/main
for pass in 1 2; do
  for S in 3 4 5 6 8 16 adaptive; do
    if [ "$S" = adaptive ]; then extra="--adaptive --block-size 4"; else extra="--block-size $S"; fi
    OMP_NUM_THREADS=1 twotower bench --n-prompts 8 --max-new-tokens 64 --repeats 2 --batch-size 1 --modes speculative $extra --json > runs/ssweep2/p${pass}_$S.json 2>/dev/null
  done
done
echo finished > runs/ssweep2/done
