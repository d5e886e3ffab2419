"""`llbbench tune experiment=NAME`: the initial rate of every (network, optimizer) of an experiment's sweep.

For each (network, optimizer) of the sweep — an optimizer with a schedule or with `groups=global` counts as its
own, e.g. `sgd+cosine` — five rates spaced by √10 around its configured rate are trained on fold `tune.fold` at
the experiment's own budget. The lowest final validation loss wins (a diverged run counts as +∞; a failed run
stops the tuning with its error; ties go to the smaller rate). A winner on an edge of the grid extends it by one
rate on that side, at most `tune.max_extend` times; LLb-SGD's grid also grows until it reaches above SGD's best
rate on the same network (its rates only fall from α0, so α0 must be able to exceed SGD's). Tuning runs are
ordinary runs of the experiment (same directory, content-addressed, resumable), launched by `llbbench run -m`
with any `hydra/launcher`: a round's rates of every entry that differs from another only in its optimizer and
shares its grid in one sweep (the paper's Table 2: five sweeps a network, not two an entry). The result is
`<results_dir>/<experiment_name>/tuning.json`; `llbbench run -m experiment=NAME tuned=true` then runs the grid at
the winners, on every fold, and finds the tuning fold's winning run already done.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .. import config
from ..records.run import SUMMARY, blew_up, final_status
from ..records.tuning import TUNING_FILE, optimizer_variant, read_tuning
from .sweeps import sweep_points


@dataclass
class Tuned:
    """One (network, optimizer) of the sweep: its grid of rates (ascending) and what each reached."""

    network: str
    optimizer: str
    configured: float
    fold: int
    grid: list[float]
    val_loss: list[float | None] = field(default_factory=list)  # None: diverged
    winner: float | None = None
    edge: bool = False
    overrides: list[str] = field(default_factory=list, repr=False)  # the sweep point, at the tuning fold

    def rate_overrides(self, rate: float) -> list[str]:
        """The overrides of this entry's run at `rate`; the configured rate gets none, so that its run is the
        one-shot run itself (also when the optimizer's YAML leaves the rate to its preset)."""
        return [*self.overrides] if rate == self.configured else [*self.overrides, f"optimizer.lr={rate!r}"]

    def record(self) -> dict[str, Any]:
        keep = ("network", "optimizer", "grid", "val_loss", "winner", "fold", "edge", "configured")
        return {key: value for key, value in asdict(self).items() if key in keep}


def rate_at(center: float, step: int) -> float:
    """The rate `step` half-decades from `center`: center · 10^(step/2)."""
    return center * 10 ** (step / 2) if step >= 0 else center / 10 ** (-step / 2)


def grid_around(center: float, low: int = -2, high: int = 2) -> list[float]:
    """The rates `center` · 10^(i/2) for i from `low` to `high`, ascending (default: five around `center`)."""
    return [rate_at(center, i) for i in range(low, high + 1)]


def best(grid: list[float], losses: list[float | None]) -> int:
    """The index of the winning rate: the lowest loss (None, a diverged run, counts as +∞); ties: the smaller rate."""
    keyed = [(math.inf if loss is None or not math.isfinite(loss) else loss, rate, i) for i, (rate, loss) in
             enumerate(zip(grid, losses, strict=True))]  # fmt: skip
    return min(keyed)[2]


def split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """(the run's overrides, Hydra's own: `hydra/...` and `hydra.` keys, e.g. the launcher)."""
    hydra = [o for o in overrides if o.lstrip("+~").startswith(("hydra/", "hydra."))]
    return [o for o in overrides if o not in hydra], hydra


def configured_rate(optimizer: dict[str, Any]) -> float:
    """An optimizer config's rate (resolved): its `lr`, or the preset's when the YAML leaves it null."""
    rate = optimizer["lr"]
    if rate is None:
        from .. import optim

        spec, preset, _ = optim.from_config(optimizer)
        rate = spec.hparams(preset)["lr"]
    return float(rate)


def candidates(
    overrides: list[str], hydra_overrides: list[str] | tuple[str, ...] = ()
) -> tuple[list[Tuned], DictConfig]:
    """Every (network, optimizer) of the experiment's sweep at the tuning fold, with its grid; and the config.
    `hydra_overrides` take part as in `llbbench run -m` (e.g. `hydra.sweeper.params.optimizer=sgd`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    swept = [o.input_line for o in parsed if o.is_sweep_override()]  # e.g. optimizer=sgd,adam
    sweep = config.compose([o.input_line for o in parsed if not o.is_sweep_override()] + list(hydra_overrides),
                           hydra=True)  # fmt: skip
    if not OmegaConf.select(sweep, "hydra.sweeper.params"):
        raise ValueError("llbbench tune needs an experiment with a sweep: add experiment=NAME (e.g. table2_cifar10)")
    fold = sweep.tune.fold
    found: dict[tuple[str, str], Tuned] = {}
    searched = [o for o in hydra_overrides if o.split("=", 1)[0].lstrip("+") == "hydra.searchpath"]  # the user's
    for point in sweep_points(sweep, swept) or []:
        cfg = config.compose([*point, *searched])
        if cfg.fold is None or str(cfg.fold).lower() == "none" or int(cfg.fold) != fold:
            continue
        values = OmegaConf.to_container(cfg, resolve=True)
        key = (values["model"]["name"], optimizer_variant(values["optimizer"], values["train"]))
        if key not in found:
            config.check(cfg)  # a bad value (a results_dir that is a file) refused before any rate is announced
            center = configured_rate(values["optimizer"])
            found[key] = Tuned(*key, configured=center, fold=fold, grid=grid_around(center),
                               overrides=list(point))  # fmt: skip
    if not found:
        raise ValueError(f"the sweep has no run on the tuning fold tune.fold={fold}")
    return list(found.values()), sweep


def run_dir(overrides: list[str], hydra_overrides: list[str] | tuple[str, ...] = ()) -> Path:
    """Where the run of `overrides` lives (its content-addressed directory), launched with `hydra_overrides` (a
    Slurm launcher of several tasks a run makes it a distributed run, another run id)."""
    cfg = config.compose([*overrides, *hydra_overrides], hydra=True)
    return Path(cfg.results_dir) / cfg.experiment_name / str(cfg.hydra.sweep.subdir)


def outcome(path: Path) -> float | str | None:
    """A finished run's final validation loss (None when it diverged); `pending` when it has not ended."""
    status = final_status(path)
    if status is None:
        return "pending"
    summary = json.loads((path / SUMMARY).read_text())
    if status == "failed":
        error = (summary.get("error") or {}).get("message", "?")
        raise ValueError(f"tuning run {path} failed ({error}); fix the cause and run llbbench tune again")
    final = summary.get("final") or {}
    if status == "diverged" or blew_up(final.get("train_loss"), summary.get("num_classes")):  # recorded before the rule
        return None
    loss = final.get("val_loss")
    return None if loss is None or not math.isfinite(loss) else float(loss)


def writes_configured(entry: Tuned, dir_of: Any = run_dir) -> bool:
    """Whether `entry`'s configured rate written out (`optimizer.lr=...`) names its one-shot run, the run without
    the override (not so where the optimizer's YAML leaves the rate to its preset)."""
    return dir_of([*entry.overrides, f"optimizer.lr={entry.configured!r}"]) == dir_of(entry.overrides)


def plan(work: list[tuple[Tuned, list[float]]], written_is_configured: Any) -> list[tuple[list[str], str]]:
    """The sweeps of `llbbench run -m` that train `work` ((entry, rates) pairs), as few as can be: each entry's rates
    in one sweep, its configured rate written out when `written_is_configured(entry)` says that names the same run
    (else that run, which takes no override, apart: a rate left to the optimizer's preset); and entries that
    differ only in `optimizer=` and train the same rates in one sweep, so that a launcher that runs several at once
    stays busy. Each sweep: (its overrides, what it tunes)."""
    groups: dict[tuple[tuple[str, ...], tuple[str, ...], tuple[float, ...]], list[Tuned]] = {}
    sweeps: list[tuple[list[str], str]] = []
    for entry, rates in work:
        written = [rate for rate in rates if rate != entry.configured or written_is_configured(entry)]
        parts = ([tuple(written)] if written else []) + ([()] if len(written) < len(rates) else [])  # (): no lr
        chosen = [i for i, o in enumerate(entry.overrides) if o.startswith("optimizer=")]
        for part in parts:
            if len(chosen) == 1:
                i = chosen[0]
                groups.setdefault((tuple(entry.overrides[:i]), tuple(entry.overrides[i + 1 :]), part), []).append(entry)
            else:
                lr = [f"optimizer.lr={','.join(repr(r) for r in part)}"] if part else []
                sweeps.append(([*entry.overrides, *lr], f"{entry.network} × {entry.optimizer}"))
    grouped = []
    for (before, after, rates), members in groups.items():
        names = ",".join(m.overrides[len(before)].split("=", 1)[1] for m in members)
        lr = [f"optimizer.lr={','.join(repr(r) for r in rates)}"] if rates else []
        what = f"{members[0].network} × {', '.join(m.optimizer for m in members)}"
        grouped.append(([*before, f"optimizer={names}", *after, *lr], what))
    return grouped + sweeps


def launch(work: list[tuple[Tuned, list[float]]], hydra_overrides: list[str], written_is_configured: Any) -> None:
    """Train every (entry, rates) of `work` in the sweeps of `plan`, each a `llbbench run -m` (any launcher) in a
    child process."""
    for overrides, what in plan(work, written_is_configured):
        command = [sys.executable, "-m", "llbbench", "run", "-m", *overrides, *hydra_overrides]
        done = subprocess.run(command, check=False)
        if done.returncode == 2:  # bad input: the run command said why
            raise ValueError(f"the tuning sweep of {what} could not start (see above)")


def _grow(entries: list[Tuned], limit: int) -> bool:
    """After every entry's grid has been trained: grow the grids that must grow (a winner on an edge, at most
    `limit` extensions; LLb-SGD's grid until it reaches above SGD's best rate) and name the winners of the others.
    Whether any grid grew."""
    grown = False
    sgd_best = {e.network: e.grid[best(e.grid, e.val_loss)] for e in entries if e.optimizer == "sgd"}
    for entry in entries:
        i = best(entry.grid, entry.val_loss)
        on_edge = i in (0, len(entry.grid) - 1)
        if entry.optimizer == "llb" and entry.grid[-1] <= sgd_best.get(entry.network, 0.0):
            # LLb-SGD's rates only fall from α0: its grid reaches above SGD's best rate (docs/verdicts.md)
            low = -entry.grid.index(entry.configured)
            entry.grid = grid_around(entry.configured, low, low + len(entry.grid))
            grown = True
        elif on_edge and len(entry.grid) - len(grid_around(entry.configured)) < limit:  # extensions so far
            low = -entry.grid.index(entry.configured)  # the grid is configured · 10^(k/2), k = low .. high
            high = low + len(entry.grid) - 1
            entry.grid = (
                grid_around(entry.configured, low - 1, high) if i == 0 else grid_around(entry.configured, low, high + 1)
            )
            grown = True
        else:
            entry.winner, entry.edge = entry.grid[i], on_edge
    return grown


def tune(overrides: list[str]) -> Path:
    """Tune every (network, optimizer) of the experiment that `overrides` names; write and return tuning.json."""
    task, hydra_overrides = split_overrides(overrides)
    entries, sweep = candidates(task, hydra_overrides)
    path = Path(sweep.results_dir) / sweep.experiment_name / TUNING_FILE
    earlier = read_tuning(path) if path.exists() else []  # checked before anything is trained
    limit = sweep.tune.max_extend
    dirs: dict[tuple[str, ...], Path] = {}  # composing a run's config is the slow part: once per run

    def dir_of(overrides: list[str]) -> Path:
        if tuple(overrides) not in dirs:
            dirs[tuple(overrides)] = run_dir(overrides, hydra_overrides)
        return dirs[tuple(overrides)]

    while True:
        work = []
        for entry in entries:
            paths = [dir_of(entry.rate_overrides(rate)) for rate in entry.grid]
            pending = [rate for rate, path in zip(entry.grid, paths, strict=True) if outcome(path) == "pending"]
            if pending:
                print(f"tune: {entry.network} × {entry.optimizer}: rates {', '.join(f'{r:.4g}' for r in pending)}")
                work.append((entry, pending))
        if work:
            launch(work, hydra_overrides, lambda entry: writes_configured(entry, dir_of))
        for entry in entries:
            paths = [dir_of(entry.rate_overrides(rate)) for rate in entry.grid]
            results = [outcome(path) for path in paths]
            if "pending" in results:
                missing = paths[results.index("pending")]
                raise ValueError(f"tuning run {missing} did not finish (killed?); run llbbench tune again to resume")
            entry.val_loss = results
        if not _grow(entries, limit):
            break
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(merged(earlier, [e.record() for e in entries]), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def merged(earlier: list[dict[str, Any]], tuned: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """tuning.json's entries after a tune: each earlier entry, replaced in place by its re-tuned one (same network
    and optimizer), then the entries tuned for the first time."""
    fresh = {(e["network"], e["optimizer"]): e for e in tuned}
    kept = [fresh.pop((e["network"], e["optimizer"]), e) for e in earlier]
    return kept + list(fresh.values())
