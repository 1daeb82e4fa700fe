#!/usr/bin/env bash
# Fetches the public datasets tagindex is developed on into DIR (default data/raw), laid out like
# the workspace's shared/data. Needs git, curl and unzip, and internet access.
#   MWPD 2020 task 2        https://github.com/ir-ischool-uos/mwpd (commit 9e4c63e0ac08)
#   AE-110K / OA-Mine       https://github.com/wbsg-uni-mannheim/ExtractGPT (commit 3f96461b28bd)
#   Shopify taxonomy        https://github.com/Shopify/product-taxonomy (commit 67fe9964c015)
set -euo pipefail
out=${1:-data/raw}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fetch_repo() {  # repo commit dir
  git -C "$tmp" init -q "$3"
  git -C "$tmp/$3" remote add origin "https://github.com/$1.git"
  git -C "$tmp/$3" fetch -q --depth 1 origin "$2"
  git -C "$tmp/$3" checkout -q FETCH_HEAD
}

if [ ! -e "$out/mwpd/train.json" ]; then
  fetch_repo ir-ischool-uos/mwpd 9e4c63e0ac08 mwpd
  mkdir -p "$out/mwpd"
  unzip -q -o "$tmp/mwpd/data/task2_train_val_with_labels.zip" -d "$tmp/mwpd-zip"
  find "$tmp/mwpd-zip" -name '*train*.json' -exec cp {} "$out/mwpd/train.json" \;
  find "$tmp/mwpd-zip" -name '*val*.json' -exec cp {} "$out/mwpd/validation.json" \;
fi
if [ ! -e "$out/attribute-tags/ae-110k/train.jsonl" ]; then
  fetch_repo wbsg-uni-mannheim/ExtractGPT 3f96461b28bd extractgpt
  for ds in ae-110k oa-mine; do
    mkdir -p "$out/attribute-tags/$ds"
    cp "$tmp/extractgpt/data/processed_datasets/$ds/"{train,test}.jsonl "$out/attribute-tags/$ds/"
  done
fi
if [ ! -e "$out/shopify-taxonomy/dist/en/categories.txt" ]; then
  fetch_repo Shopify/product-taxonomy 67fe9964c015 shopify
  mkdir -p "$out/shopify-taxonomy"
  cp -r "$tmp/shopify/"{data,dist,LICENSE} "$out/shopify-taxonomy/"
fi
echo "data in $out"
