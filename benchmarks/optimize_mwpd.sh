#!/usr/bin/env bash
# `tagindex optimize` on MWPD as a user would run it: settings chosen on 500 training offers (not
# stored as exemplars), measured on 500 validation offers (seeded samples), for a zero-shot index and
# an index with 3,000 other training offers as exemplars, at target precisions 0.8 and 0.6. Both
# indexes use the default encoder (`tagindex index` without --backend). JSON per run under
# benchmarks/results/optimize/; --dry-run leaves the indexes as built.
#
#   bash benchmarks/optimize_mwpd.sh [WORK] [DATA]
set -euo pipefail
WORK="${1:-work/optimize}"
DATA="${2:-../shared/data}"
OUT=benchmarks/results/optimize
mkdir -p "$WORK" "$OUT"
uptime
[ -e "$WORK/mwpd/tags.jsonl" ] || python -m tagindex.cli -q convert mwpd --src "$DATA/mwpd" --out "$WORK/mwpd"
head -n 3000 "$WORK/mwpd/train.jsonl" > "$WORK/exemplars.jsonl"
tail -n +3001 "$WORK/mwpd/train.jsonl" > "$WORK/choose.jsonl"
[ -e "$WORK/zero-shot/CURRENT" ] || python -m tagindex.cli -q index --tags "$WORK/mwpd/tags.jsonl" --out "$WORK/zero-shot"
[ -e "$WORK/exemplars/CURRENT" ] || python -m tagindex.cli -q index --tags "$WORK/mwpd/tags.jsonl" \
  --products "$WORK/exemplars.jsonl" --out "$WORK/exemplars"
for index in exemplars zero-shot; do
  for target in 0.8 0.6; do
    echo "== $index, target precision $target"
    python -m tagindex.cli -q optimize --index "$WORK/$index" --products "$WORK/choose.jsonl" \
      --report-products "$WORK/mwpd/validation.jsonl" --max-products 500 --target-precision "$target" \
      --dry-run --json "$OUT/mwpd-$index-$target.json"
  done
done
uptime
