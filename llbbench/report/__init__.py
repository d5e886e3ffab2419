"""`llbbench report`: the paper's tables, figures and a claims check, from run directories alone.

Runs are grouped by the experiment that made them: Table 2 and Figs. 5–6 from `table2_*` (or `quickstart`)
runs, Table 3 from `table3_*`, Table 4 from `table4_*`, Fig. 7 from `fig7_*`, the reconstruction ablation from
`ablation_*`. Folders with none of these make
Table 2 of all their runs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the heavy imports wait for build_report, so that `llbbench report --help` answers at once
    import pandas as pd

__all__ = ["FORMATS", "build_report", "group_runs"]

FORMATS = ("md", "tex", "csv")
OFFICIAL_CIFAR10 = "cifar10-official-"  # how the fingerprint of the official CIFAR-10 files begins
log = logging.getLogger(__name__)
GROUPS = {
    "table2": ("table2", "quickstart"),
    "table3": ("table3",),
    "table4": ("table4",),
    "fig7": ("fig7",),
    "ablation": ("ablation",),
}


def group_runs(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The runs behind each table and figure, by the experiment that made them (tuning-only runs left out)."""
    from .runs import TUNING

    if len(runs):
        runs = runs[runs["protocol"] != TUNING]
    groups = {
        name: runs[runs["experiment"].str.startswith(prefixes)] if len(runs) else runs
        for name, prefixes in GROUPS.items()
    }
    if len(runs) and not any(len(g) for g in groups.values()):
        groups["table2"] = runs
    return groups


def describe(runs: pd.DataFrame, unreadable: dict[str, str] | None = None) -> list[str]:
    """What the runs were: scale, data, networks' width, budgets, how they ended, and what could not be read."""
    import pandas as pd

    def values(column: str) -> str:
        present = sorted({str(v) for v in runs[column] if v is not None and not pd.isna(v)})
        return ", ".join(present) if present else "—"

    scales = values("scale")
    lines = [
        f"- scale: **{scales}**",
        f"- data: {values('dataset')} (training subset: {values('subset')} images; folds: {values('folds')})",
        f"- networks: {values('model')} at width {values('width')}; epoch budget {values('epoch_budget')}",
        f"- runs: {len(runs)} ({', '.join(f'{n} {s}' for s, n in sorted(runs['status'].value_counts().items()))})",
    ]
    if "seconds" in runs and runs["seconds"].notna().any():
        lines.append(
            f"- recorded run time: {runs['seconds'].sum() / 60:.1f} min (training and evaluation, summed over the "
            f"runs' summaries; by experiment: "
            + ", ".join(f"{e} {t / 60:.1f}" for e, t in runs.groupby("experiment")["seconds"].sum().items())
            + ")"
        )
    lines += _data_lines(runs)
    if "blew_up" in runs and runs["blew_up"].any():
        from ..records.run import BLOW_UP

        blown = runs[runs["blew_up"]]
        earlier = int((blown["recorded_status"] != "diverged").sum())
        which = ", ".join(f"{m} × {o} ({n})" for (m, o), n in blown.groupby(["model", "optimizer"]).size().items())
        lines.append(
            f"- blew up: {len(blown)} runs ended with a finite final training loss above {BLOW_UP:g}·ln C (C classes), "
            f"counted as diverged ({which})"
            + (f"; {earlier} of them were recorded as completed or stopped, before that rule" if earlier else "")
        )
    if unreadable:
        lines.append(f"- **{len(unreadable)} run directories could not be read** and are left out:")
        lines += [f"  - `{path}`: {why}" for path, why in sorted(unreadable.items())]
    if set(runs["scale"].astype(str)) - {"full"}:
        lines.append(
            "- **CPU scale** (not the paper's): CIFAR-10 subsets, small or width-reduced networks, a few epochs, and "
            "any ImageNet network on CIFAR-10 as a stand-in. It shows whether the comparisons point the same way as "
            "the paper's at a size a laptop can run; it cannot confirm or refute the paper's full-scale numbers."
        )
    return lines


def _data_lines(runs: pd.DataFrame) -> list[str]:
    """Where the data of the runs was not the official release, or its identity was not recorded, say so."""
    cifar = runs[runs["dataset"] == "cifar10"] if "data" in runs else runs.iloc[0:0]
    prints = cifar["data"].dropna().astype(str) if len(cifar) else cifar
    other = sorted({p for p in prints if not p.startswith(OFFICIAL_CIFAR10)})
    lines = []
    if other:
        lines.append(
            f"- **data: not the official CIFAR-10 release** (fingerprint {', '.join(other)}): the files differ from "
            "the official ones, so the numbers are not comparable with published results"
        )
    unrecorded = len(cifar) - len(prints)
    if unrecorded:
        lines.append(
            f"- data: {unrecorded} CIFAR-10 runs do not record which files they used (made before runs recorded it)"
        )
    return lines


def _setting_lines(groups: dict[str, pd.DataFrame]) -> list[str]:
    """A line for each group whose runs differ in more than what it varies (e.g. two epoch budgets in Table 2)."""
    from .runs import by_setting, one_shot, tuned

    lines = []
    for name, group in groups.items():
        for protocol, runs in (("one-shot", one_shot(group)), ("tuned", tuned(group))):
            parts = by_setting(runs, name)
            if len(parts) > 1:
                shown = "; ".join(f"{setting} ({len(part)} runs)" for setting, part in parts)
                lines.append(
                    f"- **{name} ({protocol}) mixes settings**: {shown}. Runs of different settings never share a "
                    "cell: each setting has its own table; the claims and figures read the first (the most runs)"
                )
    return lines


