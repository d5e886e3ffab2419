"""The paper's Tables 1–4 from the runs table, written as Markdown, LaTeX (booktabs) and CSV."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..paper import INITS, NETWORKS, OPTIMIZERS, PAPER_NETWORKS, ordered
from ..records.run import BLOW_UP
from .runs import (
    FINISHED,
    by_setting,
    main_setting,
    one_shot,
    optimizer_label,
    test_over_train,
    tuned,
)
from .stats import t_interval

METRICS = {"train_loss": "train loss", "test_loss": "test loss", "test_acc": "test acc."}
LOWER_IS_BETTER = {"train_loss": True, "test_loss": True, "test_acc": False}
MISSING, DIVERGED = "—", "div."
SPREAD = "Mean ± standard deviation over folds"  # how `_cell` writes a cell, as the notes say it
ONE_RUN = "(a cell of one run: its value alone)"
# what pdflatex cannot take as typed: LaTeX's special characters, and the non-ASCII characters our text uses
LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "×": r"$\times$",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "≈": r"$\approx$",
    "→": r"$\rightarrow$",
    "·": r"$\cdot$",
    "—": "---",
    "–": "--",
    "’": "'",
    "“": "``",
    "”": "''",
    "…": r"\ldots{}",
}


def _greek(char: str) -> str | None:
    """The LaTeX command of a Greek letter (`\\tau`, `\\Omega`), or None."""
    name = unicodedata.name(char, "")
    for prefix, case in (("GREEK SMALL LETTER ", str.lower), ("GREEK CAPITAL LETTER ", str.capitalize)):
        letter = name[len(prefix) :]
        if name.startswith(prefix) and letter.isalpha():
            return "\\" + case(letter)
    return None


def latex_escape(text: str) -> str:
    """`text` as pdflatex takes it: special characters escaped, Greek letters and symbols in math mode, accented
    letters without their accents, and any other non-ASCII character as `?`."""
    out = []
    for char in text:
        if char in LATEX:
            out.append(LATEX[char])
        elif ord(char) < 128:
            out.append(char)
        elif _greek(char):
            out.append(f"${_greek(char)}$")
        else:
            ascii_form = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode()
            out.append(ascii_form or "?")
    return "".join(out)


@dataclass
class Table:
    """A table ready to write: a caption, display cells (with markers), footnotes, and a long CSV form."""

    name: str
    caption: str
    header: list[str]
    rows: list[list[str]]
    bold: set[tuple[int, int]] = field(default_factory=set)  # (row, column) of the best cells
    notes: list[str] = field(default_factory=list)
    data: pd.DataFrame = field(default_factory=pd.DataFrame)
    tied: set[tuple[int, int]] = field(default_factory=set)  # (row, column) of cells tied with the best

    def _text(self, i: int, j: int, text: str) -> str:
        return f"{text} {TIED}" if (i, j) in self.tied else text

    def markdown(self) -> str:
        def cell(i: int, j: int, text: str) -> str:
            text = self._text(i, j, text)
            return f"**{text}**" if (i, j) in self.bold else text

        lines = [f"**{self.caption}**", "", "| " + " | ".join(self.header) + " |"]
        lines.append("| " + " | ".join(["---"] * len(self.header)) + " |")
        lines += ["| " + " | ".join(cell(i, j, t) for j, t in enumerate(row)) + " |" for i, row in enumerate(self.rows)]
        if self.notes:
            lines += [""] + [f"{note}  " for note in self.notes]
        return "\n".join(lines) + "\n"

    def latex(self) -> str:
        def cell(i: int, j: int, text: str) -> str:
            text = latex_escape(self._text(i, j, text))
            return rf"\textbf{{{text}}}" if (i, j) in self.bold else text

        spec = "l" * 2 + "r" * (len(self.header) - 2)
        lines = [
            r"\begin{table}[t]",
            r"\centering",
            rf"\caption{{{latex_escape(self.caption)}}}",
            rf"\begin{{tabular}}{{{spec}}}",
            r"\toprule",
            " & ".join(cell(-1, j, h) for j, h in enumerate(self.header)) + r" \\",
            r"\midrule",
        ]
        lines += [" & ".join(cell(i, j, t) for j, t in enumerate(row)) + r" \\" for i, row in enumerate(self.rows)]
        lines += [r"\bottomrule", r"\end{tabular}"]
        if self.notes:
            lines.append(r"\par\footnotesize " + r" \\ ".join(cell(-1, -1, n) for n in self.notes))
        lines.append(r"\end{table}")
        return "\n".join(lines) + "\n"

    def write(self, out: Path, formats: list[str]) -> list[Path]:
        written = []
        for fmt in formats:
            path = out / f"{self.name}.{fmt}"
            if fmt == "md":
                path.write_text(self.markdown())
            elif fmt == "tex":
                path.write_text(self.latex())
            else:
                self.data.to_csv(path, index=False, float_format="%.6g")
            written.append(path)
        return written


TIED = "≈"


def _grid_notes(diverged: list[str], missing: list[str]) -> list[str]:
    """A grid table's notes on its cells: what they show, which diverged, which have no finished run."""
    notes = [
        f"{SPREAD} {ONE_RUN}; the best of each network and metric in bold; "
        f"{TIED}: statistically tied with the best (the 95% corrected t-interval of the differences, paired by "
        "fold, includes zero; two folds or more; docs/verdicts.md)."
    ]
    if diverged:
        notes.append(f"{DIVERGED} a run of this cell diverged (a non-finite loss, or a final training loss above "
                     f"{BLOW_UP:g}·ln C): " + "; ".join(diverged) + ".")  # fmt: skip
    if missing:
        notes.append(f"{MISSING} no finished run: " + "; ".join(missing) + ".")
    return notes


