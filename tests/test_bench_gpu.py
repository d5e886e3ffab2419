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
