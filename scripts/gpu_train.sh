#!/usr/bin/env bash
# On a lent GPU, in one call (the device budget is ~15 minutes in all, at most 10 a command): a two-step smoke of
# both stages (a CUDA-only bug costs seconds, not the budget), then the `gpu` profile on wall-clock budgets
# (twotower train --minutes), the export, and the exported model back under $OUT as a tar in <= 15 MB parts.
#   here:   bash scripts/gpu_prepare.sh
#   device: run(command="bash scripts/gpu_train.sh", carry=[".gpu"], timeout_s=600)
#   here:   bash scripts/gpu_unpack.sh <files_at> runs/gpu_export    then evaluate it on the CPU (twotower eval --model)
# CTX_MIN / DEN_MIN (minutes of training loop per stage), DISTILL_SHARE (share of a batch distilled),
# DISTILL_FROM (the share of stage 2's time, in [0, 1), before distillation starts), DISTILL_BATCHES (steps
# one distillation run generates ahead), SMOKE_DISTILL_SHARE, DEVICE, PROFILE override; BATCH sets both stages'
# windows per step (the profile's 64 by default; see BATCH below); OUT (what comes back), RUN (the run folder),
# CALL_LIMIT_S (the call's limit: training that cannot fit is refused up front), BENCH=0 (no GPU bench; a
# bench that fails or runs out of time does not fail the script: the export is already under OUT), CONTINUE=1
# (with CTX_FROM: train that export's denoiser on instead of a fresh copy of its context tower), LR (peak lr).
# First run on an H200, 2026-12-04 (benchmarks/gpu_lease_20261204/): 555 s in all; the smoke took 105 s (44 of
# them one distillation run of 8 batches ahead), context 3 min = 964 steps (val 1.71), denoiser 3 min = only
# 108 steps: each step spent ~0.65 s in per-block context-tower passes (since 2bff72f one pass per window,
# benchmarks/train_step/), and its one distillation run (~36 s) came just before the budget ran out. Hence
# now: a cheaper smoke (1 batch ahead), and half a minute moved from the context tower to the denoiser.
# Second lease, same day (benchmarks/gpu_lease_20261204_2/): `CTX_FROM=runs/gpu_export bash scripts/gpu_prepare.sh`
# (the first lease's context tower) with the shipped weights moved out of the tree for the call, then
# DEN_MIN=7.5 DISTILL_FROM=0.6 DISTILL_BATCHES=48 SMOKE_DISTILL_SHARE=0 BENCH=0: 516 s in all; stage 2 ran at
# ~4.8 steps/s (0.21 s a step, from 0.85), 1690 steps, 385 of them distilled; the first distillation run
# cost 31 s (a first bf16-autocast AR run at a shape is slow), each later one of 48 steps' windows 8-10 s.
# Dry-run here on 2026-12-04 with the device's own stack (torch 2.11.0+cu130, transformers 5.17.0, huggingface_hub
# 1.33.0, in a PYTHONPATH target; PROFILE=cpu DEVICE=cpu CTX_MIN=DEN_MIN=0.5): smoke, training, export, parts,
# gpu_unpack.sh and a generate from the unpacked model all ran; the bench ran out of time, as on a CPU it must.
# CONTINUE=1 (the shipped denoiser trained on) dry-run here on 2026-12-05 (PROFILE=cpu DEVICE=cpu DEN_MIN=0.5):
# smoke, continuation, export and unpack ran (benchmarks/gpu_lease_20261204_2/README.md, "For the next lease").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
PROFILE=${PROFILE:-gpu}  # PROFILE=cpu DEVICE=cpu: the same script, checked on this machine
CTX_MIN=${CTX_MIN:-2.5}
DEN_MIN=${DEN_MIN:-3.5}
DISTILL_SHARE=${DISTILL_SHARE:-0.75}
DISTILL_FROM=${DISTILL_FROM:-0.5}
DISTILL_BATCHES=${DISTILL_BATCHES:-8}
# A 10 M-parameter step is bound by op dispatch on an H200: a stage-2 step makes 21,144 aten calls (fwd + bwd,
# nested ones counted; 15,215 for stage 1; counted on the CPU, the same at any batch; the GPU's grouped-GEMM
# experts make fewer than the CPU's per-expert loop) and took 205 ms at 64 windows, ~10 us a call. More windows
# a step should then cost little more time: try BATCH=256 after a
# `benchmarks/train_step/profile_step.py --device cuda --batch 256` reading (not measured on a GPU yet).
BATCH_ARGS=()
[ -n "${BATCH:-}" ] && BATCH_ARGS=(--batch-size "$BATCH")
# LR: stage 2's peak lr (the profile's by default); a continued denoiser (CONTINUE=1) warms up to it again
LR_ARGS=()
[ -z "${LR:-}" ] || LR_ARGS=(--lr "$LR")
OUT=${OUT:-runs/gpu_out}
RUN=${RUN:-runs/gpu}
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=20  # progress every 20 s: the reply keeps only the output's tail
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_train.log") 2>&1
[ -f .gpu/data/train.npy ] || { echo "gpu_train: no .gpu/data: run scripts/gpu_prepare.sh here and carry .gpu"; exit 2; }
tt() { "$PY" -m twotower.cli "$@"; }
# with .gpu/context_from (gpu_prepare.sh CTX_FROM=...): stage 2 alone, on that export's context tower; a fresh
# denoiser (a copy of that tower), or with CONTINUE=1 that export's own denoiser trained on over DEN_MIN (the
# schedule warms up again; the steps add up over leases)
INIT=()
SMOKE_STEPS=2
if [ -f .gpu/context_from/config.json ]; then
  if [ "${CONTINUE:-0}" = 1 ]; then
    INIT=(--resume --init-from .gpu/context_from)
    # --steps counts from the export's own steps: two more of them
    SMOKE_STEPS=$("$PY" -c 'import json; print(json.load(open(".gpu/context_from/training_info.json"))["denoiser_stage"]["steps"] + 2)')
  else
    INIT=(--init-from .gpu/context_from)
  fi
