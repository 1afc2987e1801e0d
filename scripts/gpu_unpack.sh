#!/usr/bin/env bash
# Here, after scripts/gpu_train.sh ran on a device: rebuild the exported model from the parts it sent back.
#   bash scripts/gpu_unpack.sh <folder with export.tar.part-*> <destination>
set -euo pipefail
# the arguments as the caller meant them (relative to where it stands), before moving to the repository root
SRC=$(realpath -m "${1:?folder with export.tar.part-*}")
DEST=$(realpath -m "${2:?destination folder}")
cd "$(dirname "$0")/.."
[ -n "$(ls "$SRC"/export.tar.part-* 2>/dev/null)" ] || { echo "gpu_unpack: no export.tar.part-* in $SRC"; exit 2; }
# an earlier unpack's files would survive a merge into the same folder, beside another model's weights
[ -z "$(ls -A "$DEST" 2>/dev/null)" ] || { echo "gpu_unpack: $DEST is not empty: give a new folder"; exit 2; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cat "$SRC"/export.tar.part-* | tar -xf - -C "$TMP"
mkdir -p "$DEST"
cp -r "$TMP"/export/. "$DEST"/
cp assets/default/tokenizer.model "$DEST"/tokenizer.model
echo "$DEST: $(ls "$DEST" | tr '\n' ' ')"
