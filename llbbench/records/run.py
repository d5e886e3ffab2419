"""The run-directory contract: the one place that names a run directory's files, statuses, table columns and
summary keys, and reads and writes them (the training code writes through it, the report, the tune command and
the tests' fixtures read and build through it).

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
import io
import json
import logging
import math
import os
import pickle
import platform
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from .. import optim
from ..backend import precision
from ..backend.device import device_of
from ..backend.distributed import resolve_sync_bn
from ..optim.common import tensors_in
from .environment import now

STATUSES = ("completed", "diverged", "stopped", "failed")  # summary.json's `status`: how a run ended
CONFIG, ENV, SUMMARY, CHECKPOINT = "config.yaml", "env.json", "summary.json", "checkpoint.pt"
STEPS, EPOCHS, LAYER_LRS = "steps.csv", "epochs.csv", "layer_lrs.csv"
TRACKER_STATE, TENSORBOARD_DIR = "trackers.json", "tb"  # records/trackers.py's, in the run directory
# the tables' columns, in order: steps.csv a row every `train.log_every` steps (the mini-batch loss, the mean,
# least and largest rate the step used, the run's training seconds so far); epochs.csv a row per epoch (NaN where
# it was not evaluated); layer_lrs.csv `step`, then one column per layer group (its name)
COLUMNS = {
    STEPS: ("step", "epoch", "loss", "lr", "lr_min", "lr_max", "seconds"),
    EPOCHS: ("epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "seconds",
             "eval_seconds"),
    LAYER_LRS: ("step",),  # then the groups
}  # fmt: skip
# summary.json: every ended run's keys, in order (`final` is the last row of epochs.csv, null before one), then
# those some runs have: what the optimizer reports of itself, a failed run's error, where and why one diverged,
# and (runs since they were recorded) when its last process started, its seconds from then to its first step
# (lock, checks, data, network; the start-up), and when it ended
SUMMARY_KEYS = ("status", "scale", "epochs", "steps", "seconds", "num_params", "num_classes", "final", "model_sha256",
                "resumed_at_steps")  # fmt: skip
SUMMARY_EXTRAS = ("optimizer_record", "error", "diverged_at_step", "diverged_why", "started", "setup_seconds", "ended")
CHECKPOINT_KEYS = {"identity", "model", "optimizer", "scheduler", "rng", "progress"}
# a run whose final training loss is finite but above BLOW_UP · ln C (C classes: chance level is ln C) has blown
# up: it is recorded, and reported, as diverged (docs/verdicts.md)
BLOW_UP = 2.0
RUN_FILES = (CONFIG, ENV, STEPS, EPOCHS, LAYER_LRS, SUMMARY, CHECKPOINT)
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
    "train.threads",  # the exception: a run's CPU threads change its result in the last bits, yet the same run
    # on another machine's cores must find its directory; its config.yaml records the threads it used
    "tune",  # how rates are tuned, and whether a run takes the tuned rate: the rate itself is in the identity
    "tuned",
    "optimizer.label",  # the optimizer's name in the report
    "logger",  # where the records also go (TensorBoard, MLflow, W&B)
    "gpus",  # how many runs share a GPU
)


def identity(config: Mapping[str, Any], with_code: bool = False) -> dict[str, Any]:
    """The part of a resolved config (plain dict) that defines a run: everything but `NOT_IDENTITY`; `with_code`
    (a run being made: its optimizer is imported anyway) adds, for an optimizer from outside llbbench, the
    fingerprint of its code (`optimizer_code`: class, package, version, hash of its module's source), so that a
    fix to it gives new run directories; llbbench's own optimizers have none. A reader of results leaves it out:
    it imports nothing that a config names."""
    kept = json.loads(json.dumps(config, default=str))
    code = optim.code_fingerprint(kept["optimizer"]) if with_code and isinstance(kept.get("optimizer"), dict) else None
    if code is not None:
        kept["optimizer_code"] = code
    kept.pop("hydra", None)
    device = device_of(str(kept.get("device", "auto")))
    size = kept.pop("world_size", 1)
    size = size if isinstance(size, int) else 1
    if size > 1:  # a run of several processes; one process (every run made before them) leaves both out
        kept["world_size"] = size
    if isinstance(kept.get("train"), dict):  # precision, layout and BatchNorm as resolved on this device
        precision.identity_values(kept["train"], device)
        sync_bn = resolve_sync_bn(kept["train"].pop("sync_bn", None), device, size)
        if size > 1:
            kept["train"]["sync_bn"] = sync_bn
    if isinstance(kept.get("dataset"), dict) and kept["dataset"].get("classes", 0) is None:
        del kept["dataset"]["classes"]  # all classes: as every image-folder run made before dataset.classes
    for dotted in NOT_IDENTITY:
        *parents, leaf = dotted.split(".")
        node = kept
        for key in parents:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    return kept


def run_id(config: Mapping[str, Any]) -> str:
    """A readable prefix (network, optimizer, fold) and a hash of the run's identity, e.g. `resnet34-llb-f2-1a2b…`."""
    digest = hashlib.sha256(json.dumps(identity(config, with_code=True), sort_keys=True).encode()).hexdigest()[:12]
    fold = config.get("fold")
    fold_tag = "fall" if fold is None or str(fold).lower() in ("none", "null") else f"f{fold}"
    return f"{config['model']['name']}-{config['optimizer']['name']}-{fold_tag}-{digest}"


def to_log_file(message: str) -> None:
    """`message` into the run's log file (Hydra's file handler: `<run>/run.log`) and not again on the console, for
    what a run prints there itself (its epochs' lines, its status)."""
    logger = logging.getLogger("llbbench.run")
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


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
    summary = Path(path) / SUMMARY
    try:
        status = json.loads(summary.read_text()).get("status")
    except (OSError, ValueError):
        return None
    return status if status in STATUSES else None


def summary_record(**values: Any) -> dict[str, Any]:
    """A summary.json: `SUMMARY_KEYS` (all of them) and any of `SUMMARY_EXTRAS`, in that order; `ValueError` for a
    key missing, one it does not know, or a status not in `STATUSES`."""
    missing = [key for key in SUMMARY_KEYS if key not in values]
    unknown = sorted(set(values) - set(SUMMARY_KEYS) - set(SUMMARY_EXTRAS))
    if missing or unknown:
        raise ValueError(f"a summary.json needs {', '.join(missing) or '-'} and has no key {', '.join(unknown) or '-'}")
    if values["status"] not in STATUSES:
        raise ValueError(f"status {values['status']!r} is not one of {', '.join(STATUSES)}")
    return {key: values[key] for key in (*SUMMARY_KEYS, *SUMMARY_EXTRAS) if key in values}


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
        handle.write(json.dumps({"pid": os.getpid(), "host": platform.node(), "since": now()}) + "\n")
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


class RunDir:
    """Writes the files of one run directory; tables are appended row by row, JSON written atomically.

    With `write=False` (the processes of a distributed run other than rank 0) it reads, and every write is left
    to the process that writes."""

    def __init__(self, path: str | Path, write: bool = True) -> None:
        self.path = Path(path)
        self.write = write
        self.trackers: Any = None  # records/trackers.Trackers: where appended rows and the summary also go
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
        (self.path / TRACKER_STATE).unlink(missing_ok=True)  # a fresh start is a new tracked run
        shutil.rmtree(self.path / TENSORBOARD_DIR, ignore_errors=True)  # and a new curve

    def write_checkpoint(self, state: Mapping[str, Any]) -> None:
        """Save `state` atomically: to a temporary file, then `os.replace` over the previous checkpoint."""
        if not self.write:
            return
        if self.trackers is not None:  # what the checkpoint covers is with the trackers too: no gap on a resume
            self.trackers.flush()
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

    def write_config(self, values: Mapping[str, Any]) -> None:
        """config.yaml: the run's resolved config (plain values)."""
        self.write_text(CONFIG, OmegaConf.to_yaml(values))

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """summary.json, checked against the contract (`summary_record`): the run has ended."""
        self.write_json(SUMMARY, summary_record(**summary))
        if self.trackers is not None and self.write:
            self.trackers.summary(summary)

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
        """Append `row` to CSV table `name`, writing the header first when the file is new; a table of the
        contract takes rows of its `COLUMNS` only (`ValueError`). A failed write (a full disk) leaves the file as
        it was, never a row cut in the middle."""
        columns = COLUMNS.get(name)
        if columns is not None and (tuple(row)[: len(columns)] if name == LAYER_LRS else tuple(row)) != columns:
            groups = ", then one per layer group" if name == LAYER_LRS else ""
            raise ValueError(
                f"a row of {name} has the columns {', '.join(row)}, not the contract's: {', '.join(columns)}{groups}"
            )
        if not self.write:
            return
        self._append(name, row)
        if self.trackers is not None:
            self.trackers.row(name, row)

    def _append(self, name: str, row: Mapping[str, Any]) -> None:
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
