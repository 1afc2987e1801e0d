#!/usr/bin/env bash
# Here, after scripts/gpu_train.sh ran on a device: rebuild the exported model from the parts it sent back.
#   bash scripts/gpu_unpack.sh <folder with export.tar.part-*> <destination>
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${1:?folder with export.tar.part-*}
DEST=${2:?destination folder}
[ -n "$(ls "$SRC"/export.tar.part-* 2>/dev/null)" ] || { echo "gpu_unpack: no export.tar.part-* in $SRC"; exit 2; }
TMP=$(mktemp -d)
cat "$SRC"/export.tar.part-* | tar -xf - -C "$TMP"
mkdir -p "$DEST"
cp -r "$TMP"/export/. "$DEST"/
cp assets/default/tokenizer.model "$DEST"/tokenizer.model
rm -rf "$TMP"
echo "$DEST: $(ls "$DEST" | tr '\n' ' ')"
