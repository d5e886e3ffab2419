"""One run per GPU (llbbench/backend/gpus.py): concurrent claims get distinct GPUs; a claim waits while all are held;
a run asks for one only with device=auto on a machine with several. Tested on the CPU: the claims are lock files."""

from __future__ import annotations

import threading

import pytest
import torch

from llbbench import run as one_run
from llbbench.backend import gpus
from llbbench.run import execution


def test_concurrent_claims_get_distinct_gpus_and_release_them(tmp_path):
    with gpus.claim(3, tmp_path) as a, gpus.claim(3, tmp_path) as b, gpus.claim(3, tmp_path) as c:
        assert sorted((a, b, c)) == [0, 1, 2]
    with gpus.claim(3, tmp_path) as again:
        assert again == 0  # released at the end of the block


def test_a_claim_waits_while_every_gpu_is_held(tmp_path):
    events: list[str] = []
    held, release = threading.Event(), threading.Event()

    def first() -> None:
        with gpus.claim(1, tmp_path) as index:
            events.append(f"first has {index}")
            held.set()
            release.wait(10)
            events.append("first releases")

    thread = threading.Thread(target=first)
    thread.start()
    held.wait(10)
    threading.Timer(0.3, release.set).start()
    with gpus.claim(1, tmp_path, wait=0.05) as index:
        events.append(f"second has {index}")
    thread.join(10)
    assert events == ["first has 0", "first releases", "second has 0"]


@pytest.mark.parametrize(
    ("device", "count", "claims"), [("auto", 4, True), ("auto", 1, False), ("auto", 0, False), ("cuda:1", 4, False)]
)
def test_only_device_auto_on_several_gpus_claims_one(device, count, claims):
    assert gpus.should_claim(device, count) is claims


def test_execute_runs_on_the_claimed_gpu(make_config, tmp_path, monkeypatch):
    seen = {}

    def fake_run(cfg, run_dir, device=None):
        seen["device"] = device
        return {"status": "completed"}

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(execution, "run", fake_run)
    monkeypatch.setenv("LLBBENCH_GPU_LOCKS", str(tmp_path / "locks"))
    cfg = make_config("device=auto")
    with gpus.claim(2, tmp_path / "locks") as taken:  # another run holds one GPU
        assert one_run.execute(cfg, tmp_path / "run") == "completed"
    assert seen["device"] == f"cuda:{1 - taken}"
