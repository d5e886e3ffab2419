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


def test_k_runs_share_a_gpu_and_the_next_one_waits(tmp_path):
    """gpus.runs_per_gpu=k: up to k claims of one GPU index at once, GPU by GPU, never more than k a GPU."""
    with gpus.claim(2, tmp_path, per_gpu=2) as a, gpus.claim(2, tmp_path, per_gpu=2) as b:
        assert sorted([a, b]) == [0, 1]  # spread over the GPUs first
        with gpus.claim(2, tmp_path, per_gpu=2) as c, gpus.claim(2, tmp_path, per_gpu=2) as d:
            assert sorted([c, d]) == [0, 1]  # then each GPU's second slot
            got: list[int] = []
            waiting = threading.Thread(target=lambda: got.append(_claim_once(tmp_path)))
            waiting.start()
            waiting.join(timeout=0.5)
            assert waiting.is_alive() and not got  # the fifth waits: every slot of both GPUs is held
        waiting.join(timeout=10)
        assert got and got[0] in (0, 1)  # and takes a slot once one is free
    with (
        pytest.raises(ValueError, match=r"gpus\.runs_per_gpu=0 must be at least 1"),
        gpus.claim(1, tmp_path, per_gpu=0),
    ):
        pass


def _claim_once(folder) -> int:
    with gpus.claim(2, folder, wait=0.05, per_gpu=2) as index:
        return index


def test_one_gpu_shared_by_several_runs_is_claimed():
    assert gpus.should_claim("auto", 1, per_gpu=4) and not gpus.should_claim("auto", 1, per_gpu=1)
    assert not gpus.should_claim("cuda:0", 1, per_gpu=4)