def grid_table(
    name: str, caption: str, runs: pd.DataFrame, column: str, order: tuple, metrics: dict[str, str] = METRICS
) -> Table:
    """Networks × `column` (optimizer, batch size or initialization): mean ± std over folds of the final
    training loss, test loss and test accuracy (and any other of `metrics`); the best cell of each network and
    metric in bold, and the cells statistically tied with it marked. Tables over another column than the optimizer
    get one row per network and optimizer (LLb-SGD and its SGD control)."""
    by_optimizer = column != "optimizer"
    keys = [
        (network, optimizer)
        for network in ordered(runs["model"], NETWORKS)
        for optimizer in (ordered(runs[runs["model"] == network]["optimizer"], OPTIMIZERS) if by_optimizer else [None])
    ]
    values = ordered(runs[column], order)
    label = optimizer_label if column == "optimizer" else str
    header = ["network", "metric", *[label(v) for v in values]]
    rows, bold, tied, records, missing, diverged = [], set(), set(), [], [], []
    for network, optimizer in keys:
        of = runs[runs["model"] == network]
        of = of[of["optimizer"] == optimizer] if optimizer is not None else of
        title = f"{network} ({optimizer_label(optimizer)})" if optimizer is not None else network
        for metric, metric_label in metrics.items():
            row, cells, folds = [title, metric_label], {}, {}
            for j, value in enumerate(values, start=2):
                cell_runs = of[of[column] == value]
                text, record = _cell(cell_runs, metric)
                row.append(text)
                cells[j] = {"network": network, **({"optimizer": optimizer} if optimizer else {}), column: value,
                            "metric": metric, **record, "tied": False}  # fmt: skip
                folds[j] = _by_fold(cell_runs, metric)
                if metric == "train_loss" and text == MISSING:
                    missing.append(f"{title} × {label(value)}")
                if metric == "train_loss" and text == DIVERGED:
                    diverged.append(f"{title} × {label(value)} ({record['diverged']} of {record['runs']} runs)")
            for j, mark in _best_and_tied(cells, folds, metric, test_over_train(of)).items():
                (bold if mark == "best" else tied).add((len(rows), j))
                cells[j][mark] = True
            rows.append(row)
            records += cells.values()
    notes = [*_grid_notes(diverged, missing), *_network_notes(runs, column)]
    if by_optimizer and len(runs) and set(runs["scale"].astype(str)) - {"full"}:
        for network in PAPER_NETWORKS:
            if network not in set(runs["model"]):
                rows.append([network, "not run at small scale", *[""] * len(values)])
    return Table(name, caption, header, rows, bold, notes, pd.DataFrame(records), tied)


