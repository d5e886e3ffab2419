"""Where a run's records also go, as they are written: TensorBoard, MLflow and Weights & Biases (`logger=[...]`).

The run's files stay the source of truth; a tracker receives what they receive — the resolved config as
hyper-parameters (with the run id, experiment, scale), every row of steps.csv, layer_lrs.csv and epochs.csv, and
the summary (the status, the final metrics). A tracker that fails (its package missing, its server down, a full
disk) is named in one warning line and dropped; the run goes on with its files.

A resumed run continues the same tracked run with one unbroken curve: TensorBoard writes into the same folder and
purges the events past the checkpoint (`purge_step`); MLflow and W&B continue the run whose id `trackers.json`
holds, and skip the rows they already have (a resumed run recomputes them bit for bit).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import logging
import math
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .run import EPOCHS, LAYER_LRS, STEPS, TENSORBOARD_DIR
from .run import TRACKER_STATE as STATE  # in the run directory: the tracked runs' ids, for a resume

log = logging.getLogger(__name__)

MLFLOW_DB = "mlflow.db"  # beside the experiments of results_dir, unless logger.mlflow.tracking_uri names a store
# each logger: the module it needs, and the extra that installs it
NEEDS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow"), "wandb": ("wandb", "wandb")}
STEP = "step"  # every table's x-axis: the optimizer step (a column of steps.csv, layer_lrs.csv, epochs.csv)
PREFIX = {STEPS: "train/", LAYER_LRS: "layer_lr/", EPOCHS: "epoch/"}


def missing(loggers: Mapping[str, Any] | None) -> list[str]:
    """One line for each chosen logger whose package is not installed, naming the extra that installs it."""
    lines = []
    for name in loggers or {}:
        module, extra = NEEDS[name]
        try:
            importlib.import_module(module)
        except ImportError:
            lines.append(f"logger={name} needs the {module} package: pip install 'llbbench[{extra}]'")
    return lines


@dataclass(frozen=True)
class RunInfo:
    """What a tracker names its run by."""

    run_id: str
    run_dir: Path
    results_dir: Path
    experiment: str
    config: Mapping[str, Any]  # the run's config as config.yaml records it

    def tags(self) -> dict[str, str]:
        c = self.config
        return {"run_id": self.run_id, "experiment": self.experiment, "scale": str(c.get("scale")),
                "network": str(c["model"]["name"]), "optimizer": str(c["optimizer"]["name"]),
                "fold": str(c.get("fold"))}  # fmt: skip

    def params(self) -> dict[str, Any]:
        """The config flattened to dotted keys of plain values (lists as text), the tags beside them."""
        return {**dict(_flat(self.config)), **self.tags()}


def _flat(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in values.items():
        if isinstance(value, Mapping):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value if isinstance(value, bool | int | float | str) else str(value)


def numbers(table: str, row: Mapping[str, Any]) -> dict[str, float]:
    """A row's values as metrics (their names prefixed by the table's), the non-finite ones (not evaluated) left
    out."""
    keep = {}
    for key, value in row.items():
        if key == STEP or not isinstance(value, int | float) or isinstance(value, bool):
            continue
        if math.isfinite(value):
            keep[PREFIX[table] + key] = float(value)
    return keep


def _dropped(name: str, what: str, error: Exception) -> None:
    """The one warning line of a logger that is dropped."""
    first = str(error).splitlines()[0] if str(error) else ""
    log.warning("logger %s %s (%s: %s); the run goes on with its files", name, what, type(error).__name__, first)


class Trackers:
    """The chosen trackers of one run; any call that fails drops that tracker with one warning line."""

    def __init__(self, trackers: list[Any]) -> None:
        self.trackers = trackers

    def _each(self, what: str, *args: Any) -> None:
        for tracker in list(self.trackers):
            try:
                getattr(tracker, what)(*args)
            except Exception as e:  # a tracker never stops the run
                _dropped(tracker.name, "failed", e)
                self.trackers.remove(tracker)

    def row(self, table: str, row: Mapping[str, Any]) -> None:
        self._each("row", table, row)

    def summary(self, summary: Mapping[str, Any]) -> None:
        self._each("summary", summary)

    def flush(self) -> None:
        self._each("flush")

    def close(self) -> None:
        self._each("close")


def start(loggers: Mapping[str, Any] | None, info: RunInfo, resumed_at: int) -> Trackers:
    """The trackers `loggers` chooses (config `logger`: name → options), started for the run; `resumed_at`: the
    step the run resumes from (0: a fresh start)."""
    state_file = info.run_dir / STATE
    state = json.loads(state_file.read_text()) if resumed_at and state_file.exists() else {}
    started: list[Any] = []
    for name, options in (loggers or {}).items():
        try:
            started.append(TRACKERS[name](dict(options or {}), info, resumed_at, state))
        except Exception as e:
            _dropped(name, "could not start", e)
    if any(name in state for name in ("mlflow", "wandb")) or started:
        state_file.write_text(json.dumps(state, indent=1) + "\n")
    return Trackers(started)


class TensorBoard:
    """Event files in `<run>/tb/` (or `logger.tensorboard.dir/<experiment>/<run id>`): `tensorboard --logdir
    results/small` shows a whole sweep."""

    name = "tensorboard"

    def __init__(self, options: dict[str, Any], info: RunInfo, resumed_at: int, state: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        root = options.get("dir")
        folder = Path(root) / info.experiment / info.run_id if root else info.run_dir / TENSORBOARD_DIR
        # on a resume, the events past the checkpoint's step (written before the run stopped) are purged
        self.writer = SummaryWriter(str(folder), purge_step=resumed_at + 1 if resumed_at else None)
        self.params = info.params()
        if not resumed_at:
            text = "\n".join(f"    {key}: {value}" for key, value in self.params.items())
            self.writer.add_text("config", text, 0)

    def row(self, table: str, row: Mapping[str, Any]) -> None:
        for key, value in numbers(table, row).items():
            self.writer.add_scalar(key, value, int(row[STEP]))

    def summary(self, summary: Mapping[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        final = {f"final/{k}": float(v) for k, v in (summary.get("final") or {}).items()
                 if isinstance(v, int | float) and math.isfinite(v)}  # fmt: skip
        for summary_proto in hparams({**self.params, "status": summary["status"]}, final):
            self.writer.file_writer.add_summary(summary_proto)
        for key, value in final.items():
            self.writer.add_scalar(key, value, int(summary.get("steps") or 0))
        self.writer.flush()

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MLflow:
    """One MLflow run per llbbench run, in one MLflow experiment per llbbench experiment, tagged with the network,
    optimizer, fold and run id; the store `logger.mlflow.tracking_uri` (default: SQLite in results_dir)."""

    name = "mlflow"

    def __init__(self, options: dict[str, Any], info: RunInfo, resumed_at: int, state: dict[str, Any]) -> None:
        from mlflow.tracking import MlflowClient

        for noisy in ("mlflow", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        uri = options.get("tracking_uri") or f"sqlite:///{(info.results_dir / MLFLOW_DB).resolve()}"
        with _one_at_a_time(uri):  # a sweep's runs starting together: one creates the store's tables
            self.client = MlflowClient(uri)
            self._open(info, options.get("experiment") or info.experiment, resumed_at, state)
        state["mlflow"] = {"run_id": self.run_id, "tracking_uri": uri}

    def _open(self, info: RunInfo, experiment: str, resumed_at: int, state: dict[str, Any]) -> None:
        """Continue the run's MLflow run (a resume), or create one with the run's params."""
        from mlflow.entities import Param

        known = state.get("mlflow") if resumed_at else None
        if known:
            self.run_id = known["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            self.done = {t: self._last_step(t) for t in PREFIX}
        else:
            created = self.client.create_run(self._experiment(experiment), run_name=info.run_id, tags=info.tags())
            self.run_id = created.info.run_id
            params = [Param(k, str(v)[:6000]) for k, v in info.params().items()]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
                self.client.log_batch(self.run_id, params=params[i : i + 100])
            self.done = {t: -1 for t in PREFIX}

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name)
        except Exception:  # another run of the sweep created it first
            return self.client.get_experiment_by_name(name).experiment_id

    def _last_step(self, table: str) -> int:
        """The last step of `table` this MLflow run has (the run stopped after it): rows up to it are not sent
        again."""
        key = {STEPS: "train/loss", EPOCHS: "epoch/train_loss", LAYER_LRS: None}[table]
        if key is None:
            metrics = [k for k in self.client.get_run(self.run_id).data.metrics if k.startswith(PREFIX[LAYER_LRS])]
            key = metrics[0] if metrics else None
        history = self.client.get_metric_history(self.run_id, key) if key else []
        return max((m.step for m in history), default=-1)

    def row(self, table: str, row: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric

        step = int(row[STEP])
        if step <= self.done[table]:
            return
        stamp = int(time.time() * 1000)
        metrics = [Metric(k, v, stamp, step) for k, v in numbers(table, row).items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])
        self.done[table] = step

    def summary(self, summary: Mapping[str, Any]) -> None:
        self.client.set_tag(self.run_id, "status", summary["status"])
        status = "FAILED" if summary["status"] == "failed" else "FINISHED"
        self.client.set_terminated(self.run_id, status=status)

    def flush(self) -> None:
        pass  # every row was sent as it came

    def close(self) -> None:
        pass


class WandB:
    """Weights & Biases: one W&B run per run (group: the experiment; job type: the optimizer), `mode` offline by
    default (files under `dir`, default results_dir/wandb/; `wandb sync` uploads them) or online. Rows are sent at
    each checkpoint (every epoch's end and every `checkpoint_minutes`) and at the end: what W&B has is then always
    covered by a checkpoint, so a resumed run (the same W&B run, `resume`) never sends a step twice and leaves no
    gap."""

    name = "wandb"

    def __init__(self, options: dict[str, Any], info: RunInfo, resumed_at: int, state: dict[str, Any]) -> None:
        import wandb

        known = state.get("wandb") if resumed_at else None
        run_id = known["id"] if known else uuid.uuid4().hex[:12]
        folder = Path(options.get("dir") or info.results_dir)
        folder.mkdir(parents=True, exist_ok=True)
        tags = info.tags()
        self.run = wandb.init(project=options.get("project") or "llbbench", entity=options.get("entity"),
                              mode=options.get("mode") or "offline", dir=str(folder), id=run_id, resume="allow",
                              group=info.experiment, job_type=tags["optimizer"], name=info.run_id,
                              config=info.params(), tags=[tags["network"], tags["optimizer"], f"fold {tags['fold']}"],
                              settings=wandb.Settings(silent=True, console="off"))  # fmt: skip
        self.pending: dict[int, dict[str, float]] = {}
        state["wandb"] = {"id": run_id, "project": self.run.project, "mode": options.get("mode") or "offline"}
        if known:  # what a kill lost of the last rows sent (the service's unwritten queue): send it again
            held = self.run.starting_step - 1 if self.run.settings.mode == "online" else _held(folder, run_id)
            self._replay(info.run_dir, held, resumed_at)

    def _replay(self, run_dir: Path, held: int, resumed_at: int) -> None:
        """Send again the rows of the run's tables with a step in (held, resumed_at]: the ones the checkpoint
        covers that W&B does not hold."""
        import csv

        for table in (STEPS, LAYER_LRS, EPOCHS):
            path = run_dir / table
            if not path.exists():
                continue
            with path.open(newline="") as f:
                for row in csv.DictReader(f):
                    values = {k: float(v) if v not in ("", None) else math.nan for k, v in row.items()}
                    if held < int(values[STEP]) <= resumed_at:
                        self.row(table, values)
        self.flush()

    def row(self, table: str, row: Mapping[str, Any]) -> None:
        self.pending.setdefault(int(row[STEP]), {}).update(numbers(table, row))

    def flush(self) -> None:
        for step in sorted(self.pending):  # W&B takes each step once, in increasing order
            self.run.log(self.pending[step], step=step)
        if self.pending:
            self._wait()
        self.pending.clear()

    def _wait(self) -> None:
        """Wait until W&B's service has taken what was logged (a round trip behind it), so that a checkpoint
        written next never covers a row that a kill could still lose. (A W&B without this request: no wait.)"""
        deliver = getattr(getattr(self.run, "_interface", None), "deliver_history_step", None)
        if callable(deliver):
            deliver().wait_or(timeout=30)

    def summary(self, summary: Mapping[str, Any]) -> None:
        self.flush()
        final = {f"final/{k}": v for k, v in (summary.get("final") or {}).items() if isinstance(v, int | float)}
        self.run.summary.update({"status": summary["status"], **final})

    def close(self) -> None:
        self.flush()
        self.run.finish()


def wandb_records(path: Path) -> Iterator[Any]:
    """The records of a W&B transaction log (`run-<id>.wandb`, an offline run's file): a 7-byte header, then
    records in 32 KiB blocks, each behind a 7-byte header (checksum, length, type: full, first, middle, last)."""
    from wandb.proto import wandb_internal_pb2

    data, pos, pieces = path.read_bytes(), 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        if kind == 0:  # padding to the block's end
            pos += left
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        pieces = chunk if kind in (1, 2) else pieces + chunk
        if kind in (1, 4):  # a whole record, or the last part of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            yield record


def wandb_history(folder: Path, run_id: str) -> Iterator[dict[str, Any]]:
    """Every history row (`_step` and the metrics) of the offline W&B run `run_id` under `folder`, from all its
    offline run files (a resumed run writes another), in order."""
    for path in sorted(Path(folder).glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb")):
        for record in wandb_records(path):
            if record.WhichOneof("record_type") == "history":
                yield {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}


def _held(folder: Path, run_id: str) -> int:
    """The last step an offline W&B run's files hold (-1: none)."""
    return max((int(row["_step"]) for row in wandb_history(folder, run_id) if "_step" in row), default=-1)


@contextlib.contextmanager
def _one_at_a_time(uri: str) -> Iterator[None]:
    """For a SQLite store: one process at a time (a file lock beside the database); any other store: no lock."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    database = Path(uri[len("sqlite:///") :])
    with open(database.parent / f"{database.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


TRACKERS = {"tensorboard": TensorBoard, "mlflow": MLflow, "wandb": WandB}