def build_report(roots: Iterable[str | Path], out: str | Path | None = None, formats: Iterable[str] = FORMATS) -> Path:
    """Write the tables, figures, `claims.md` and an index `report.md` for the runs under `roots` into `out`."""
    roots = [Path(r) for r in roots]
    formats = list(formats)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown format {', '.join(unknown)}; valid formats: {', '.join(FORMATS)}")
    from ..records.saddle import load_analytic, load_saddle
    from . import claims, figures, tables
    from .runs import epoch_curves, load_runs, load_tunings, main_setting, one_shot

    out = Path(out) if out is not None else roots[0] / "report"
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; name a folder for the report (it is created if missing)")
    runs, unreadable = load_runs(roots)
    for path, why in sorted(unreadable.items()):
        log.warning("llbbench report: left out the unreadable run directory %s (%s)", path, why)
    if runs.empty:
        raise FileNotFoundError(f"no readable run directories (with summary.json) under {', '.join(map(str, roots))}")
    out.mkdir(parents=True, exist_ok=True)
    earlier = _earlier_files(out)
    groups = group_runs(runs)
    # the paper's protocol (configured rates), one setting per group: a group whose runs differ in more than
    # what it varies gets one table per setting, and its claims and figures read the setting with the most runs
    paper = {name: main_setting(one_shot(group), name) for name, group in groups.items()}
    scale_note = f"scale: {', '.join(sorted(set(runs['scale'].astype(str))))}"

    written_tables = tables.all_tables(groups, load_tunings(runs))
    written = [path for table in written_tables for path in table.write(out, formats)]
    curves = epoch_curves(paper["table2"])
    measured = load_saddle(roots)
    drawn = {
        "Fig. 5": figures.fig5_training_curves(curves, out, scale_note),
        "Fig. 6": figures.fig6_layer_rates(paper["table2"], out, scale_note),
        "Fig. 7": figures.fig7_initial_rate(paper["fig7"], out, scale_note),
        "Fig. 8": figures.fig8_saddles(out, load_analytic(roots), measured),
    }
    if len(paper["ablation"]):
        drawn["Ablation"] = figures.ablation_rates(paper["ablation"], out, scale_note)
    claim_list = claims.all_claims(paper, measured)
    header = "\n".join([*describe(runs, unreadable), *_setting_lines(groups)])
    written += _write_claims(out, header, claim_list, claims.yours(paper["table2"]))
    (out / "report.md").write_text(_index(header, written_tables, drawn, claim_list))
    written += [out / "report.md", *(path for paths in drawn.values() for path in paths)]
    _forget_earlier(out, earlier, {path.name for path in written})
    return out


MANIFEST = ".llbbench-report.json"  # the files the last report wrote into its folder


def _earlier_files(out: Path) -> set[str]:
    """The names of the files an earlier report wrote into `out` (its manifest; none without one)."""
    try:
        names = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return set()
    return {n for n in names if isinstance(n, str) and n == Path(n).name} if isinstance(names, list) else set()


def _forget_earlier(out: Path, earlier: set[str], written: set[str]) -> None:
    """Remove the files an earlier report wrote that this one did not (a table split by a setting that is gone,
    a figure with no runs now), so that the folder holds this report alone; nothing else in it is touched. Then
    record what this one wrote."""
    for name in sorted(earlier - written):
        (out / name).unlink(missing_ok=True)
    (out / MANIFEST).write_text(json.dumps(sorted(written), indent=0) + "\n")


def _write_claims(out: Path, header: str, claim_list: list, added: dict) -> list[Path]:
    """claims.md and claims.json; with optimizers a user added, their section (and yours.json). The files written."""
    from . import claims

    mine = "\n" + claims.yours_markdown(added) if added else ""
    (out / "claims.md").write_text("# Claims of Zheng et al. (2019), checked\n\n" + header + "\n\n"
                                   + "\n".join(c.markdown() for c in claim_list) + mine)  # fmt: skip
    (out / "claims.json").write_text(json.dumps([c.as_dict() for c in claim_list], indent=1, allow_nan=False) + "\n")
    if added:
        (out / "yours.json").write_text(json.dumps(claims.yours_dict(added), indent=1, allow_nan=False) + "\n")
    return [out / name for name in ("claims.md", "claims.json", *(("yours.json",) if added else ()))]


def _index(header: str, written_tables: list, drawn: dict[str, list[Path]], claim_list: list) -> str:
    """report.md: the header, every table, every figure (or why it is missing) and the verdicts."""
    index = ["# llbbench report", "", header, ""]
    for table in written_tables:
        index += [table.markdown(), ""]
    for figure, paths in drawn.items():
        png = next((p for p in paths if p.suffix == ".png"), None)
        index.append(f"![{figure}]({png.name})" if png else f"*{figure}: no runs to draw it from.*")
        index.append("")
    index.append("Claims and verdicts: [claims.md](claims.md)")
    index += [f"- {c.id}. {c.title}: **{c.verdict}**" for c in claim_list]
    return "\n".join(index) + "\n"
