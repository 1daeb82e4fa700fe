#!/usr/bin/env bash
# The full supervised pipeline on MWPD, end to end, as a user would run it from the CLI:
#   fine-tuned encoder + exemplars index -> cross-encoder reranker trained on its candidates
#   -> benchmarks/rerank_mwpd.py on all 3,000 validation offers (bi-encoder alone vs + rerank
#   K=10/20/50, calibration fitted on the reranker's held-out dev products).
# The fine-tuned model comes from `python -m benchmarks.train_models --models mwpd` (WORK/models/mwpd);
# the converted data from `python -m benchmarks.run` / benchmarks.tasks (WORK/data/mwpd).
#
#   bash benchmarks/rerank_pipeline.sh [WORK] [MAX_PRODUCTS]
set -euo pipefail
WORK="${1:-work/bench}"
MAX_PRODUCTS="${2:-4000}"
DATA="$WORK/data/mwpd"
MODEL="$WORK/models/mwpd"
INDEX="$WORK/indexes/mwpd-finetuned-exemplars"
RERANKER="$WORK/rerankers/mwpd-finetuned-exemplars"
for need in "$DATA/train.jsonl" "$MODEL/tagindex_training.json"; do
  [ -e "$need" ] || { echo "missing $need: run benchmarks.run / benchmarks.train_models first" >&2; exit 2; }
done
start=$(date +%s)
python -m tagindex.cli index --tags "$DATA/tags.jsonl" --products "$DATA/train.jsonl" --model "$MODEL" \
  --out "$INDEX" --cache "$WORK/cache"
echo "index: $(( $(date +%s) - start )) s"
start=$(date +%s)
python -m tagindex.cli train-reranker --products "$DATA/train.jsonl" --index "$INDEX" --out "$RERANKER" \
  --max-products "$MAX_PRODUCTS"
echo "train-reranker: $(( $(date +%s) - start )) s"
python benchmarks/rerank_mwpd.py --data "$DATA" --index "$INDEX" --reranker "$RERANKER" \
  --name "fine-tuned+exemplars" --sample 0 --cal-products 600 \
  --out benchmarks/results/rerank_mwpd_finetuned.json --plot benchmarks/rerank_precision_coverage_finetuned.png
