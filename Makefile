# The two commands a newcomer needs: `make run` (the main job) and `make test`.
# Both create .venv on first use and install the package into it.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.llbbench-installed

.PHONY: run reproduce-small reproduce-medium reproduce-tables test test-slow test-slurm soak lint format bench bench-gpu gpu-kit clean-runs

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

run: $(STAMP)  ## the quick-start job and its report; extra overrides: make run ARGS="train.epochs=6"
	$(BIN)/llbbench run -m experiment=quickstart $(ARGS)
	$(BIN)/llbbench saddle --analytic experiment=quickstart
	$(BIN)/llbbench report results/quickstart

EXPERIMENTS := table2_cifar10 table2_imagenet table3_batch table4_init fig7_lr

SMALL := scale=small results_dir=results/small
# the fastest setting scripts/bench_parallel.py measured here (results/bench/parallel.json): two runs at once, one
# thread each; override with SMALL_LAUNCH= (one run at a time, torch's threads)
SMALL_LAUNCH ?= hydra/launcher=cores train.threads=1
# the stand-in GoogLeNet and ResNet-152 (about ten times an AlexNet run here) on fold 0 only, to fit the 4 h
STANDIN_BIG_FOLDS ?= fold=0

# A sweep with a failed run exits 1 after finishing its other runs: the next experiments still run and the report
# is written, then the target fails. A bad input that every run shares (exit 2) stops it at once.
# reproduce-small: the CIFAR-10 Table 2 tuned first (its fold-0 runs at the configured rates are the one-shot
# runs), then one-shot and tuned; the ablation on ResNet-34 (and its max_lr_ratio > 1 runs); Tables 3-4, Fig. 7; the stand-in ImageNet Table 2;
# Fig. 8 on a network (llbbench saddle: one process, so launcher ARGS do not apply to it).
reproduce-small: $(STAMP)  ## every experiment at scale=small on CIFAR-10, tuning included, then the report (resumable; about 4 h on 2 cores)
	@start=$$(date +%s); failed=0; \
	step() { "$$@"; rc=$$?; if [ $$rc -eq 2 ]; then exit 2; elif [ $$rc -ne 0 ]; then failed=1; fi; return $$rc; }; \
	step $(BIN)/llbbench tune experiment=table2_cifar10 $(SMALL) $(SMALL_LAUNCH) $(ARGS); tuned=$$?; \
	step $(BIN)/llbbench run -m experiment=table2_cifar10 $(SMALL) $(SMALL_LAUNCH) $(ARGS); \
	if [ $$tuned -eq 0 ]; then step $(BIN)/llbbench run -m experiment=table2_cifar10 tuned=true $(SMALL) $(SMALL_LAUNCH) $(ARGS); fi; \
	step $(BIN)/llbbench run -m experiment=ablation_llb $(SMALL) $(SMALL_LAUNCH) $(ARGS); \
	step $(BIN)/llbbench run -m experiment=ablation_ratio $(SMALL) $(SMALL_LAUNCH) $(ARGS); \
	for e in table3_batch table4_init fig7_lr; do \
		step $(BIN)/llbbench run -m experiment=$$e $(SMALL) $(SMALL_LAUNCH) $(ARGS); \
	done; \
	step $(BIN)/llbbench run -m experiment=table2_imagenet model=alexnet,vgg16 $(SMALL) $(SMALL_LAUNCH) $(ARGS); \
	step $(BIN)/llbbench run -m experiment=table2_imagenet model=googlenet,resnet152 $(STANDIN_BIG_FOLDS) $(SMALL) $(SMALL_LAUNCH) $(ARGS); \
	step $(BIN)/llbbench saddle experiment=fig8_saddle $(SMALL); \
	$(BIN)/llbbench report results/small && echo "reproduce-small: done in $$(( ($$(date +%s) - start) / 60 )) min"; \
	exit $$failed

MEDIUM := scale=medium results_dir=results/medium