def _best_and_tied(
    cells: dict[int, dict], folds: dict[int, pd.Series], metric: str, test_over_train: float
) -> dict[int, str]:
    """The columns of one row that are its best ("best") or statistically tied with it ("tied": the corrected
    interval of the paired differences with the best includes zero, over two folds or more)."""
    scores = {j: c["mean"] for j, c in cells.items() if c["mean"] is not None and not c["diverged"]}
    if not scores or metric not in LOWER_IS_BETTER:
        return {}
    best = (min if LOWER_IS_BETTER[metric] else max)(scores.values())
    winners = [j for j, score in scores.items() if score == best]
    marks = dict.fromkeys(winners, "best")
    for j in sorted(set(scores) - set(winners)):
        difference = t_interval((folds[j] - folds[winners[0]]).dropna(), test_over_train=test_over_train)
        if difference.n >= 2 and difference.includes(0.0):
            marks[j] = "tied"
    return marks


def _by_fold(runs: pd.DataFrame, metric: str) -> pd.Series:
    """Each fold's mean `metric` over the finished runs of a cell."""
    finished = runs[runs["status"].isin(FINISHED)]
    return finished.groupby(finished["fold"].fillna(-1))[metric].mean() if len(finished) else pd.Series(dtype=float)


def _network_notes(runs: pd.DataFrame, column: str) -> list[str]:
    """How the networks were run where it is not the plain architecture: their options (BatchNorm, dropout, …),
    the initialization when the table does not vary it, the batch size when the table's networks differ in it,
    and a stand-in dataset."""
    shown = []
    batches = set(runs["batch_size"].dropna().astype(int)) if "batch_size" in runs else set()
    for network in ordered(runs["model"], NETWORKS):
        of = runs[runs["model"] == network]
        parts = sorted({a for a in of["architecture"].dropna() if a}) if "architecture" in of else []
        if column != "init":
            parts += [f"init {i}" for i in sorted(set(of["init"].astype(str)) - {"default"})]
        if column != "batch_size" and len(batches) > 1:  # the networks of the table differ in batch size
            parts += [f"batch {b}" for b in sorted(set(of["batch_size"].dropna().astype(int)))]
        stand_in = of["experiment"].astype(str).str.contains("imagenet") & (of["dataset"] != "imagenet")
        if stand_in.any():
            parts.append(f"on {', '.join(sorted(set(of[stand_in]['dataset'])))} as a stand-in for ImageNet")
        if parts:
            shown.append(f"{network}: {'; '.join(parts)}")
    return [f"Networks as run: {'. '.join(shown)}."] if shown else []


def _cell(runs: pd.DataFrame, metric: str) -> tuple[str, dict]:
    """The display text and the numbers of one cell: "—" without runs, "div." when any run diverged."""
    finished = runs[runs["status"].isin(FINISHED)][metric].dropna()
    record = {
        "runs": len(runs),
        "finished": len(finished),
        "diverged": int((runs["status"] == "diverged").sum()),
        "mean": float(finished.mean()) if len(finished) else None,
        "std": float(finished.std(ddof=1)) if len(finished) > 1 else None,
        "best": False,
    }
    if record["diverged"]:
        return DIVERGED, record
    if not len(finished):
        return MISSING, record
    if metric == "steps":
        return f"{record['mean']:.0f}", record
    if record["std"] is None:  # one run: no spread to show (not a spread of zero)
        return f"{record['mean']:.3f}", record
    return f"{record['mean']:.3f} ± {record['std']:.3f}", record


