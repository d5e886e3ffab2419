#!/bin/bash
# What adding your optimizer to the committed study costs: copy results/small, tune and run AdamW
# (examples/adamw) on the CIFAR-10 Table 2 at scale=small, two runs side by side, then the report; prints the
# seconds of each step. Usage: bash scripts/time_your_optimizer.sh [COPY_DIR]   (default /tmp/llbbench-mine)
set -euo pipefail
cd "$(dirname "$0")/.."
copy=${1:-/tmp/llbbench-mine}
rm -rf "$copy" && cp -r results/small "$copy"
args=(experiment=table2_cifar10 scale=small "results_dir=$copy" optimizer=adamw --config-dir examples/adamw
      hydra/launcher=cores train.threads=1)
start=$(date +%s)
.venv/bin/llbbench tune "${args[@]}" | tail -3
tuned=$(date +%s)
.venv/bin/llbbench run -m "${args[@]}" 2>&1 | grep "sweep done"
one_shot=$(date +%s)
.venv/bin/llbbench run -m "${args[@]}" tuned=true 2>&1 | grep "sweep done"
at_winner=$(date +%s)
.venv/bin/llbbench report "$copy" | tail -1
end=$(date +%s)
echo "tune $((tuned - start)) s, one-shot $((one_shot - tuned)) s, tuned $((at_winner - one_shot)) s," \
     "report $((end - at_winner)) s: $((end - start)) s in all, on $(nproc) cores"
