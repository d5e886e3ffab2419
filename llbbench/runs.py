"""Run directories: identity, what one run writes, its lock and its checkpoint.

A run's identity is the content of its resolved config (everything that can change the result; not paths,
devices, launcher or logging settings), so its directory `results/<experiment_name>/<id>/` is found again by
the same command. It holds `config.yaml` (resolved), `env.json`, `steps.csv`, `epochs.csv`, `layer_lrs.csv`
(optimizers with per-layer rates), `checkpoint.pt` while it trains, and, once it has ended, `summary.json` with
its final status.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import hashlib
import importlib.metadata
import io
import json
import math
import os
import pickle
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torchvision
from omegaconf import DictConfig, OmegaConf

from . import precision
from .distributed import resolve_sync_bn
from .optim.common import tensors_in

STATUSES = ("completed", "diverged", "stopped", "failed")
CHECKPOINT = "checkpoint.pt"
TUNING_FILE = "tuning.json"  # beside an experiment's run directories, written by `llbbench tune`
SADDLE_FILE = "saddle.json"  # Fig. 8 on a network, written by `llbbench saddle`
CHECKPOINT_KEYS = {"identity", "model", "optimizer", "scheduler", "rng", "progress"}
# a run whose final training loss is finite but above BLOW_UP · ln C (C classes: chance level is ln C) has blown
# up: it is recorded, and reported, as diverged (docs/verdicts.md)
BLOW_UP = 2.0
RUN_FILES = ("config.yaml", "env.json", "steps.csv", "epochs.csv", "layer_lrs.csv", "summary.json", CHECKPOINT)
# config keys that cannot change a run's result: left out of its identity
NOT_IDENTITY = (
    "results_dir",
    "experiment_name",
    "device",
    "rerun",
    "keep_checkpoint",
    "checkpoint_minutes",
    "dataset.root",
    "dataset.download",
    "dataset.num_workers",
    "dataset.format",  # the same pixels, decoded per batch or read from `llbbench prepare-data`'s arrays
    "dataset.predecoded_dir",
    "train.log_every",
    "train.eval_batch_size",
    "tune",  # how rates are tuned, and whether a run takes the tuned rate: the rate itself is in the identity
    "tuned",
)


def identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a resolved config (plain dict) that defines a run: everything but `NOT_IDENTITY`."""
    kept = json.loads(json.dumps(config, default=str))
    kept.pop("hydra", None)
    device = _device_of(str(kept.get("device", "auto")))
    size = kept.pop("world_size", 1)
    size = size if isinstance(size, int) else 1
    if size > 1:  # a run of several processes; one process (every run made before them) leaves both out
        kept["world_size"] = size
    if isinstance(kept.get("train"), dict):  # precision, layout and BatchNorm as resolved on this device
        precision.identity_values(kept["train"], device)
        sync_bn = resolve_sync_bn(kept["train"].pop("sync_bn", None), device, size)
        if size > 1:
            kept["train"]["sync_bn"] = sync_bn
    for dotted in NOT_IDENTITY:
        *parents, leaf = dotted.split(".")
        node = kept
        for key in parents:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    return kept


def _device_of(name: str) -> torch.device:
    """The device a run asking for `name` gets (the CPU for a name that is not one: the run then refuses it)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        return torch.device("cpu")


def run_id(config: Mapping[str, Any]) -> str:
    """A readable prefix (network, optimizer, fold) and a hash of the run's identity, e.g. `resnet34-llb-f2-1a2b…`."""
    digest = hashlib.sha256(json.dumps(identity(config), sort_keys=True).encode()).hexdigest()[:12]
    fold = config.get("fold")
    fold_tag = "fall" if fold is None or str(fold).lower() in ("none", "null") else f"f{fold}"
    return f"{config['model']['name']}-{config['optimizer']['name']}-{fold_tag}-{digest}"


