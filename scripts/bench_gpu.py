"""What the GPU path costs and gains, measured by one command (`make bench-gpu`).

On the device it runs on (a GPU when there is one), in one process:
- training images/s of each network (forward, backward, SGD step on a random batch): the CIFAR form at batch 128
  and the ImageNet form at batch 256 (or the largest of 256, 128, 64, 32 that fits), under fp32, tf32 and bf16,
  each with and without channels_last (without only, on the CPU: llbbench/backend/precision.py);
- the harness's step (autocast, LLb-SGD through `optim.backward_and_step`) against a bare PyTorch loop with
  `torch.optim.SGD` on the same batch: their time ratio;
- CIFAR batching's share of an epoch (cutting and normalizing the batches of the device-held uint8 tensor,
  against ResNet-34's training of the epoch);
- host synchronizations inside LLb-SGD's, ESGD's and Path-SGD's steps (CUDA's sync debug mode; "n/a" on the CPU);
- whether each of those optimizers' state is on the device after loading a checkpoint saved to the CPU;
- one short ImageNet-format run (a generated image folder) through the folder pipeline and through
  `llbbench prepare-data`'s arrays, with evaluation: both times and whether the weights are equal;
- the peak memory of the process (CUDA: allocated; CPU: resident);
- several runs on one device (`gpus.runs_per_gpu`): the summed training images/s of k = 1, 2, 4, 8 concurrent
  processes (ResNet-34, CIFAR form, batch 128, bf16 and channels_last on CUDA), each timed over the same window,
  and the best k;
- `train.compile`: each network's training images/s eager and through `torch.compile` (CIFAR form, batch 128).
Writes results/bench/gpu.json (`--quick`: tiny sizes, two networks, results/bench/gpu_quick.json, under two
minutes on a CPU so that the script cannot rot) and a Markdown summary on stdout.

    python scripts/bench_gpu.py [--quick] [--steps 10] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from llbbench import models, optim
from llbbench import run as one_run
from llbbench.backend import precision
from llbbench.config import compose
from llbbench.optim.common import tensors_in
from llbbench.records.environment import environment

ROOT = Path(__file__).resolve().parent.parent
NETWORKS = ("resnet34", "resnet50", "alexnet", "vgg16", "googlenet", "resnet152")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(name: str, form: str, batch: int, numeric: str, nhwc: bool, args, device) -> float | None:
    """Training images/s of network `name` (None when the batch does not fit)."""
    size = 32 if form == "cifar" else 224
    torch.manual_seed(0)
    model = models.build(name, 10 if form == "cifar" else 1000, (3, size, size), form=form, width=args.width)
    model.to(device, memory_format=torch.channels_last if nhwc else torch.preserve_format)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, 3, size, size, device=device)
    x = x.contiguous(memory_format=torch.channels_last) if nhwc else x
    y = torch.randint(0, 10, (batch,), device=device)
    precision.configure(numeric, device)
    try:
        seconds = step_seconds(model, opt, x, y, numeric, device, args.warmup, args.steps)
    except torch.OutOfMemoryError:
        return None
    finally:
        del model, opt
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return batch / seconds


def step_seconds(forward, opt, x, y, numeric: str, device, warmup: int, steps: int) -> float:
    """The median seconds of a training step (forward under `numeric`, backward, SGD step) after `warmup` steps."""
    times = []
    for step in range(warmup + steps):
        _sync(device)
        start = time.perf_counter()
        with precision.autocast(numeric, device):
            loss = F.cross_entropy(forward(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def cifar_batching_share(args, device, throughput: list[dict]) -> dict[str, float]:
    """Seconds to cut and normalize one CIFAR-10 epoch of batches of 128 (the data held as one uint8 tensor on the
    device, as runs hold it) against the seconds ResNet-34 trains on that epoch in the default precision."""
    from llbbench.data import TensorSplit, epoch_order

    n = 2_000 if args.quick else 50_000
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator).to(device)
    mean = torch.tensor([0.49, 0.48, 0.45], device=device).view(-1, 1, 1)
    split = TensorSplit(images, torch.zeros(n, dtype=torch.long, device=device), mean, mean.new_full((3, 1, 1), 0.25))
    batch = 8 if args.quick else 128
    _sync(device)
    start = time.perf_counter()
    for x, _ in split.batches(batch, epoch_order(n, 0, 1)):
        x.sum()  # use the batch, as training does
    _sync(device)
    batching = time.perf_counter() - start
    default = precision.resolve("auto", device)
    rates = [r["images_per_second"] for r in throughput if r["network"] == "resnet34" and r["form"] == "cifar"
             and r["precision"] == default and r["channels_last"] == (device.type == "cuda")]  # fmt: skip
    training = n / rates[0] if rates and rates[0] else float("nan")
    return {"images": n, "batching_seconds": batching, "resnet34_training_seconds": training,
            "share": batching / (batching + training)}  # fmt: skip


def harness_ratio(args, device) -> dict[str, float]:
    """Seconds per step of the harness's LLb-SGD step against a bare `torch.optim.SGD` loop, same batch."""
    size, name = 32, args.networks[0]
    x = torch.randn(128 if not args.quick else 16, 3, size, size, device=device)
    y = torch.randint(0, 10, (len(x),), device=device)
    numeric = precision.resolve("auto", device)
    result = {}
    for label in ("bare_sgd", "harness_llb"):
        torch.manual_seed(0)
        model = models.build(name, 10, (3, size, size), width=args.width).to(device)
        if label == "bare_sgd":
            opt, spec = torch.optim.SGD(model.parameters(), lr=0.01), None
        else:
            opt, spec = optim.build("llb", model, input_shape=(3, size, size), lr=0.01), optim.get("llb")
        times = []
        for step in range(args.warmup + args.steps):
            _sync(device)
            start = time.perf_counter()
            with precision.autocast(numeric, device) if spec else contextlib.nullcontext():
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            if spec:
                optim.backward_and_step(spec, opt, loss)
            else:
                loss.backward()
                opt.step()
            _sync(device)
            if step >= args.warmup:
                times.append(time.perf_counter() - start)
        result[label] = statistics.median(times)
    result["ratio"] = result["harness_llb"] / result["bare_sgd"]
    return result