elif [ "${CONTINUE:-0}" = 1 ]; then
  echo "gpu_train: CONTINUE=1 continues the denoiser of .gpu/context_from: run CTX_FROM=<export> scripts/gpu_prepare.sh"; exit 2
fi
# the training budgets must leave the smoke, the model loads, the final validations and saves, the export and the
# parts inside the call, or nothing comes back: 66 s around stage 2 alone on the second lease (516 s in all for
# 450 s of training), ~125-160 s around two stages (the first lease's 195 s held a 105-s smoke since cut down);
# and a budgeted stage can overrun by one distillation run (~0.2 s a batch ahead on the second lease).
# CALL_LIMIT_S: the call's limit_s (less than 590 when the session has less device time left).
LIMIT=${CALL_LIMIT_S:-590}
# whole numbers where the arithmetic below needs them (bash printed "8.5: syntax error" and went on, and the value
# failed at stage 2's start, after stage 1's minutes)
for name in LIMIT DISTILL_BATCHES; do
  [[ ${!name} =~ ^[1-9][0-9]*$ ]] || { echo "gpu_train: $name must be a whole number, got '${!name}'"; exit 2; }
done
TRAIN_S=$(awk -v c="$CTX_MIN" -v d="$DEN_MIN" -v skip="${#INIT[@]}" \
  'BEGIN { print int(60 * ((skip ? 0 : c) + d)) }')