def blow_up_bar(classes: int | None) -> float | None:
    """The training loss above which a run has blown up: BLOW_UP · ln C for C classes (None when C is unknown)."""
    return BLOW_UP * math.log(classes) if classes and classes > 1 else None


def blew_up(train_loss: float | None, classes: int | None) -> str | None:
    """Why a run whose final training loss is finite but `train_loss` blew up ("blew up: ..."), else None."""
    bar = blow_up_bar(classes)
    if bar is None or train_loss is None or not math.isfinite(train_loss) or train_loss <= bar:
        return None
    return f"blew up: the final training loss {train_loss:.4g} is above {BLOW_UP:g}·ln {classes} = {bar:.4g}"


def final_status(path: str | Path) -> str | None:
    """The final status recorded in a run directory, or None when the run has not ended."""
    summary = Path(path) / "summary.json"
    try:
        status = json.loads(summary.read_text()).get("status")
    except (OSError, ValueError):
        return None
    return status if status in STATUSES else None


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from: damaged, unsafe to load, or another config's."""

    def __init__(self, path: Path, problem: str, aside: str = "corrupt") -> None:
        super().__init__(f"{path} {problem}")
        self.path, self.aside = path, aside  # `aside`: the suffix it is moved aside under


def _refusal(error: Exception) -> str:
    """What torch says is wrong with a pickle it would not load (its message, without its advice)."""
    found = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(error))
    return found.group(1).strip() if found else first_line(error)


