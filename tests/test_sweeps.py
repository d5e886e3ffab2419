"""Sweeps under real launchers: every run once, "run i of N", the counts, and a second start that trains nothing."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from llbbench import config
from tests.conftest import llbbench, write_image_folder

SWEEP = ["-m", "optimizer=sgd,adam", "fold=0,1", "device=cpu", "model.width=0.25", "train.epochs=1"]


def summaries(results: Path) -> dict[str, float]:
    return {p.parent.name: p.stat().st_mtime_ns for p in results.glob("runs/*/summary.json")}


@pytest.mark.parametrize(
    "launcher",
    [["hydra/launcher=cores", "train.threads=1"], ["hydra/launcher=submitit_local"]],
    ids=["joblib-cores", "submitit_local"],
)
def test_a_four_run_sweep_completes_and_a_second_start_trains_nothing(cifar_root, tmp_path, launcher):
    first = llbbench("run", *SWEEP, *launcher, f"results_dir={tmp_path}", data=cifar_root)
    assert first.returncode == 0, first.stderr
    output = first.stdout + first.stderr
    assert "sweep done: 4 of 4 runs: 4 completed, 0 skipped, 0 diverged, 0 stopped, 0 failed" in output
    done = summaries(tmp_path)
    assert len(done) == 4
    assert {json.loads(p.read_text())["status"] for p in tmp_path.glob("runs/*/summary.json")} == {"completed"}
    if "train.threads=1" in launcher:  # joblib with cores / threads jobs; each run on one thread, as recorded
        assert {yaml.safe_load(p.read_text())["train"]["threads"] for p in tmp_path.glob("runs/*/config.yaml")} == {1}

    again = llbbench("run", *SWEEP, *launcher, f"results_dir={tmp_path}", data=cifar_root)
    assert again.returncode == 0, again.stderr
    assert "sweep done: 4 of 4 runs: 0 completed, 4 skipped" in again.stdout + again.stderr
    assert summaries(tmp_path) == done  # not one summary rewritten


def test_the_sweep_numbers_its_runs_and_failing_runs_do_not_stop_it(tmp_path):
    # a broken image sorts last in its class: the 6-image subset leaves it out, the whole set fails on it in
    # training (recorded as failed); a negative width is bad input (reported, not recorded)
    root = write_image_folder(tmp_path / "images", train_per_class=4, val_per_class=1)
    (root / "train" / "dog" / "zz_broken.JPEG").write_bytes(b"not an image")
    out = llbbench(
        "run", "-m", "dataset=imagefolder", f"dataset.root={root}", "dataset.num_workers=0", "dataset.resize=36",
        "dataset.crop=32", "dataset.subset=6,null", "model.width=0.25,-1", "cv.folds=2", "train.batch_size=4",
        "train.epochs=1", "device=cpu", f"results_dir={tmp_path / 'results'}",
    )  # fmt: skip
    assert out.returncode == 1, out.stderr  # the sweep finished the others, then said that not all runs did
    for i in range(1, 5):
        assert f"run {i} of 4: smallcnn-llb-f0-" in out.stdout
    assert "sweep done: 4 of 4 runs: 1 completed, 0 skipped, 0 diverged, 0 stopped, 3 failed" in out.stdout
    assert "model.width=-1.0 is out of range: it must be a finite number above 0" in out.stderr
    recorded = {json.loads(p.read_text())["status"]: p for p in (tmp_path / "results").glob("runs/*/summary.json")}
    assert sorted(recorded) == ["completed", "failed"]
    message = json.loads(recorded["failed"].read_text())["error"]["message"]
    assert f"unreadable image {root / 'train' / 'dog' / 'zz_broken.JPEG'}" in message and "\n" not in message


def test_a_bad_input_every_run_shares_stops_the_sweep_once_before_any_run(tmp_path):
    out = llbbench(
        "run", "-m", "optimizer=sgd,adam,llb", "dataset.download=false", f"results_dir={tmp_path / 'results'}",
        data=tmp_path / "nowhere",
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.count("CIFAR-10 not found") == 1 and "(in all 3 runs of the sweep)" in out.stderr
    assert "run 1 of" not in out.stdout and not (tmp_path / "results").exists()


def test_runs_with_their_own_bad_input_are_named_and_the_others_go_on(cifar_root, tmp_path):
    out = llbbench("run", "-m", "fold=0,7", *SWEEP[3:], f"results_dir={tmp_path}", data=cifar_root)
    assert out.returncode == 1
    assert "1 of the sweep's 2 runs will fail: fold=7 is out of range: use 0..4" in out.stderr
    assert "sweep done: 2 of 2 runs: 1 completed, 0 skipped, 0 diverged, 0 stopped, 1 failed" in out.stdout


def test_an_experiment_holds_its_own_sweep(cifar_root, tmp_path):
    out = llbbench(
        "run", "experiment=table2_cifar10", "scale=small", "model=resnet34", "optimizer=sgd",
        "dataset.subset=100", "train.epochs=1", "device=cpu", f"results_dir={tmp_path}", "--cfg", "job",
        data=cifar_root,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "experiment_name: table2_cifar10" in out.stdout and "scale: small" in out.stdout


@pytest.mark.parametrize(
    ("scale", "sizes"),
    [
        # the paper's grids at five folds; Tables 3-4 with their SGD controls; the ablation on both networks
        ("full", {"table2_cifar10": 120, "table2_imagenet": 240, "table3_batch": 300, "table4_init": 240,
                  "fig7_lr": 30, "ablation_llb": 200}),
        # conf/scale/small.yaml: five folds too; three networks in Tables 3-4 and Fig. 7 (fold 0); the ablation on
        # ResNet-34 (make reproduce-small runs the stand-in GoogLeNet and ResNet-152 on fold 0 only)
        ("small", {"table2_cifar10": 120, "table2_imagenet": 240, "table3_batch": 150, "table4_init": 120,
                   "fig7_lr": 15, "ablation_llb": 100}),
    ],
)  # fmt: skip
def test_the_paper_grids_have_the_papers_sizes(scale, sizes):
    from llbbench.commands.sweeps import sweep_size
    from llbbench.config import compose

    assert {name: sweep_size(compose([f"experiment={name}", f"scale={scale}"], hydra=True)) for name in sizes} == sizes


def test_reproduce_small_runs_every_stand_in_network_and_the_cheap_ones_on_every_fold():
    """`make reproduce-small`'s stand-in Table 2 (its two steps, as make expands them): AlexNet and VGG-16 on the five
    folds, so that their comparisons are paired; GoogLeNet and ResNet-152 on fold 0 (their cost); 12 optimizers each."""
    from llbbench.commands.sweeps import sweep_points

    root = Path(__file__).resolve().parents[1]
    recipe = subprocess.run(["make", "-n", "reproduce-small"], cwd=root, capture_output=True, text=True, check=True)
    steps = re.findall(r"llbbench run -m experiment=table2_imagenet ([^;]*)", recipe.stdout)
    assert len(steps) == 2, recipe.stdout
    sweep = config.compose(["experiment=table2_imagenet", "scale=small"], hydra=True)
    folds = {}
    for step in steps:
        swept = [w for w in step.split() if w.split("=")[0] in ("model", "fold", "optimizer", "scale")]
        assert "hydra/launcher=cores" in step.split() and "train.threads=1" in step.split(), step
        for point in sweep_points(sweep, swept):
            run = dict(o.split("=", 1) for o in point)
            folds.setdefault(run["model"], {}).setdefault(run["optimizer"], set()).add(int(run["fold"]))
    assert set(folds) == {"alexnet", "vgg16", "googlenet", "resnet152"}
    for model, by_optimizer in folds.items():
        assert len(by_optimizer) == 12, model
        expected = {0} if model in ("googlenet", "resnet152") else set(range(5))
        assert all(f == expected for f in by_optimizer.values()), (model, by_optimizer)


def test_the_cores_launcher_runs_cores_over_threads_at_once(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    jobs = {t: config.compose(["hydra/launcher=cores", *([f"train.threads={t}"] if t else [])], hydra=True)
            for t in (None, 1, 4, 32)}  # fmt: skip
    assert {t: cfg.hydra.launcher.n_jobs for t, cfg in jobs.items()} == {None: 1, 1: 16, 4: 4, 32: 1}
    assert jobs[1].hydra.launcher._target_.endswith("JoblibLauncher")