def host_syncs(args, device) -> dict[str, float | str]:
    """Synchronizations per optimizer step that CUDA's sync debug mode reports, per optimizer."""
    if device.type != "cuda":
        return {name: "n/a (CPU)" for name in ("llb", "esgd", "pathsgd")}
    counts = {}
    x = torch.randn(16, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (16,), device=device)
    for name in ("llb", "esgd", "pathsgd"):
        torch.manual_seed(0)
        model = models.build("resnet34", 10, (3, 32, 32), width=args.width).to(device)
        opt, spec = optim.build(name, model, input_shape=(3, 32, 32), lr=0.01), optim.get(name)
        loss = F.cross_entropy(model(x), y)  # a first step off the count (state set-up)
        opt.zero_grad(set_to_none=True)
        optim.backward_and_step(spec, opt, loss)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(args.steps):
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                torch.cuda.set_sync_debug_mode("warn")
                optim.backward_and_step(spec, opt, loss)
                torch.cuda.set_sync_debug_mode(0)
        counts[name] = sum("synchroniz" in str(w.message) for w in caught) / args.steps
    return counts


def state_after_loading(args, device) -> dict[str, bool]:
    """Whether each optimizer's state is on `device` after a checkpoint saved to the CPU is loaded back there."""
    import io

    found = {}
    x = torch.randn(8, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (8,), device=device)
    for name in ("llb", "esgd", "pathsgd"):
        models_ = []
        for _ in range(2):
            torch.manual_seed(0)
            models_.append(models.build("resnet34", 10, (3, 32, 32), width=args.width).to(device))
        opt, spec = optim.build(name, models_[0], input_shape=(3, 32, 32), lr=0.01), optim.get(name)
        for _ in range(2):
            loss = F.cross_entropy(models_[0](x), y)
            opt.zero_grad(set_to_none=True)
            optim.backward_and_step(spec, opt, loss)
        buffer = io.BytesIO()
        torch.save(opt.state_dict(), buffer)
        buffer.seek(0)
        resumed = optim.build(name, models_[1], input_shape=(3, 32, 32), lr=0.01)
        resumed.load_state_dict(torch.load(buffer, map_location="cpu", weights_only=True))
        tensors = [t for v in resumed.state.values() for t in tensors_in(v) if t.is_floating_point()]
        found[name] = bool(tensors) and all(t.device.type == device.type for t in tensors)
    return found