def first_line(error: BaseException) -> str:
    """An error's message, its first line only (its type's name when it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class RunLock:
    """An exclusive lock on a run directory, held while the run trains.

    It is an advisory `flock` on `<run>/.lock`: the kernel drops it when the holding process ends, however it
    ends (a SIGKILL included), so a lock left by a dead process is taken over by the next one that asks.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path) / ".lock"
        self._file = None

    def acquire(self) -> bool:
        """Take the lock; False when another live process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": platform.node(), "since": _now()}) + "\n")
        handle.flush()
        self._file = handle
        return True

    def holder(self) -> str:
        """Who holds the lock, as its file says (for messages)."""
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def state_bytes(state: Any) -> int:
    """The bytes of the tensors in `state` (nested dicts and lists): about the size of its checkpoint."""
    return sum(t.numel() * t.element_size() for t in tensors_in(state))


def finite_or_null(value: Any) -> Any:
    """`value` (nested dicts and lists) with every NaN or infinite float replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(item) for item in value]
    return value


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunDir:
    """Writes the files of one run directory; tables are appended row by row, JSON written atomically.

    With `write=False` (the processes of a distributed run other than rank 0) it reads, and every write is left
    to the process that writes."""

    def __init__(self, path: str | Path, write: bool = True) -> None:
        self.path = Path(path)
        self.write = write
        if write:
            self.path.mkdir(parents=True, exist_ok=True)

    def write_text(self, name: str, text: str) -> None:
        """Write file `name` atomically: to a temporary file, then `os.replace` (never a half-written file)."""
        if self.write:
            self._replace(name, lambda tmp: tmp.write_text(text))

    def _replace(self, name: str, write: Callable[[Path], object]) -> None:
        """`write(tmp)`, then the temporary file takes `name`'s place; a failure (a full disk) removes it."""
        tmp = self.path / f".{name}.tmp"
        try:
            write(tmp)
            os.replace(tmp, self.path / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def write_json(self, name: str, data: Mapping[str, Any]) -> None:
        """`data` as JSON, a non-finite number (a diverged run's loss) written as null: JSON has no NaN."""
        self.write_text(name, json.dumps(finite_or_null(data), indent=2, default=str, allow_nan=False) + "\n")

    def clear(self) -> None:
        """Remove what an earlier attempt at this run wrote (not the lock, not Hydra's own files)."""
        if not self.write:
            return
        for name in RUN_FILES:
            (self.path / name).unlink(missing_ok=True)

    def write_checkpoint(self, state: Mapping[str, Any]) -> None:
        """Save `state` atomically: to a temporary file, then `os.replace` over the previous checkpoint."""
        if not self.write:
            return
        try:
            self._replace(CHECKPOINT, lambda tmp: torch.save(dict(state), tmp))
        except RuntimeError as e:  # torch's writer reports a full disk as a RuntimeError, without an errno
            if shutil.disk_usage(self.path).free < state_bytes(state):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path / CHECKPOINT)) from e
            raise

    def read_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint, or None without one. It is read as tensors and plain values only (`weights_only`):
        a file that needs anything else to load, a damaged file or one that is not a checkpoint raises
        `CheckpointError` and nothing in it is run."""
        path = self.path / CHECKPOINT
        if not path.exists():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
            if found is None:  # not a pickle torch can read at all: damaged
                raise CheckpointError(path, f"is damaged ({_refusal(e)})") from None
            unsafe = (
                f"holds Python objects other than tensors and plain values ({found.group(1)}), which are not loaded"
            )
            raise CheckpointError(path, f"{unsafe}: nothing of it was run") from None
        except Exception as e:  # empty, cut short, not a torch file: torch raises many types
            raise CheckpointError(path, f"is damaged ({type(e).__name__}: {first_line(e)})") from None
        if not isinstance(state, dict) or not set(state) >= CHECKPOINT_KEYS:
            raise CheckpointError(path, "is not an llbbench checkpoint (it lacks the weights, optimizer or position)")
        return state

    def move_aside(self, name: str, suffix: str) -> Path:
        """Rename file `name` to `name.suffix` (or `name.suffix.N`, never over an earlier one); the new path."""
        target = self.path / f"{name}.{suffix}"
        number = 1
        while target.exists():
            target, number = self.path / f"{name}.{suffix}.{number}", number + 1
        os.replace(self.path / name, target)
        return target

    def remove_checkpoint(self) -> None:
        if self.write:
            (self.path / CHECKPOINT).unlink(missing_ok=True)

    def truncate_rows(self, name: str, column: str, last: int) -> None:
        """Drop the rows of CSV table `name` whose `column` exceeds `last` (rows written after a checkpoint)."""
        path = self.path / name
        if not self.write or not path.exists():
            return
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            fields, rows = reader.fieldnames, [r for r in reader if int(r[column]) <= last]
        self.write_text(name, _csv_text(fields, rows, header=True))

    def append_row(self, name: str, row: Mapping[str, Any]) -> None:
        """Append `row` to CSV table `name`, writing the header first when the file is new. A failed write (a full
        disk) leaves the file as it was, never a row cut in the middle."""
        if not self.write:
            return
        path = self.path / name
        size = path.stat().st_size if path.exists() else None
        try:
            with path.open("a", newline="") as f:
                f.write(_csv_text(list(row), [row], header=size is None))
        except BaseException:
            if size is None:
                path.unlink(missing_ok=True)
            else:
                os.truncate(path, size)
            raise


def _csv_text(fields: list[str], rows: list[Mapping[str, Any]], header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def environment(device: torch.device) -> dict[str, Any]:
    """What a reader needs to know about where and with what a run was made."""
    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = _cpu_model() or platform.processor() or platform.machine()
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpu_count": gpus,
        "gpu_names": [torch.cuda.get_device_name(i) for i in range(gpus)],
        "packages": dependency_versions(),
        "device": str(device),
        "device_name": device_name,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "git_commit": _git_commit(),
        "start_time": _now(),
    }


def dependency_versions() -> dict[str, str | None]:
    """The installed version of each package llbbench depends on (None when one is missing)."""
    try:
        requirements = importlib.metadata.requires("llbbench") or []
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return {}
    names = sorted({re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0] for r in requirements if "extra ==" not in r})
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _git_commit() -> str | None:
    """The commit of the code being run (with "-dirty" when it has uncommitted changes), if it is a checkout."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


