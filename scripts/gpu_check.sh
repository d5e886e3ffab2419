#!/bin/bash
# The prepared device check of #28 (docs/scales.md): when a GPU is lent, two calls of at most ten minutes each,
#   bash scripts/gpu_check.sh bench    # make bench-gpu: throughput, packing k = 1, 2, 4, 8, compile vs eager
#   bash scripts/gpu_check.sh table2   # the medium CIFAR-10 Table 2, ResNet-34, SGD and LLb-SGD, fold 0, packed
# each with carry [".gpu"] (what `make gpu-kit` puts there: the wheels llbbench needs beyond the device image's
# packages, and CIFAR-10's JPEG tarball with its build tool). What it measured lands in $OUT (the device tool's
# folder; results/gpu-check here) to commit under results/bench/ and results/medium/. Nothing else is timed.
# GPU_CHECK_SECONDS bounds the table2 call's training (default 420 s): unfinished runs keep their epochs.csv.
set -u
what=${1:?usage: scripts/gpu_check.sh bench|table2}
out=${OUT:-results/gpu-check}
mkdir -p "$out"
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
if [ -d .gpu/wheels ]; then  # hydra-core, omegaconf, antlr4, the launchers, submitit
	$py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/wheels/*.whl || exit 1
	export PYTHONPATH=/tmp/site:$PWD
	[ -e llbbench/conf ] || ln -s ../conf llbbench/conf  # the package's configs, as an install places them
fi
if [ ! -d data/cifar-10-batches-py ] && [ -f .gpu/tools/build_cifar10.py ]; then
	$py .gpu/tools/build_cifar10.py data > "$out/build_cifar10.log" 2>&1 || exit 1
fi
export LLBBENCH_DATA=$PWD/data PYTHONUNBUFFERED=1
$py -c "import torch; print('device:', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')" | tee "$out/device.txt"
case $what in
bench)
	$py scripts/bench_gpu.py ${QUICK:+--quick} --out "$out/gpu.json" 2>&1 | tee "$out/bench_gpu.log"
	$py scripts/estimate_gpu_hours.py --scale medium --measured "$out/gpu.json" | tee "$out/estimate_medium.md"
	cp results/bench/gpu_hours_medium.json "$out/"
	;;
table2)
	k=$($py -c "import json, sys; print(json.load(open(sys.argv[1]))['packing']['best_k'])" results/bench/gpu.json 2>/dev/null || echo 2)
	tiny=${QUICK:+model.width=0.0625 dataset.subset=100 dataset.test_subset=50 train.epochs=1 device=cpu}
	start=$(date +%s)
	timeout "${GPU_CHECK_SECONDS:-420}" $py -m llbbench.cli run -m experiment=table2_cifar10 scale=medium model=resnet34 \
		optimizer=sgd,llb fold=0 results_dir=results/medium gpus.runs_per_gpu="$k" hydra/launcher=joblib \
		hydra.launcher.n_jobs="$k" checkpoint_minutes=1 $tiny 2>&1 | tail -n 40 > "$out/table2.log"
	echo "k=$k, wall $(( $(date +%s) - start )) s" | tee -a "$out/table2.log"
	tar czf "$out/medium.tgz" --exclude='*.pt' --exclude='.lock' results/medium
	;;
*) echo "unknown check $what: bench or table2" >&2; exit 2 ;;
esac