def hyperparameter_table(runs: pd.DataFrame) -> Table:
    """Table 1: the hyper-parameters the runs actually used, per dataset and optimizer."""
    columns = {
        "lr": "initial rate",
        "batch_size": "batch size",
        "weight_decay": "weight decay",
        "dropout": "dropout",
        "threshold": "threshold τ",
        "epoch_budget": "epochs",
    }
    header = ["dataset", "optimizer", *columns.values()]
    rows, records = [], []
    for dataset in sorted(runs["dataset"].unique()):
        of_dataset = runs[runs["dataset"] == dataset]
        for optimizer in ordered(of_dataset["optimizer"], OPTIMIZERS):
            subset = of_dataset[of_dataset["optimizer"] == optimizer]
            values = {key: _distinct(subset[key]) for key in columns}
            rows.append([dataset, optimizer_label(optimizer), *values.values()])
            records.append({"dataset": dataset, "optimizer": optimizer, **values})
    notes = [
        "Values as the runs found used them; several values are listed when runs differ. Initial rates: as "
        "configured (one-shot, the paper's protocol); tuned rates, where any, are in Table 1 (tuned)."
    ]
    return Table("table1", "Table 1: hyper-parameters per dataset", header, rows, set(), notes, pd.DataFrame(records))


def _distinct(values: pd.Series) -> str:
    present = sorted({v for v in values if v is not None and not (isinstance(v, float) and pd.isna(v))}, key=float)
    return ", ".join(f"{v:g}" for v in present) if present else MISSING


def tuning_table(tunings: dict[str, list[dict]]) -> Table:
    """Table 1, tuned: each (network, optimizer)'s grid of rates, the validation loss each reached, the winner."""
    header = ["experiment", "network", "optimizer", "fold", "rates (validation loss)", "winner"]
    rows, records = [], []
    for folder, entries in sorted(tunings.items()):
        for e in entries:
            tried = ", ".join(
                f"{rate:.3g} ({'div.' if loss is None else f'{loss:.3f}'})"
                for rate, loss in zip(e["grid"], e["val_loss"], strict=True)
            )
            edge = " (edge)" if e.get("edge") else ""
            winner = f"{e['winner']:.3g}{edge}" if e.get("winner") is not None else MISSING
            experiment = Path(folder).name
            rows.append([experiment, e["network"], optimizer_label(e["optimizer"]), str(e["fold"]), tried, winner])
            records.append({"experiment": experiment, **e})
    notes = [
        "Each rate trained on the tuning fold at the experiment's budget; the lowest final validation loss wins "
        "(div.: diverged, counted as infinite; ties: the smaller rate). (edge): the winner is still on the "
        "grid's edge after all extensions."
    ]
    caption = "Table 1 (tuned): the rate grids and their winners"
    return Table("table1_tuning", caption, header, rows, set(), notes, pd.DataFrame(records))


ABLATION_OPTIONS = ("direction", "conv_norm", "loss_ema", "max_lr_ratio")
DEFAULT_VARIANT = ("gate", "kernel_fro", 0.0, 1.0)  # the reconstruction's defaults (docs/llb-sgd.md)