# --- the files beside the run directories: tuning.json (`llbbench tune`) ------------------------------------


def optimizer_variant(optimizer: dict[str, Any], train: dict[str, Any]) -> str:
    """The optimizer as a comparison names it: its name, then `+<schedule>` for a schedule other than constant
    and `+global` for LLb-SGD with one shared rate (e.g. `sgd+cosine`, `llb+global`)."""
    label = optimizer["name"]
    if train.get("schedule", "constant") != "constant":
        label += f"+{train['schedule']}"
    if optimizer.get("groups", "layer") == "global":
        label += "+global"
    return label


def read_tuning(file: Path) -> list[dict[str, Any]]:
    """The entries of a tuning.json, each checked: `ValueError` naming the file and the first bad entry."""
    fix = "fix it, or move it away and run llbbench tune again"
    try:
        entries = json.loads(file.read_text())
    except ValueError as e:
        raise ValueError(f"{file} is not valid JSON ({e}): {fix}") from None
    if not isinstance(entries, list):
        raise ValueError(f"{file} holds a {type(entries).__name__}, not a list of entries: {fix}")
    for i, entry in enumerate(entries):
        problem = _tuning_problem(entry)
        if problem is not None:
            name = f" ({entry.get('network')} × {entry.get('optimizer')})" if isinstance(entry, dict) else ""
            raise ValueError(f"{file}: entry {i}{name}: {problem}: {fix}")
    return entries


def _tuning_problem(entry: Any) -> str | None:
    """What is wrong with one entry of tuning.json, or None."""

    def rate(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0

    if not isinstance(entry, dict):
        return f"{entry!r} is not an entry (an object with network, optimizer, grid, val_loss, winner)"
    missing = [key for key in ("network", "optimizer", "grid", "val_loss", "configured") if key not in entry]
    if missing:
        return f"{', '.join(missing)} missing"
    if not isinstance(entry["grid"], list) or not all(rate(r) for r in entry["grid"]):
        return f"grid {entry['grid']!r} is not a list of positive rates"
    if not isinstance(entry["val_loss"], list) or len(entry["val_loss"]) != len(entry["grid"]):
        return f"val_loss {entry['val_loss']!r} does not give one loss (or null) per rate of the grid"
    if not rate(entry["configured"]):
        return f"configured rate {entry['configured']!r} is not a positive number"
    if entry.get("winner") is not None and not rate(entry["winner"]):
        return f"winner {entry['winner']!r} is not a positive number"
    return None


def tuned_rate(cfg: DictConfig) -> float:
    """The winner in tuning.json for the network and optimizer of the run `cfg` (read key by key: this serves
    the resolver of `optimizer.lr` itself)."""
    optimizer = {"name": cfg.optimizer.name, "groups": OmegaConf.select(cfg, "optimizer.groups", default="layer")}
    variant = optimizer_variant(optimizer, {"schedule": OmegaConf.select(cfg, "train.schedule", default="constant")})
    return winner(cfg.results_dir, cfg.experiment_name, cfg.model.name, variant)


def winner(results_dir: str | Path, experiment: str, network: str, optimizer: str) -> float:
    """The tuned rate of (network, optimizer) from the experiment's tuning.json; `ValueError` naming what is missing."""
    path = Path(results_dir) / experiment / TUNING_FILE
    if not path.exists():
        raise ValueError(
            f"tuned=true needs {path}: run `llbbench tune experiment={experiment}` (with the same overrides) first"
        )
    entries = read_tuning(path)
    for entry in entries:
        if entry["network"] == network and entry["optimizer"] == optimizer and entry.get("winner") is not None:
            return float(entry["winner"])
    raise ValueError(
        f"tuned=true: {path} has no tuned rate for {network} × {optimizer}; run `llbbench tune "
        f"experiment={experiment}` with this sweep's overrides to add it"
    )
