#!/usr/bin/env bash
# Here, before a device call: the token streams the GPU run trains on, in .gpu/ (git-ignored, ~16 MB), so the
# device machine (no network, another Python, so another standard library) trains on this machine's corpus
# with the shipped tokenizer (the GPU model and the shipped one then differ by their training alone), and the
# CPU bench's prompts for a GPU bench.
#   bash scripts/gpu_prepare.sh            then: run(command="bash scripts/gpu_train.sh", carry=[".gpu"])
set -euo pipefail
[ -z "${CTX_FROM:-}" ] || CTX_FROM=$(realpath -m "$CTX_FROM")  # as the caller meant it, before the cd
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
mkdir -p .gpu/data
cp assets/default/tokenizer.model .gpu/tokenizer.model
"$PY" - <<'PY'
from twotower.data import encode_split
from twotower.tokenizer import SentencePieceTokenizer

tok = SentencePieceTokenizer(".gpu/tokenizer.model")
for split in ("train", "validation"):
    print(split, len(encode_split(tok, split, ".gpu/data")), "tokens")

# the CPU bench's 8 prompts (test split, seed 0, on the shipped tokenizer's token boundaries), so a GPU bench
# there reads the same ones
import json
from twotower.eval_prompts import held_out_prompts

with open(".gpu/bench_prompts.jsonl", "w") as f:
    f.writelines(json.dumps({"prompt": p}) + "\n" for p in held_out_prompts(tok.encode, 8, 0)[0])
PY
# CTX_FROM=<export dir>: stage 2 alone on that model's context tower (gpu_train.sh skips stage 1; with
# CONTINUE=1 there it trains that model's denoiser on instead of a fresh one); the weights
# are 43 MB and the device's tree limit is 64 MiB, so the shipped model (assets/default/model.safetensors)
# must stay out of that call's tree (moved aside for it, put back after)
rm -rf .gpu/context_from
if [ -n "${CTX_FROM:-}" ]; then
  cmp -s "$CTX_FROM/tokenizer.model" .gpu/tokenizer.model || { echo "gpu_prepare: $CTX_FROM has another tokenizer"; exit 2; }
  mkdir -p .gpu/context_from
  cp "$CTX_FROM"/{config.json,model.safetensors,tokenizer.model,training_info.json} .gpu/context_from/
  # the stage logs are optional (training reads them when there): an older export may lack them; the
  # denoiser's is read when gpu_train.sh continues that denoiser (CONTINUE=1)
  for log in train_context_log.jsonl train_denoiser_log.jsonl; do
    [ ! -f "$CTX_FROM/$log" ] || cp "$CTX_FROM/$log" .gpu/context_from/
  done
fi
du -sh .gpu
# the device call copies the working tree and .gpu, 64 MiB at most: say so here rather than there
tree_mib=$(( ($(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1) + $(du -sb .gpu | cut -f1)) / 1048576 ))
echo "tracked tree + .gpu: ~$tree_mib MiB of the device call's 64"
[ "$tree_mib" -lt 64 ] || echo "gpu_prepare: over 64 MiB: move assets/default/model.safetensors aside for the call (put it back after)"