def ablation_table(runs: pd.DataFrame, table2: pd.DataFrame) -> Table:
    """The reconstruction ablation: each LLb-SGD variant's final training and test loss per network, beside
    SGD's from the Table-2 runs; a variant "changes the ranking" when it sits on the other side of SGD than the
    default variant does, on either loss."""
    networks = ordered(runs["model"], NETWORKS)
    variants = sorted({tuple(v) for v in runs[list(ABLATION_OPTIONS)].itertuples(index=False)}, key=str)
    variants.sort(key=lambda v: v != DEFAULT_VARIANT)  # the default first
    sgd = table2[(table2["optimizer"] == "sgd") & table2["status"].isin(FINISHED)] if len(table2) else table2
    header = [*ABLATION_OPTIONS, *[f"{n}: {m}" for n in networks for m in ("train", "test")]]
    rows, records, changes = [], [], []
    default_side: dict[tuple[str, str], bool] = {}
    for variant in variants:
        of = runs
        for option, value in zip(ABLATION_OPTIONS, variant, strict=True):
            of = of[of[option] == value]
        row = [str(v) for v in variant]
        for network in networks:
            for metric in ("train_loss", "test_loss"):
                text, record = _cell(of[of["model"] == network], metric)
                reference = sgd[sgd["model"] == network][metric].dropna() if len(sgd) else pd.Series(dtype=float)
                better = None
                if record["mean"] is not None and not record["diverged"] and len(reference):
                    better = record["mean"] < reference.mean()
                    text += " (<SGD)" if better else " (>SGD)"
                if variant == DEFAULT_VARIANT and better is not None:
                    default_side[(network, metric)] = better
                elif better is not None and default_side.get((network, metric), better) != better:
                    changes.append(f"{'/'.join(map(str, variant))} on {network} ({metric.replace('_', ' ')})")
                row.append(text)
                records.append({**dict(zip(ABLATION_OPTIONS, variant, strict=True)), "network": network,
                                "metric": metric, "better_than_sgd": better, **record})  # fmt: skip
        rows.append(row)
    notes = [
        f"{SPREAD} of LLb-SGD's final losses {ONE_RUN}; "
        "(<SGD)/(>SGD): below/above the mean of SGD's Table-2 runs on the same network (at its configured rate); "
        "the first row is the default reading.",
        ("Variants that change the ranking against SGD (the other side of SGD than the default): " + "; ".join(changes))
        if changes
        else "No variant changes the ranking against SGD"
        + ("." if default_side else " (not measured: no SGD runs of Table 2 beside these)."),
    ]
    caption = "Reconstruction ablation: LLb-SGD's variants against SGD"
    return Table("ablation", caption, header, rows, set(), notes, pd.DataFrame(records))


def ranking_table(one_shot_runs: pd.DataFrame, tuned_runs: pd.DataFrame) -> Table:
    """How tuning moves the ranking: per network and loss, the optimizers in order (best first) at the configured
    and at the tuned rates, LLb-SGD's place in each, and the Spearman correlation of the two orders."""
    header = ["network", "metric", "one-shot order (best first)", "tuned order (best first)", "LLb-SGD", "Spearman"]
    rows, records = [], []
    for network in ordered(pd.concat([one_shot_runs["model"], tuned_runs["model"]]), NETWORKS):
        for metric in ("train_loss", "test_loss"):
            orders = [_order(runs[runs["model"] == network], metric) for runs in (one_shot_runs, tuned_runs)]
            shared = [name for name in orders[0] if name in orders[1]]
            if len(shared) < 2:
                continue
            tuned_shared = [name for name in orders[1] if name in shared]
            n = len(shared)  # two orders without ties: Spearman's rho from the squared rank differences
            rho = 1 - 6 * sum((i - tuned_shared.index(name)) ** 2 for i, name in enumerate(shared)) / (n * (n * n - 1))
            place = " → ".join(str(o.index("llb") + 1) if "llb" in o else MISSING for o in orders)
            rows.append([network, METRICS[metric], *(", ".join(optimizer_label(n) for n in o) for o in orders),
                         place, f"{rho:+.2f}"])  # fmt: skip
            records.append({"network": network, "metric": metric, "one_shot": orders[0], "tuned": orders[1],
                            "spearman": rho})  # fmt: skip
    notes = [
        "Optimizers ordered by mean final loss over folds (a cell with a diverged run last); LLb-SGD: its place "
        "one-shot → tuned; Spearman: the rank correlation of the two orders over the optimizers in both."
    ]
    return Table("table2_ranking", "Table 2: how tuning changes the ranking", header, rows, set(), notes,
                 pd.DataFrame(records))  # fmt: skip


def _order(runs: pd.DataFrame, metric: str) -> list[str]:
    """The optimizers of `runs`, best mean `metric` first; a cell with a diverged or no finished run last."""
    means = {}
    for name in runs["optimizer"].unique():
        _, record = _cell(runs[runs["optimizer"] == name], metric)
        means[name] = record["mean"] if record["mean"] is not None and not record["diverged"] else float("inf")
    return sorted(means, key=lambda name: (means[name], name))


