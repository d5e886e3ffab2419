"""`make bench-gpu ARGS=--quick`: the GPU benchmark's code runs on the CPU at tiny sizes (so that it cannot rot)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_quick_gpu_benchmark_runs_and_writes_every_measurement(tmp_path):
    out = tmp_path / "gpu_quick.json"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_gpu.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["quick"] is True and result["device"] == "cpu"
    rows = result["throughput"]
    assert {r["precision"] for r in rows} == {"fp32", "tf32", "bf16"} and {r["form"] for r in rows} == {
        "cifar",
        "imagenet",
    }
    assert all(r["images_per_second"] > 0 for r in rows)
    assert result["harness_step"]["ratio"] > 0 and 0 < result["cifar_batching"]["share"] < 1
    assert result["imagenet_format_run"]["same_weights"] is True
    assert set(result["host_syncs_per_step"]) == {"llb", "esgd", "pathsgd"}
    assert result["state_on_device_after_loading"] == {"llb": True, "esgd": True, "pathsgd": True}
    packed = result["packing"]
    assert set(packed["images_per_second"]) == {"1", "2"} and all(v > 0 for v in packed["images_per_second"].values())
    assert packed["best_k"] in (1, 2) and packed["gain_of_best"] >= 1
    (compiled,) = result["compile"]
    assert compiled["network"] == "smallcnn" and compiled["eager"] > 0 and compiled["compiled"] > 0


def test_the_estimate_takes_a_gpus_measured_rates_and_packing(tmp_path):
    """scripts/estimate_gpu_hours.py: a GPU's gpu.json (bf16, channels_last rows, packing) replaces the FLOP
    model; packing speeds up CIFAR runs at scale=medium only; a CPU or --quick file is not a GPU's numbers."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("estimate", ROOT / "scripts" / "estimate_gpu_hours.py")
    estimate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(estimate)

    def row(network, form, precision, nhwc, rate):
        return {"network": network, "form": form, "precision": precision, "channels_last": nhwc,
                "images_per_second": rate}  # fmt: skip

    rows = [row("resnet34", "cifar", "bf16", True, 900.0), row("resnet34", "cifar", "fp32", False, 300.0),
            row("vgg16", "imagenet", "bf16", True, 500.0)]  # fmt: skip
    gpu = tmp_path / "gpu.json"
    gpu.write_text(json.dumps({"device": "cuda", "quick": False, "throughput": rows,
                               "packing": {"network": "resnet34", "best_k": 4, "gain_of_best": 2.5}}))  # fmt: skip
    measured, packing = estimate.measured_rates(gpu)
    assert measured == {("resnet34", "cifar10"): 900.0, ("vgg16", "imagenet"): 500.0} and packing["best_k"] == 4
    assert estimate.rate_of("resnet34", "cifar10", measured, packing, "medium") == 2250.0  # 900 x the gain 2.5
    assert estimate.rate_of("resnet34", "cifar10", measured, packing, "full") == 900.0  # one run a GPU there
    assert estimate.rate_of("vgg16", "imagenette2-160", measured, packing, "medium") == 500.0  # no packing gain
    assert estimate.rate_of("alexnet", "cifar10", measured, packing, "medium") is None  # not measured: FLOPs
    gpu.write_text(json.dumps({"device": "cpu", "quick": True, "throughput": rows}))
    assert estimate.measured_rates(gpu) == ({}, {})