def folder_against_arrays(args, device) -> dict[str, float | bool]:
    """A short run on a generated ImageNet-format folder, through the folder and through predecoded arrays."""
    from llbbench.data import fingerprint, predecoded

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        rng = np.random.default_rng(0)
        per_class = 8 if args.quick else 64
        for split, count in (("train", per_class), ("val", per_class // 4)):
            for c in range(4):
                folder = root / split / f"class{c}"
                folder.mkdir(parents=True)
                for i in range(count):
                    pixels = (rng.integers(0, 80, (300, 260, 3)) + 40 * c).astype(np.uint8)
                    Image.fromarray(pixels).save(folder / f"{i}.JPEG", quality=90)
        base = ["dataset=imagefolder", f"dataset.root={root}", "dataset.num_workers=0" if args.quick else
                "dataset.num_workers=4", "model=resnet34", f"model.width={args.width}", "train.epochs=1",
                "train.batch_size=8", "optimizer=sgd", "optimizer.lr=0.01", "cv.folds=2", f"results_dir={tmp}/r",
                f"device={device}"]  # fmt: skip
        out = {}
        start = time.perf_counter()
        prepared = compose(base)
        options = {**prepared.dataset, "format": "folder"}
        predecoded.prepare(dict(options), fingerprint(dict(options)))
        out["prepare_seconds"] = time.perf_counter() - start
        digests = {}
        for fmt in ("folder", "predecoded"):
            start = time.perf_counter()
            summary = one_run.run(compose([*base, f"dataset.format={fmt}"]), Path(tmp) / fmt)
            out[f"{fmt}_seconds"] = time.perf_counter() - start
            digests[fmt] = summary["model_sha256"]
        out["same_weights"] = digests["folder"] == digests["predecoded"]
    return out


def peak_memory(device) -> dict[str, float]:
    if device.type == "cuda":
        return {"cuda_max_allocated_gib": torch.cuda.max_memory_allocated(device) / 2**30}
    return {"max_resident_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def _packed_worker(rank: int, spec: dict, barrier, results) -> None:
    """One of k concurrent runs: warm up, wait for the others, then time `spec["steps"]` steps."""
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    torch.manual_seed(rank)
    model = models.build(spec["network"], 10, (3, 32, 32), form="cifar", width=spec["width"])
    nhwc = device.type == "cuda"
    model.to(device, memory_format=torch.channels_last if nhwc else torch.preserve_format)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(spec["batch"], 3, 32, 32, device=device)
    x = x.contiguous(memory_format=torch.channels_last) if nhwc else x
    y = torch.randint(0, 10, (spec["batch"],), device=device)
    numeric = "bf16" if device.type == "cuda" else "fp32"

    def step() -> None:
        with precision.autocast(numeric, device):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(spec["warmup"]):
        step()
    _sync(device)
    barrier.wait()
    start = time.perf_counter()
    for _ in range(spec["steps"]):
        step()
    _sync(device)
    results.put(spec["batch"] * spec["steps"] / (time.perf_counter() - start))


def packing(args, device) -> dict:
    """Summed training images/s of k concurrent processes on `device`, for each k; the best k."""
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    cores = torch.get_num_threads() if device.type == "cpu" and not args.quick else 1  # quick: 1 thread a process
    measured = {}
    for k in args.packing:
        spec = {"device": str(device), "network": "resnet34", "width": args.width, "batch": 8 if args.quick else 128,
                "warmup": args.warmup, "steps": args.steps * 2, "threads": max(1, cores // k)}  # fmt: skip
        barrier, results = context.Barrier(k), context.Queue()
        workers = [context.Process(target=_packed_worker, args=(r, spec, barrier, results)) for r in range(k)]
        for w in workers:
            w.start()
        rates = [results.get(timeout=900) for _ in workers]
        for w in workers:
            w.join()
        measured[str(k)] = round(sum(rates), 2)
        print(f"packing k={k}: {measured[str(k)]:.1f} img/s summed", file=sys.stderr)
    best = max(measured, key=measured.get)
    return {"network": "resnet34", "images_per_second": measured, "best_k": int(best),
            "gain_of_best": round(measured[best] / measured["1"], 3)}  # fmt: skip


def compiled_against_eager(args, device) -> list[dict]:
    """Each network's training images/s eager and compiled (CIFAR form, batch 128; bf16 on CUDA)."""
    rows = []
    numeric = "bf16" if device.type == "cuda" else "fp32"
    for name in args.compile_networks:
        rates = {}
        for mode in ("eager", "compiled"):
            torch.manual_seed(0)
            model = models.build(name, 10, (3, 32, 32), form="cifar", width=args.width).to(device)
            trained = torch.compile(model) if mode == "compiled" else model
            opt = torch.optim.SGD(model.parameters(), lr=0.01)
            batch = 8 if args.quick else 128
            x, y = torch.randn(batch, 3, 32, 32, device=device), torch.randint(0, 10, (batch,), device=device)
            # one more warm-up step: the compilation
            rates[mode] = batch / step_seconds(trained, opt, x, y, numeric, device, args.warmup + 1, args.steps)
        rows.append({"network": name, "eager": round(rates["eager"], 2), "compiled": round(rates["compiled"], 2),
                     "ratio": round(rates["compiled"] / rates["eager"], 3)})  # fmt: skip
        print(f"{name}: eager {rates['eager']:.1f}, compiled {rates['compiled']:.1f} img/s", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, two networks: the CPU check")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", type=Path, help="where to write the JSON (default: results/bench/gpu[_quick].json)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.networks = NETWORKS[:1] + NETWORKS[2:3] if args.quick else NETWORKS
    args.width = 0.0625 if args.quick else 1.0
    args.warmup = 1 if args.quick else 3
    args.steps = 2 if args.quick else args.steps
    batches = {"cifar": (8,) if args.quick else (128,), "imagenet": (4,) if args.quick else (256, 128, 64, 32)}
    args.packing = (1, 2) if args.quick else (1, 2, 4, 8)
    args.compile_networks = ("smallcnn",) if args.quick else NETWORKS
    throughput = []
    for name in args.networks:
        for form, sizes in batches.items():
            for numeric in ("fp32", "tf32", "bf16"):
                for nhwc in (False, True) if device.type == "cuda" else (False,):  # refused on the CPU
                    for batch in sizes:  # the largest that fits
                        rate = images_per_second(name, form, batch, numeric, nhwc, args, device)
                        if rate is not None:
                            break
                    throughput.append({"network": name, "form": form, "batch": batch, "precision": numeric,
                                       "channels_last": nhwc, "images_per_second": rate})  # fmt: skip
                    print(f"{name} {form} b{batch} {numeric} nhwc={nhwc}: {rate or 0:.1f} img/s", file=sys.stderr)
    result = {
        "quick": args.quick,
        "device": str(device),
        "environment": environment(device),
        "throughput": throughput,
        "harness_step": harness_ratio(args, device),
        "cifar_batching": cifar_batching_share(args, device, throughput),
        "host_syncs_per_step": host_syncs(args, device),
        "state_on_device_after_loading": state_after_loading(args, device),
        "imagenet_format_run": folder_against_arrays(args, device),
        "peak_memory": peak_memory(device),
        "packing": packing(args, device),
        "compile": compiled_against_eager(args, device),
    }
    out = args.out or ROOT / "results" / "bench" / ("gpu_quick.json" if args.quick else "gpu.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    print("| network | form | batch | precision | channels_last | images/s |\n| --- | --- | ---: | --- | --- | ---: |")
    for r in throughput:
        shown = f"{r['images_per_second']:.1f}" if r["images_per_second"] else "did not fit"
        print(f"| {r['network']} | {r['form']} | {r['batch']} | {r['precision']} | {r['channels_last']} | {shown} |")
    print(f"\nharness LLb-SGD step / bare SGD step: {result['harness_step']['ratio']:.2f}")
    print(f"CIFAR batching's share of a ResNet-34 epoch: {result['cifar_batching']['share']:.1%}")
    print(f"host syncs per step: {result['host_syncs_per_step']}")
    print(f"optimizer state on the device after loading a CPU checkpoint: {result['state_on_device_after_loading']}")
    print(f"ImageNet-format run: {result['imagenet_format_run']}")
    print(f"peak memory: {result['peak_memory']}")
    shown = ", ".join(f"k={k}: {v:.1f}" for k, v in result["packing"]["images_per_second"].items())
    print(f"runs per device (summed images/s): {shown}; best k = {result['packing']['best_k']}")
    print("compiled / eager images/s: " + ", ".join(f"{r['network']} {r['ratio']:.2f}" for r in result["compile"]))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