AROUND=$(( ${#INIT[@]} > 0 ? 75 : 160 ))
AROUND=$(( AROUND + DISTILL_BATCHES / 4 ))
[ $(( TRAIN_S + AROUND )) -le "$LIMIT" ] || {
  echo "gpu_train: $TRAIN_S s of training + ~$AROUND s around it exceed the call's $LIMIT s: lower CTX_MIN / DEN_MIN"; exit 2; }
# Each stage also runs under a deadline, in case it overruns all the same: `timeout` sends SIGTERM, on which the
# training ends its step, validates and saves it (twotower/interrupts.py), and the export goes on from that step;
# 40 s later (a distillation run under way is not cut) it kills the stage, and the export takes the last save.
AFTER=75  # s kept after the last stage's deadline: its stop (up to the kill's 40) and the export and parts (~20 s)
deadline() { local left=$(( LIMIT - SECONDS - $1 )); echo $(( left > 20 ? left : 20 )); }
# a stage's exit under its deadline: 124 is `timeout`'s (the stage saved its step: go on), 137 its kill after the
# grace (its last save, recovered by the export, is kept); any other failure ends the script as before, unless
# the stage names a checkpoint folder ($4) that holds a save: the denoiser's, exported as the lease's work (a
# diverging step ends training with exit 2 before it is taken, and the export was skipped with the saves kept)
past_deadline() {
  if [ "$1" -ne 124 ] && [ "$1" -ne 137 ]; then
    [ -n "${4:-}" ] && [ -f "$4/config.json" ] || exit "$1"
    echo "$2 stage: failed ($1); its last save is exported"; return 0; fi
  echo "$2 stage: stopped at its deadline ($1); $3"; }
fresh() { rm -rf "$1"; mkdir -p "$1"; cp -r .gpu/. "$1"/; }
date -u; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"

echo "== smoke: two steps of each stage${INIT:+ (stage 2 only: ${INIT[*]})}"
fresh runs/gpu_smoke
# with the run's own batch and distillation start, so a batch that does not fit or a bad DISTILL_FROM fails here,
# in seconds, not after stage 1
[ ${#INIT[@]} -gt 0 ] || tt train --stage context --profile "$PROFILE" --device "$DEVICE" --out runs/gpu_smoke --steps 2 \
  "${BATCH_ARGS[@]}"
tt train --stage denoiser --profile "$PROFILE" --device "$DEVICE" --out runs/gpu_smoke --steps "$SMOKE_STEPS" "${INIT[@]}" \
  "${BATCH_ARGS[@]}" "${LR_ARGS[@]}" --distill-share "${SMOKE_DISTILL_SHARE:-0.5}" --distill-from "$DISTILL_FROM" --distill-batches 1

CTX_DESC="$CTX_MIN min"; [ ${#INIT[@]} -eq 0 ] || CTX_DESC="from .gpu/context_from"
[ "${CONTINUE:-0}" != 1 ] || CTX_DESC="$CTX_DESC, its denoiser continued"
echo "== train: context $CTX_DESC, denoiser $DEN_MIN min (distillation $DISTILL_SHARE from $DISTILL_FROM of it, $DISTILL_BATCHES batches a run)"
fresh "$RUN"
DEN_S=$(awk -v d="$DEN_MIN" 'BEGIN { print int(60 * d) }')
[ ${#INIT[@]} -gt 0 ] || timeout -s TERM -k 40 "$(deadline $(( AFTER + DEN_S + 45 )))" \
  "$PY" -m twotower.cli train --stage context --profile "$PROFILE" --device "$DEVICE" --out "$RUN" --minutes "$CTX_MIN" \
  "${BATCH_ARGS[@]}" || past_deadline $? context "stage 2 goes on from its last step"
timeout -s TERM -k 40 "$(deadline "$AFTER")" \
  "$PY" -m twotower.cli train --stage denoiser --profile "$PROFILE" --device "$DEVICE" --out "$RUN" --minutes "$DEN_MIN" \
  "${INIT[@]}" "${BATCH_ARGS[@]}" "${LR_ARGS[@]}" \
  --distill-share "$DISTILL_SHARE" --distill-from "$DISTILL_FROM" --distill-batches "$DISTILL_BATCHES" \
  || past_deadline $? denoiser "its last step is exported" "$RUN/denoiser_ckpt"
tt train --stage export --out "$RUN" --to "$RUN/export"
rm -f "$RUN/export/tokenizer.model"  # the shipped one (.gpu/tokenizer.model): gpu_unpack.sh puts it back
tar -cf - -C "$RUN" export | split -b 15M - "$OUT/export.tar.part-"
ls -la "$OUT"; date -u

# what is left of the command's 10 minutes goes to a GPU bench of the new model on the CPU bench's prompts
# (bf16 denoiser, fp32 context tower: speculative output stays AR's; 1 draft pass, as the shipped model's
# config says); `timeout` keeps it inside the call
LEFT=$(( LIMIT - SECONDS ))
if [ "${BENCH:-1}" = 1 ] && [ "$LEFT" -gt 90 ]; then
  echo "== bench on $DEVICE ($LEFT s left)"
  cp .gpu/tokenizer.model "$RUN/export/"
  timeout $(( LEFT - 15 )) "$PY" -m twotower.cli bench --model "$RUN/export" --ctx-device "$DEVICE" \
    --den-device "$DEVICE" --dtype fp32 --den-dtype bf16 --prompts .gpu/bench_prompts.jsonl \
    --modes diffusion,speculative --max-new-tokens 64 --repeats 2 --batch-size 4 --draft-steps 1 --json --out "$OUT/bench_gpu.md" >"$OUT/bench_gpu.json" \
    || echo "bench: stopped ($?)"
fi
