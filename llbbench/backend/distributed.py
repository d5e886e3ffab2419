"""One run trained by several processes: PyTorch's DistributedDataParallel, started by `torchrun` or by Slurm.

`llbbench torchrun --nproc_per_node=G run ...` (or torch's `torchrun ... -m llbbench run ...`) starts G processes
of one run; under Slurm (`hydra/launcher=slurm hydra.launcher.tasks_per_node=G hydra.launcher.nodes=N`) every
task of the job is one process, and `start` turns submitit's job environment into torch's
(docs/gpus-and-clusters.md).
`World` is where a process stands in its run: rank, world size, and the few collectives the harness needs (sums
of metrics, rank 0's decisions, every rank's random state for the checkpoint). A single process is `SINGLE`, and
every collective is then a no-op, so that the one-process code path is exactly what it was before distributed
runs existed.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

ENV_WORLD_SIZE = "WORLD_SIZE"  # set by torchrun, and by `start` from Slurm's job environment


@dataclass(frozen=True)
class World:
    """This process's place in its run: `rank` of `size` processes, `local_rank` on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that holds the run's lock and writes its directory."""
        return self.rank == 0

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` summed over every process, in place (as it is in a single process)."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def from_main(self, value: Any) -> Any:
        """Rank 0's `value` on every process (any picklable value): how rank 0's decisions reach the others."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order, on every process."""
        if not self.distributed:
            return [value]
        values: list[Any] = [None] * self.size
        dist.all_gather_object(values, value)
        return values

    def sync_buffers(self, module: torch.nn.Module) -> None:
        """Every buffer of `module` (BatchNorm's running statistics) as rank 0 has it: without synchronised
        BatchNorm each rank's statistics drift from rank 0's, which the checkpoint and the evaluation use."""
        if self.distributed:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)


SINGLE = World()


def configured_size() -> int:
    """How many processes the run of this process has, as its launcher says: torchrun's `WORLD_SIZE`, else 1
    (a Slurm launcher's nodes × tasks_per_node is read from Hydra's config: `config.world_size`)."""
    value = os.environ.get(ENV_WORLD_SIZE)
    if value is None:
        return 1
    try:
        size = int(value)
    except ValueError:
        raise ValueError(f"the environment's {ENV_WORLD_SIZE}={value!r} is not a number of processes") from None
    if size < 1:
        raise ValueError(f"the environment's {ENV_WORLD_SIZE}={size} must be at least 1")
    return size


def process_rank() -> int:
    """This process's rank in its run, from its launcher's environment before any process group exists:
    torchrun's `RANK`, else a submitit Slurm job's task number, else 0."""
    for name in ("RANK", "SLURM_PROCID" if "SUBMITIT_EXECUTOR" in os.environ else None):
        if name and os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def _export_slurm_environment() -> None:
    """Inside a Slurm job of several tasks started by submitit, torch's rendezvous variables from the job's."""
    if ENV_WORLD_SIZE in os.environ or "SUBMITIT_EXECUTOR" not in os.environ:
        return
    try:
        from submitit import JobEnvironment
        from submitit.helpers import TorchDistributedEnvironment
    except ImportError:
        return
    try:
        tasks = JobEnvironment().num_tasks
    except RuntimeError:  # not inside a submitit job
        return
    if tasks > 1:
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def start(device: str, expected_size: int) -> tuple[World, str]:
    """This process's `World` and the device it trains on, the process group started when the run has several
    processes (NCCL on CUDA, gloo on the CPU). `device` is the run's `device` option; `expected_size` is the
    `world_size` its identity was computed with. A mismatch or an unusable device raises `ValueError`."""
    _export_slurm_environment()
    size = configured_size()
    if size != expected_size:
        raise ValueError(
            f"world_size={expected_size} in the run's config, but {size} process(es) started it: let the launcher "
            "set it (torchrun's --nproc_per_node, Slurm's tasks_per_node × nodes), not the command line"
        )
    if size == 1:
        return SINGLE, device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0))
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(
            f"device={device!r} in a run of {size} processes: use auto, cuda (each process takes the GPU of its "
            "local rank) or cpu"
        )
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda and not torch.cuda.is_available():
        raise ValueError("device='cuda' asked for, but CUDA is not available here; use auto or cpu")
    if cuda and local_rank >= torch.cuda.device_count():
        raise ValueError(
            f"local rank {local_rank} has no GPU of its own: this machine has {torch.cuda.device_count()}; start at "
            "most that many processes per machine"
        )
    chosen = f"cuda:{local_rank}" if cuda else "cpu"
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if cuda else "gloo", device_id=torch.device(chosen) if cuda else None)
        atexit.register(_stop)
    elif dist.get_world_size() != size or dist.get_rank() != rank:
        raise ValueError(f"a process group of {dist.get_world_size()} is running, not the run's {size}")
    return World(rank=rank, size=size, local_rank=local_rank), chosen


def _stop() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def resolve_sync_bn(option: bool | None, device: torch.device, size: int) -> bool:
    """`train.sync_bn`: BatchNorm over the global batch (SyncBatchNorm) in a run of several processes; null: on
    CUDA. A single process has nothing to synchronise (false)."""
    if size == 1:
        return False
    return device.type == "cuda" if option is None else bool(option)


def check_sync_bn(option: bool | None, device: torch.device) -> None:
    """`train.sync_bn=true` asks for PyTorch's SyncBatchNorm, which runs on GPUs only: refused on the CPU (also in
    one process, where it would have nothing to synchronise), with what to do instead."""
    if option is True and device.type != "cuda":
        raise ValueError(
            "train.sync_bn=true on the CPU: PyTorch's SyncBatchNorm runs on GPUs only; leave train.sync_bn null "
            "(on CUDA only) or false (each process normalizes by its own part of the batch)"
        )


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank `rank`'s random streams (dropout, for one): the run's own seed on rank 0, so that a
    one-process run keeps its streams, and distinct ones derived from it on the others."""
    return seed if rank == 0 else (seed * 1_000_003 + rank * 7_919) % 2**63


def check_batch(batch_size: int, samples: int, drop_last: bool, world: World) -> None:
    """A global mini-batch must split evenly over the processes (and the last, smaller one, when it is kept,
    must give every process at least one sample); else `ValueError` before anything trains."""
    if not world.distributed:
        return
    if batch_size % world.size:
        raise ValueError(
            f"train.batch_size={batch_size} does not split evenly over {world.size} processes: use a multiple of "
            f"{world.size} (train.batch_size is the global batch; each process takes batch_size / processes)"
        )
    last = samples % batch_size
    if last and not drop_last and last < world.size:
        raise ValueError(
            f"the last mini-batch of an epoch holds {last} of the {samples} training images, fewer than the "
            f"{world.size} processes: use train.drop_last=true or another train.batch_size"
        )


def shard_order(order: torch.Tensor, batch_size: int, world: World, drop_last: bool = False) -> torch.Tensor:
    """This rank's share of an epoch's `order`: of every global batch of `batch_size`, the `world.rank`-th of
    `world.size` consecutive parts. Batched by `batch_size // world.size`, it yields the rank's part of each
    global batch (of the last, smaller one too: its parts differ by at most one)."""
    if not world.distributed:
        return order
    usable = len(order) - len(order) % batch_size if drop_last else len(order)
    parts = [window.tensor_split(world.size)[world.rank] for window in order[:usable].split(batch_size)]
    return torch.cat(parts) if parts else order[:0]


def shard_indices(count: int, world: World) -> torch.Tensor:
    """This rank's contiguous share of `count` samples (an evaluation split)."""
    return torch.arange(count).tensor_split(world.size)[world.rank]