# reproduce-medium: the steps of reproduce-small at scale=medium (docs/scales.md; llbbench/commands/sweeps.py
# MEDIUM_PLAN lists them, and a test holds the two together), the ImageNet networks' Table 2 on Imagenette
# (dataset.download=true fetches it where online). On one GPU pack runs with e.g.
# ARGS="gpus.runs_per_gpu=4 hydra/launcher=joblib hydra.launcher.n_jobs=4" (make bench-gpu's best k).
reproduce-medium: $(STAMP)  ## every experiment at scale=medium, tuning included, then the report (resumable; about a GPU-day, modelled)
	@start=$$(date +%s); failed=0; \
	step() { "$$@"; rc=$$?; if [ $$rc -eq 2 ]; then exit 2; elif [ $$rc -ne 0 ]; then failed=1; fi; return $$rc; }; \
	step $(BIN)/llbbench tune experiment=table2_cifar10 $(MEDIUM) $(ARGS); tuned=$$?; \
	step $(BIN)/llbbench run -m experiment=table2_cifar10 $(MEDIUM) $(ARGS); \
	if [ $$tuned -eq 0 ]; then step $(BIN)/llbbench run -m experiment=table2_cifar10 tuned=true $(MEDIUM) $(ARGS); fi; \
	for e in ablation_llb ablation_ratio table3_batch table4_init fig7_lr; do \
		step $(BIN)/llbbench run -m experiment=$$e $(MEDIUM) $(ARGS); \
	done; \
	step $(BIN)/llbbench run -m experiment=table2_imagenet dataset=imagenette $(MEDIUM) $(ARGS); \
	step $(BIN)/llbbench saddle experiment=fig8_saddle $(MEDIUM); \
	$(BIN)/llbbench report results/medium && echo "reproduce-medium: done in $$(( ($$(date +%s) - start) / 60 )) min"; \
	exit $$failed

reproduce-tables: $(STAMP)  ## every experiment at scale=full (GPUs; add ARGS="hydra/launcher=slurm ..."), then the report
	@failed=0; \
	for e in $(EXPERIMENTS); do \
		$(BIN)/llbbench run -m experiment=$$e scale=full results_dir=results/full $(ARGS); rc=$$?; \
		if [ $$rc -eq 2 ]; then exit 2; elif [ $$rc -ne 0 ]; then failed=1; fi; \
	done; \
	$(BIN)/llbbench saddle experiment=fig8_saddle scale=full results_dir=results/full || failed=1; \
	$(BIN)/llbbench report results/full; exit $$failed

test: $(STAMP)  ## the test suite (CPU, a few minutes; one pytest worker per core)
	$(BIN)/pytest -q -n auto

test-slow: $(STAMP)  ## the long tests that `make test` leaves out (the Slurm one needs `make test-slurm`)
	$(BIN)/pytest -q -m slow

soak: $(STAMP)  ## the kill-anywhere soak (long form; writes its figures to results/reliability/soak.json)
	LLBBENCH_SOAK_REPORT=results/reliability/soak.json $(BIN)/pytest -q -m slow tests/test_soak.py

test-slurm: $(STAMP)  ## start a one-node Slurm cluster on this machine (root), then test the Slurm launcher
	bash ../shared/tools/slurm-local.sh start
	$(BIN)/pytest -q -m slow tests/test_slurm.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench-gpu: $(STAMP)  ## the GPU path measured (results/bench/gpu.json; ARGS=--quick: tiny sizes on a CPU, gpu_quick.json)
	$(BIN)/python scripts/bench_gpu.py $(ARGS)

# what scripts/gpu_check.sh needs on a lent device machine that its image lacks (carry .gpu): pure-Python wheels of
# the versions installed here, and CIFAR-10's JPEG tarball with its build tool (this workplace's ../shared)
GPU_WHEELS := hydra-core omegaconf antlr4-python3-runtime hydra-joblib-launcher hydra-submitit-launcher submitit
gpu-kit: $(STAMP)  ## fill .gpu/ for scripts/gpu_check.sh on a device machine (docs/scales.md)
	rm -rf .gpu && mkdir -p .gpu/wheels .gpu/tools .gpu/data
	$(BIN)/python -m pip wheel --quiet --no-deps -w .gpu/wheels \
		$$($(BIN)/python -m pip list --format=freeze 2>/dev/null | grep -iE "^($$(echo $(GPU_WHEELS) | tr ' ' '|'))==")
	cp ../shared/tools/build_cifar10.py .gpu/tools/
	cp ../shared/data/cifar10-jpeg.tar.gz ../shared/data/cifar10-train-order.csv ../shared/data/cifar10-test-first500-labels.txt .gpu/data/

bench: $(STAMP)  ## benchmarks: write results/bench/*.json (needs CIFAR-10 under $$LLBBENCH_DATA or ./data)
	$(BIN)/python scripts/bench_run.py
	$(BIN)/python scripts/bench_parallel.py

clean-runs:  ## delete ad-hoc run directories (results/runs/)
	rm -rf results/runs
