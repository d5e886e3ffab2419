"""`train.precision` and `train.channels_last`: bf16 autocast trains on the CPU, the resolved values are recorded
and part of the run's identity, and fp32 / channels_last off keep the identity runs had before the options."""

from __future__ import annotations

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from llbbench import run as one_run
from llbbench.backend import precision
from llbbench.records.run import identity, run_id


def test_auto_is_fp32_on_the_cpu_and_bad_values_are_named():
    cpu = torch.device("cpu")
    assert precision.resolve("auto", cpu) == "fp32" and precision.resolve("bf16", cpu) == "bf16"
    assert precision.resolve_channels_last(None, cpu) is False
    assert precision.resolve_channels_last(None, torch.device("cuda")) is True
    with pytest.raises(ValueError, match=r"train\.precision='fp8' is not one of auto, fp32, tf32, bf16"):
        precision.resolve("fp8", cpu)


def test_a_bf16_run_trains_under_autocast_and_records_it(make_config, tmp_path, monkeypatch):
    seen = []
    real = precision.autocast

    def spy(numeric, device):
        seen.append(numeric)
        return real(numeric, device)

    monkeypatch.setattr(precision, "autocast", spy)
    bf16 = one_run.run(make_config("train.precision=bf16", "train.epochs=1"), tmp_path / "bf16")
    fp32 = one_run.run(make_config("train.epochs=1"), tmp_path / "fp32")
    assert bf16["status"] == fp32["status"] == "completed"
    assert set(seen) == {"bf16", "fp32"} and seen[0] == "bf16"
    assert bf16["model_sha256"] != fp32["model_sha256"]  # bfloat16 forward passes: other weights
    assert all(v < 10 for v in (bf16["final"]["train_loss"], bf16["final"]["test_loss"]))
    config = yaml.safe_load((tmp_path / "bf16" / "config.yaml").read_text())
    assert (config["train"]["precision"], config["train"]["channels_last"]) == ("bf16", False)
    auto = yaml.safe_load((tmp_path / "fp32" / "config.yaml").read_text())
    assert (auto["train"]["precision"], auto["train"]["channels_last"]) == ("fp32", False)  # auto, resolved


def test_channels_last_is_refused_on_the_cpu_with_the_reason(make_config, tmp_path):
    with pytest.raises(ValueError, match=r"train\.channels_last=true on the CPU: PyTorch's CPU backward"):
        one_run.prepare(make_config("train.channels_last=true"))
    assert one_run.prepare(make_config("train.channels_last=false")).channels_last is False


def test_the_identity_holds_the_resolved_values_and_keeps_older_runs_ids(make_config):
    def resolved(*overrides):
        return OmegaConf.to_container(make_config(*overrides), resolve=True)

    plain = resolved()
    assert run_id(plain) == run_id(resolved("train.precision=fp32")) == run_id(resolved("train.channels_last=false"))
    older = {**plain, "train": {k: v for k, v in plain["train"].items() if k not in ("precision", "channels_last")}}
    assert run_id(older) == run_id(plain)  # a run made before the options existed keeps its directory
    assert identity(resolved("train.precision=bf16"))["train"]["precision"] == "bf16"
    assert len({run_id(plain), run_id(resolved("train.precision=bf16")), run_id(resolved("train.precision=tf32")),
                run_id(resolved("train.channels_last=true"))}) == 4  # fmt: skip


@pytest.mark.parametrize("name", ["esgd", "pathsgd"])
def test_optimizers_with_second_order_or_model_passes_train_under_bf16(make_config, tmp_path, name):
    """ESGD's Hessian-vector products and Path-SGD's κ run in step(), outside the autocast of the forward pass."""
    cfg = make_config(f"optimizer={name}", "optimizer.lr=0.01", "train.precision=bf16", "train.epochs=1")
    summary = one_run.run(cfg, tmp_path / name)
    assert summary["status"] == "completed" and summary["final"]["train_loss"] < 2.3