def _epochs_note(runs: pd.DataFrame) -> str:
    """Table 3's protocol: whether every batch size got the same epochs (the paper's), and how many each got."""
    budgets = runs.groupby("batch_size")["epoch_budget"].agg(lambda v: ", ".join(map(str, sorted(set(v)))))
    same = runs["epoch_budget"].nunique() == 1
    shown = "; ".join(f"{size}: {epochs}" for size, epochs in budgets.items())
    protocol = "the same epochs for every batch size (the paper's protocol)" if same else "epochs per batch size"
    return f"Budget: {protocol} — batch size: epochs {shown}; the steps row shows what each took."


ONE_SHOT_NOTE = "Rates: one-shot, each optimizer's configured rate (the paper's protocol)."


def all_tables(groups: dict[str, pd.DataFrame], tunings: dict[str, list[dict]]) -> list[Table]:
    """Tables 1–4 from the runs of each experiment group (an empty group gives no table); beside each of
    Tables 2–4, its tuned version when runs at tuned rates exist."""
    everything = pd.concat([g for g in groups.values() if len(g)]) if any(len(g) for g in groups.values()) else None
    tables = [hyperparameter_table(one_shot(everything))] if everything is not None else []
    if tunings:
        tables.append(tuning_table(tunings))
    specs = [
        ("table2", "Table 2: final training loss, test loss and test accuracy per optimizer", "optimizer", OPTIMIZERS),
        ("table3", "Table 3: LLb-SGD and SGD under batch sizes", "batch_size", (16, 32, 64, 128, 256)),
        ("table4", "Table 4: LLb-SGD and SGD under initializations", "init", INITS),
    ]
    folds = sorted({e["fold"] for entries in tunings.values() for e in entries})
    tuned_note = (
        f"Rates: tuned — chosen by fold {', '.join(map(str, folds))}'s validation loss (Table 1, tuned); the test "
        "split, which tuning never sees, is what the test columns report."
    )
    if len(one_shot(groups.get("ablation", pd.DataFrame()))):
        table2 = main_setting(one_shot(groups.get("table2", pd.DataFrame())), "table2")
        tables.append(ablation_table(main_setting(one_shot(groups["ablation"]), "ablation"), table2))
    for name, caption, column, order in specs:
        runs = groups.get(name, pd.DataFrame())
        metrics = {**METRICS, "steps": "steps"} if name == "table3" else METRICS  # Table 3: the steps each took
        for i, (setting, part) in enumerate(by_setting(one_shot(runs), name)):
            table = grid_table(_part_name(name, i, setting), caption + " (one-shot rates)" + _part_caption(setting),
                               part, column, order, metrics)  # fmt: skip
            table.notes.insert(0, ONE_SHOT_NOTE)
            if name == "table3":
                table.notes.insert(1, _epochs_note(part))
            tables.append(table)
        for i, (setting, part) in enumerate(by_setting(tuned(runs), name)):
            table = grid_table(_part_name(f"{name}_tuned", i, setting), caption + " (tuned rates)"
                               + _part_caption(setting), part, column, order, metrics)  # fmt: skip
            table.notes.insert(0, tuned_note)
            untuned = [n for n in ordered(one_shot(runs)["model"], NETWORKS) if n not in set(tuned(runs)["model"])]
            if untuned:
                table.notes.insert(1, f"Not tuned (one-shot only, in the table above): {', '.join(untuned)}.")
            tables.append(table)
        if name == "table2" and len(one_shot(runs)) and len(tuned(runs)):
            tables.append(ranking_table(main_setting(one_shot(runs), name), main_setting(tuned(runs), name)))
    return tables


def _part_name(name: str, index: int, setting: str) -> str:
    """The file name of a part of a table split by setting: the part with the most runs keeps the table's name."""
    if index == 0:
        return name
    slugs = []
    for part in setting.split(", "):
        key, _, value = part.partition("=")
        slugs.append(re.sub(r"[^A-Za-z0-9.-]+", "-", f"{key.rsplit('.', 1)[-1]}-{value}").strip("-"))
    return f"{name}_" + "_".join(slugs)


def _part_caption(setting: str) -> str:
    return f" — runs with {setting}" if setting else ""
