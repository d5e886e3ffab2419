"""`claims.md` and `claims.json`: every claim of the paper with the measured numbers, its rule and a verdict
(holds, contradicted, inconclusive, not measured). The rules are explained in docs/verdicts.md; the thresholds
are the constants below."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..paper import NETWORKS, OPTIMIZER_NAMES, OPTIMIZERS, PAPER_NETWORKS, ordered
from ..records.run import STEPS
from .runs import CLASSES, FINISHED, optimizer_label, test_over_train
from .stats import (
    CONTRADICTED,
    HOLDS,
    INCONCLUSIVE,
    NOT_MEASURED,
    Interval,
    Part,
    combine,
    holm,
    slope_interval,
    t_interval,
)

LEARNED = 0.9  # a network learned when its best optimizer's final training loss is below LEARNED · ln C
HARDLY = 0.10  # "hardly depends": a spread (max − min) / mean of at most 10%
SPEEDUP = 3.0  # "about 4× faster": the interval of the speed-up ratio lies above 3
SMOOTH = 5  # claim 1: the training loss of steps.csv as a trailing mean over this many logged rows
SAME_SETTING = ["model", "optimizer", "batch_size", "init", "lr"]  # what a claim's cell of runs shares but folds


def beats_rule(names: str) -> str:
    return (
        f"per network: the final training loss and the final test loss of each of {names} minus LLb-SGD's, paired "
        "by fold; a difference holds when its 95% corrected t-interval (Nadeau & Bengio: the variance × (1/k + "
        "1/(K − 1)) for k folds of a K-fold split) lies above zero and is contradicted when below, Holm-corrected "
        "over every difference of the claim. A pair with a diverged side is decided without an interval: one side "
        "diverged on every fold and the other on none loses; anything else is inconclusive. The claim holds on a "
        "network when every difference holds, is contradicted when any is, and holds when it holds on every network."
    )


# every claim's title, the paper's words and the rule that decides it: claims.md prints them, and
# docs/verdicts.md's list of the claims is written from them (scripts/write_verdict_rules.py; tests/test_docs.py)
RULES: dict[int, tuple[str, str, str]] = {
    1: (
        "LLb-SGD converges about 4× faster than SGD on CIFAR-10",
        "on CIFAR-10 LLb-SGD converges about 4× faster than SGD (gap visible after 20 epochs).",
        f"per network and fold, from steps.csv (the mini-batch loss as a trailing mean over up to {SMOOTH} logged "
        "rows, so that it exists from the first logged step): the target is SGD's final smoothed training loss; "
        "the ratio is the step at which SGD's smoothed loss first reaches it over the step at which LLb-SGD's does "
        "(one that never does, or diverged, counted as reaching it one logged step after its last: a bound in its "
        "favour). The largest ratio a fold can show is SGD's step over LLb-SGD's first logged step (the ceiling). "
        f"Holds on a network when the 95% corrected interval of the ratio over folds (a t-interval of its "
        f"logarithm) lies above {SPEEDUP:g}, contradicted when below; inconclusive when the ceiling (geometric "
        f"mean over folds) is below {SPEEDUP:g}. Holm-corrected over the networks; holds when it holds on every "
        "CIFAR-10 network.",
    ),
    2: (
        "LLb-SGD beats NAG, Path-SGD and ESGD on CIFAR-10",
        "on CIFAR-10 LLb-SGD beats NAG, Path-SGD and ESGD.",
        beats_rule(", ".join(OPTIMIZER_NAMES[r] for r in ("nag", "pathsgd", "esgd"))),
    ),
    3: (
        "LLb-SGD is best on the ImageNet networks",
        "on ImageNet it is best, with final training/test loss 0.027/0.011 below the best competitor.",
        beats_rule("the eight other optimizers of the paper")
        + " Measured on another dataset (a stand-in), its numbers are shown and the verdict is not measured.",
    ),
    4: (
        "Training loss hardly depends on the batch size; test loss improves with larger batches",
        "training loss hardly depends on batch size (16–256) while test loss improves with larger batches.",
        "per network (Table 3: LLb-SGD and its SGD control over the batch sizes; a batch size at which neither "
        "learned is left out and named): (a) per fold, the spread (max − min)/mean of the final training loss over "
        f"the batch sizes; LLb-SGD's 95% corrected interval must lie below {HARDLY:.0%} and the interval of SGD's "
        "spread minus LLb-SGD's (paired by fold) above zero; where neither optimizer's spread interval can be "
        f"below {HARDLY:.0%} (both lie above it), the comparison with SGD alone decides (a), and the report says so; "
        "(b) the trend: per fold, the least-squares slope of LLb-SGD's final test loss on log2(batch size); the "
        "corrected interval of the slopes over folds must lie below zero. Holm-corrected over every part; holds on "
        "a network when (a) and (b) hold, contradicted when either is contradicted; holds when it holds on every "
        "network.",
    ),
    5: (
        "Results hardly depend on the initialization",
        "results hardly depend on the initialization (uniform, normal, Xavier, MSRA).",
        "per network (Table 4: LLb-SGD and its SGD control over the initializations; an initialization at which "
        "neither learned is left out and named), for the final training loss and for the final test loss: per "
        "fold, the spread (max − min)/mean over the initializations; LLb-SGD's 95% corrected interval must lie "
        f"below {HARDLY:.0%} and the interval of SGD's spread minus LLb-SGD's (paired by fold) above zero; where "
        f"neither optimizer's spread interval can be below {HARDLY:.0%}, the comparison with SGD alone decides. "
        "Holm-corrected over every part; holds on a network when both losses do, contradicted when either is; holds "
        "when it holds on every network.",
    ),
    6: (
        "The initial rate changes the number of iterations, not the final loss",
        "the initial learning rate changes the number of iterations, not the final loss.",
        "per network (Fig. 7: LLb-SGD at initial rates 0.001–0.1): (a) the iterations to convergence must fall as "
        "the rate rises: a run converged when the plateau rule stopped it below "
        f"{LEARNED}·ln C (a stop at a higher loss is a stall, not convergence); a run that reached its budget is "
        "censored (its iterations are at least the budget) and, like a stall, left out of the least-squares slope "
        "of log(steps) on log(rate) over the converged runs, whose 95% t-interval must lie below zero (fewer than "
        "three converged runs at two rates: inconclusive); (b) the spread (max − min)/mean of the final training "
        f"loss over the rates (mean over folds; a diverged run counted as the larger of ln C and the worst "
        f"finished loss) must be at most {HARDLY:.0%}. Holds on a network when (a) and (b) hold, contradicted when "
        "(a)'s interval lies above zero or (b) fails; Holm-corrected over the networks' slopes; holds when it holds "
        "on every network.",
    ),
    7: (
        "LLb-SGD passes saddle points where SGD, NAG and Adagrad stall",
        "LLb-SGD passes saddle points where SGD, NAG and Adagrad stall (Fig. 8), and faster than Adam.",
        "Fig. 8's network started next to the saddle at zero weights, each optimizer at its configured rate, "
        "several seeds (each its own start and batch order): the escape is the first step at which the training "
        "loss on a fixed batch is 10% below its value at the start (one that never escapes counted as escaping one "
        "step after the budget). Paired by seed: LLb-SGD against SGD, NAG, Adagrad and Adam, and Adam against SGD, "
        "NAG and Adagrad; each difference (the other's steps minus its own) holds when its 95% t-interval lies above "
        "zero (the seeds share no training data: no correction). The same again at tuned rates (each optimizer's "
        "five rates around its own tried on a seed none of these uses; the earliest escape wins), Holm-corrected over "
        "all the differences. Holds when every difference holds, contradicted when any lies below zero. Note: at the "
        "same α0 the "
        "reconstruction of LLb-SGD (max_lr_ratio 1) never takes a larger step than SGD, so at equal rates it can at "
        "best tie SGD here; the ablation runs max_lr_ratio > 1.",
    ),
}


def rules_markdown(width: int = 116) -> str:
    """The claims as docs/verdicts.md lists them: each one's title, the paper's words and its rule (`RULES`)."""
    items = [
        textwrap.fill(f"**{title}.** *Paper:* {paper} *Rule:* {rule}", width, initial_indent=f"{number}. ",
                      subsequent_indent="   ", break_long_words=False, break_on_hyphens=False)
        for number, (title, paper, rule) in RULES.items()
    ]  # fmt: skip
    return "\n".join(items) + "\n"


@dataclass
class Claim:
    id: int
    title: str
    paper: str
    rule: str
    verdict: str = NOT_MEASURED
    lines: list[str] = field(default_factory=list)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # per network (claim 7: per optimizer)
    excluded: list[str] = field(default_factory=list)  # networks that did not learn
    note: str | None = None  # why the verdict is `not measured` although numbers exist (a stand-in dataset)
    corrected: int = 0  # how many tests Holm's correction ran over (0: one test or none)

    def markdown(self) -> str:
        body = "\n".join(f"- {line}" for line in self.lines) if self.lines else "- no runs to measure it"
        parts = [f"## {self.id}. {self.title}", f"*Paper:* {self.paper}", f"*Rule:* {self.rule}", body]
        verdict = f"**Verdict: {self.verdict}**" + (f" ({self.note})" if self.note else "")
        if self.corrected:
            parts.append(f"*Multiplicity:* Holm-corrected over the claim's {self.corrected} tests.")
        return "\n\n".join([*parts, verdict]) + "\n"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "claim": self.title, "paper": self.paper, "rule": self.rule, "verdict": self.verdict,
                "note": self.note, "holm_tests": self.corrected, "excluded": self.excluded,
                "rows": self.rows}  # fmt: skip


# --- which runs and values enter ------------------------------------------------------------------------------


def chance(runs: pd.DataFrame) -> float | None:
    """ln C of the runs' dataset (C classes), or None when unknown."""
    counts = runs["classes"].dropna() if "classes" in runs else pd.Series(dtype=float)
    if len(counts):
        return math.log(float(counts.iloc[0]))
    known = [CLASSES[d] for d in runs["dataset"].unique() if d in CLASSES]
    return math.log(known[0]) if known else None


def _settled(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs whose result counts: finished or diverged (a failed run is an error, not a result)."""
    return runs[runs["status"].isin((*FINISHED, "diverged"))] if len(runs) else runs


def learned(runs: pd.DataFrame) -> tuple[bool, float | None, float | None]:
    """(whether the network of `runs` learned, its best mean final training loss, the bar LEARNED · ln C).

    The best is over the cells of runs that share a setting but the fold (optimizer, batch size, init, rate);
    without a known number of classes every network counts as learned."""
    finished = runs[runs["status"].isin(FINISHED)]
    best = finished.groupby(SAME_SETTING, dropna=False)["train_loss"].mean().min() if len(finished) else math.nan
    bar = chance(runs)
    best = None if pd.isna(best) else float(best)
    if bar is None:
        return True, best, None
    return best is not None and best < LEARNED * bar, best, LEARNED * bar


def networks_that_learned(claim: Claim, runs: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """Each network of `runs` that learned (in the paper's order); the others are named in `claim.excluded`."""
    for network in ordered(runs["model"], NETWORKS) if len(runs) else []:
        of = runs[runs["model"] == network]
        ok, best, bar = learned(of)
        if ok:
            yield network, of
        else:
            claim.excluded.append(network)
            shown = "no finished run" if best is None else f"best final training loss {best:.4f}"
            claim.lines.append(f"{network}: did not learn ({shown}, not below {bar:.4f} = {LEARNED}·ln C): left out")


def with_diverged(runs: pd.DataFrame, metric: str) -> pd.Series:
    """`metric` of `runs` (one network's), a diverged run counted as worse than every finished one: as the larger
    of ln C and the worst finished value of the network in these runs (so it ranks last and is never dropped).
    Used for spreads and ranks; a paired comparison with a diverged side is decided by `paired` instead."""
    values = runs[metric].astype(float).copy()
    diverged = runs["status"] == "diverged"
    finite = values[~diverged & runs["status"].isin(FINISHED)].dropna()
    worst = max([float(finite.max())] if len(finite) else [], default=0.0)
    values[diverged] = max(worst, chance(runs) or 0.0)
    return values


def per_fold(runs: pd.DataFrame, metric: str, by: str) -> pd.DataFrame:
    """Fold × (the values of `by`) table of `metric`, a diverged run counted as in `with_diverged`."""
    settled = _settled(runs)
    frame = settled.assign(value=with_diverged(settled, metric), fold=settled["fold"].fillna(-1))
    return frame.pivot_table(index="fold", columns=by, values="value", aggfunc="mean")


def fold_interval(values: Any, runs: pd.DataFrame) -> Interval:
    """The corrected t-interval of per-fold `values` (docs/verdicts.md)."""
    return t_interval(values, test_over_train=test_over_train(runs))


def paired(runs: pd.DataFrame, metric: str, a: str, b: str, side: str = "above", by: str = "optimizer") -> Part:
    """`metric`(a) − `metric`(b), paired by fold (folds that hold both), to lie on `side` of zero: the corrected
    t-interval of the differences when neither side diverged; with a diverged side, no interval is made of
    substitutes: one side diverged on every fold and the other on none decides it (the diverged side is the
    worse), anything else is inconclusive."""
    settled = _settled(runs)
    settled = settled[settled[by].isin((a, b))].assign(fold=settled["fold"].fillna(-1))
    table = settled.pivot_table(index="fold", columns=by, values=metric, aggfunc="mean")
    diverged = settled.assign(d=settled["status"] == "diverged").pivot_table(index="fold", columns=by, values="d",
                                                                           aggfunc="max")  # fmt: skip
    if a not in diverged or b not in diverged:
        return Part(t_interval([]), side)
    both = diverged[[a, b]].dropna().astype(bool)
    if not both.to_numpy().any():
        differences = table[a] - table[b] if a in table and b in table else pd.Series(dtype=float)
        return Part(fold_interval(differences.dropna(), runs), side)
    n, worse = len(both), None
    if n < 2:
        why = f"diverged on the only fold: {optimizer_label(a if both[a].all() else b)}"
        return Part(t_interval([]), side, fixed=INCONCLUSIVE, why=why)
    if both[a].all() and not both[b].any():
        worse = "above"  # a's loss is the larger
    elif both[b].all() and not both[a].any():
        worse = "below"
    if worse is None:
        counts = ", ".join(f"{optimizer_label(o)} on {int(both[o].sum())}" for o in (a, b))
        why = f"diverged: {counts} of {n} folds"
        return Part(t_interval([]), side, fixed=INCONCLUSIVE, why=why)
    loser = a if worse == "above" else b
    why = f"{optimizer_label(loser)} diverged on every fold ({n}), the other on none"
    return Part(t_interval([]), side, fixed=HOLDS if worse == side else CONTRADICTED, why=why)


def spread(values: pd.Series) -> float:
    """(max − min) / mean."""
    return float((values.max() - values.min()) / values.mean())


def decide(claim: Claim, rows: dict[str, dict[str, Part]]) -> dict[str, dict[str, str]]:
    """Every part's outcome, Holm-corrected over all parts of the claim (rows: row → part → test)."""
    flat = {(row, part): test for row, parts in rows.items() for part, test in parts.items()}
    outcomes = holm(flat)
    tested = [t for t in flat.values() if t.fixed is None and not math.isnan(t.interval.p_value(t.threshold))]
    if len(tested) > 1:  # Holm's family: the tests with a p-value (one fold gives none)
        claim.corrected = len(tested)
    return {row: {part: outcomes[(row, part)] for part in parts} for row, parts in rows.items()}


# --- claims 1-3: Table 2 --------------------------------------------------------------------------------------


def _smoothed_steps(path: str) -> pd.DataFrame | None:
    """A run's steps.csv with the loss as a trailing mean over up to SMOOTH logged rows (it exists from the first
    row on); None without the file."""
    file = Path(path) / STEPS
    if not file.exists():
        return None
    steps = pd.read_csv(file)
    steps["smooth"] = steps["loss"].astype(float).rolling(SMOOTH, min_periods=1).mean()
    return steps.dropna(subset=["smooth"])


def _first_reach(steps: pd.DataFrame, target: float) -> int | None:
    reached = steps[steps["smooth"] <= target]
    return int(reached["step"].iloc[0]) if len(reached) else None


def _speedups(of: pd.DataFrame) -> tuple[list[float], list[float], list[str]]:
    """One network's claim-1 measurement per fold: (ratios, ceilings, notes) of the folds with both runs."""
    ratios, ceilings, notes = [], [], []
    for fold in sorted(of["fold"].dropna().unique()):
        pair = {o: of[(of["fold"] == fold) & (of["optimizer"] == o)] for o in ("llb", "sgd")}
        if any(p.empty for p in pair.values()):
            continue
        sgd, llb = (_smoothed_steps(pair[o]["path"].iloc[0]) for o in ("sgd", "llb"))
        if sgd is None or llb is None or sgd.empty or llb.empty:
            notes.append(f"fold {fold}: no steps.csv")
            continue
        if pair["sgd"]["status"].iloc[0] == "diverged" or not np.isfinite(sgd["smooth"].iloc[-1]):
            notes.append(f"fold {fold}: SGD diverged, no target")
            continue
        target = float(sgd["smooth"].iloc[-1])
        mine = _first_reach(llb, target) if pair["llb"]["status"].iloc[0] != "diverged" else None
        stride = int(llb["step"].diff().dropna().median()) if len(llb) > 1 else 1
        reach = _first_reach(sgd, target)
        ratios.append(reach / (mine if mine is not None else int(llb["step"].iloc[-1]) + stride))
        ceilings.append(reach / int(llb["step"].iloc[0]))
        shown = f"{mine} steps" if mine is not None else "never"
        notes.append(f"fold {fold}: target {target:.4f}, SGD {reach} steps, LLb-SGD {shown}")
    return ratios, ceilings, notes


def speedup(runs: pd.DataFrame) -> Claim:
    claim = Claim(1, *RULES[1])
    tests, shown = {}, {}
    for network, of in networks_that_learned(claim, runs):
        ratios, ceilings, notes = _speedups(of)
        if not ratios:
            continue
        log_ratio = fold_interval(np.log(ratios), of)
        ceiling = float(np.exp(np.mean(np.log(ceilings))))
        why = f"its ceiling {ceiling:.2f}× is below {SPEEDUP:g}×: the rule cannot reach holds"
        tests[network] = {"ratio": Part(log_ratio, "above", math.log(SPEEDUP),
                                        fixed=INCONCLUSIVE if ceiling < SPEEDUP else None, why=why)}  # fmt: skip
        shown[network] = (log_ratio, ratios, ceiling, notes)
    for network, parts in decide(claim, tests).items():
        log_ratio, ratios, ceiling, notes = shown[network]
        outcome = parts["ratio"]
        ratio = Interval(*(math.exp(v) for v in (log_ratio.mean, log_ratio.low, log_ratio.high)), log_ratio.n)
        extra = f"; {tests[network]['ratio'].why}" if tests[network]["ratio"].fixed else ""
        claim.lines.append(
            f"{network}: speed-up {ratio.text('.2f', unit='×')}, ceiling {ceiling:.2f}× ({'; '.join(notes)}"
            f"{extra}): {outcome}"
        )
        claim.rows[network] = {"verdict": outcome, "ratio": ratio.as_dict(), "ceiling": round(ceiling, 4),
                               "per_fold": [round(r, 4) for r in ratios]}  # fmt: skip
    claim.verdict = combine(r["verdict"] for r in claim.rows.values())
    return claim


def beats(claim: Claim, runs: pd.DataFrame, rivals: tuple[str, ...]) -> Claim:
    """LLb-SGD against each rival on final training and test loss, paired by fold: holds on a network when every
    difference (rival − LLb-SGD) holds, Holm-corrected over every difference of the claim."""
    tests: dict[str, dict[str, Part]] = {}
    for network, of in networks_that_learned(claim, runs):
        present = [r for r in rivals if r in set(of["optimizer"])]
        if "llb" not in set(of["optimizer"]) or not present:
            continue
        tests[network] = {f"{rival}:{metric}": paired(of, metric, rival, "llb")
                          for rival in present for metric in ("train_loss", "test_loss")}  # fmt: skip
    for network, parts in decide(claim, tests).items():
        row, shown = {}, []
        for key, outcome in parts.items():
            test = tests[network][key]
            row[key] = {"verdict": outcome, "difference": test.interval.as_dict(),
                        **({"decided_by": test.why} if test.fixed else {})}  # fmt: skip
        for rival in dict.fromkeys(key.split(":")[0] for key in parts):
            train, test = (tests[network][f"{rival}:{m}"] for m in ("train_loss", "test_loss"))
            numbers = "/".join("—" if t.fixed else f"{t.interval.mean:+.4f}" for t in (train, test))
            why = "".join(dict.fromkeys(f"; {t.why}" for t in (train, test) if t.fixed))
            shown.append(f"{optimizer_label(rival)} {numbers} ({parts[f'{rival}:train_loss']}/"
                         f"{parts[f'{rival}:test_loss']}{why})")  # fmt: skip
        outcome = combine(parts.values())
        claim.rows[network] = {"verdict": outcome, **row}
        claim.lines.append(f"{network}: rival − LLb-SGD, train/test (paired by fold): {'; '.join(shown)}: {outcome}")
    claim.verdict = combine(r["verdict"] for r in claim.rows.values())
    return claim


def stand_in(runs: pd.DataFrame) -> bool:
    """Whether ImageNet's claim is being measured on another dataset (the CPU scale's stand-in)."""
    return bool(len(runs)) and not (runs["dataset"] == "imagenet").any()


# --- claims 4-6: stability ------------------------------------------------------------------------------------


def _fold_spreads(runs: pd.DataFrame, metric: str, factor: str) -> pd.Series:
    """Per fold, the spread of `metric` over the values of `factor` (folds that hold every value)."""
    table = per_fold(runs, metric, factor).dropna()
    return table.apply(spread, axis=1) if len(table.columns) >= 2 else pd.Series(dtype=float)


def unlearned(of: pd.DataFrame, factor: str) -> list[Any]:
    """The values of `factor` at which neither LLb-SGD nor SGD learned (mean final training loss over folds not
    below LEARNED · ln C): they measure nothing about stability and are left out."""
    bar = chance(of)
    if bar is None:
        return []
    finished = of[of["status"].isin(FINISHED)]
    means = finished.groupby([factor, "optimizer"])["train_loss"].mean().unstack()
    return [v for v, row in means.iterrows() if all(not row.get(o, math.inf) < LEARNED * bar for o in ("llb", "sgd"))]


def stability(of: pd.DataFrame, metric: str, factor: str) -> tuple[dict[str, Part], str]:
    """LLb-SGD's spread of `metric` over `factor` against HARDLY (`bar`) and against SGD's on the same sweep
    (`versus`: SGD's spread − LLb-SGD's, paired by fold, above zero). Where neither optimizer's spread can meet
    the absolute bar at this scale (both intervals above HARDLY), the comparison with SGD alone decides."""
    llb = _fold_spreads(of[of["optimizer"] == "llb"], metric, factor)
    sgd = _fold_spreads(of[of["optimizer"] == "sgd"], metric, factor)
    mine, theirs = fold_interval(llb, of), fold_interval(sgd, of)
    if mine.n == 0:
        return {}, ""
    versus = fold_interval((sgd - llb).dropna(), of) if len(sgd) else t_interval([])
    nobody = mine.above(HARDLY) and theirs.above(HARDLY)
    parts = {"versus": Part(versus, "above") if versus.n else Part(versus, fixed=INCONCLUSIVE, why="no SGD control")}
    if not nobody:
        parts["bar"] = Part(mine, "below", HARDLY)
    reading = (f"decided by the comparison with SGD alone: neither spread can be below {HARDLY:.0%} here"
               if nobody else f"LLb-SGD's spread against {HARDLY:.0%} and against SGD's")  # fmt: skip
    text = (f"{metric.replace('_', ' ')} spread LLb-SGD {mine.text('.1%')}, SGD {theirs.text('.1%')}, SGD − LLb-SGD "
            + (versus.text("+.1%") if versus.n else "— (no SGD control)") + f" ({reading})")  # fmt: skip
    return parts, text


def _stability_numbers(parts: dict[str, Part], outcomes: dict[str, str]) -> dict[str, Any]:
    numbers: dict[str, Any] = {
        "sgd_minus_llb_spread": parts["versus"].interval.as_dict(),
        "verdict": combine(outcomes.values()),
    }
    if "bar" in parts:
        numbers["llb_spread"] = parts["bar"].interval.as_dict()
    else:
        numbers["decided_by"] = "the comparison with SGD (no optimizer's spread can be below the bar here)"
    return numbers


def _not_run(claim: Claim, runs: pd.DataFrame) -> None:
    """At a CPU scale, name the paper's networks this sweep left out ("not run at small scale")."""
    if len(runs) and set(runs["scale"].astype(str)) - {"full"}:
        for network in PAPER_NETWORKS:
            if network not in set(runs["model"]):
                claim.lines.append(f"{network}: not run at small scale")


def _leave_out_unlearned(claim: Claim, network: str, of: pd.DataFrame, factor: str) -> pd.DataFrame:
    """`of` without the values of `factor` at which neither optimizer learned, named in the claim."""
    dropped = unlearned(of, factor)
    if dropped:
        claim.lines.append(f"{network}: left out {factor} {', '.join(map(str, dropped))}: neither LLb-SGD nor SGD "
                           f"learned there (mean final training loss not below {LEARNED}·ln C)")  # fmt: skip
        of = of[~of[factor].isin(dropped)]
    return of


def batch_size(runs: pd.DataFrame) -> Claim:
    claim = Claim(4, *RULES[4])
    tests, texts = {}, {}
    for network, of in networks_that_learned(claim, runs):
        if of["batch_size"].nunique() < 2 or "llb" not in set(of["optimizer"]):
            continue
        of = _leave_out_unlearned(claim, network, of, "batch_size")
        if of["batch_size"].nunique() < 2:
            continue
        flat, text = stability(of, "train_loss", "batch_size")
        table = per_fold(of[of["optimizer"] == "llb"], "test_loss", "batch_size").dropna()
        sizes = np.log2(np.asarray(table.columns, dtype=float))
        trend = fold_interval([slope_interval(sizes, row.to_numpy()).mean for _, row in table.iterrows()], of)
        if not flat:
            continue
        tests[network] = {**{f"flat:{k}": t for k, t in flat.items()}, "falls": Part(trend, "below")}
        texts[network] = (text, trend, {k: t for k, t in flat.items()})
    for network, parts in decide(claim, tests).items():
        text, trend, flat = texts[network]
        flat_outcomes = {k.split(":")[1]: o for k, o in parts.items() if k.startswith("flat:")}
        outcome = combine(parts.values())
        claim.rows[network] = {"verdict": outcome, "train_loss": _stability_numbers(flat, flat_outcomes),
                               "test_slope_per_doubling": {**trend.as_dict(), "verdict": parts["falls"]}}  # fmt: skip
        claim.lines.append(
            f"{network}: {text} ({combine(flat_outcomes.values())}); LLb-SGD's test loss per doubling of the batch "
            f"{trend.text('+.4f')} ({parts['falls']}): {outcome}"
        )
    _not_run(claim, runs)
    claim.verdict = combine(r["verdict"] for r in claim.rows.values())
    return claim


def initialization(runs: pd.DataFrame) -> Claim:
    claim = Claim(5, *RULES[5])
    tests, texts = {}, {}
    for network, of in networks_that_learned(claim, runs):
        if of["init"].nunique() < 2 or "llb" not in set(of["optimizer"]):
            continue
        of = _leave_out_unlearned(claim, network, of, "init")
        if of["init"].nunique() < 2:
            continue
        measured = {metric: stability(of, metric, "init") for metric in ("train_loss", "test_loss")}
        if not all(parts for parts, _ in measured.values()):
            continue
        tests[network] = {f"{m}:{k}": t for m, (parts, _) in measured.items() for k, t in parts.items()}
        texts[network] = measured
    for network, parts in decide(claim, tests).items():
        row, shown = {}, []
        for metric, (metric_tests, text) in texts[network].items():
            outcomes = {k.split(":")[1]: o for k, o in parts.items() if k.startswith(f"{metric}:")}
            row[metric] = _stability_numbers(metric_tests, outcomes)
            shown.append(f"{text} ({row[metric]['verdict']})")
        outcome = combine(parts.values())
        claim.rows[network] = {"verdict": outcome, **row}
        claim.lines.append(f"{network}: {'; '.join(shown)}: {outcome}")
    _not_run(claim, runs)
    claim.verdict = combine(r["verdict"] for r in claim.rows.values())
    return claim


def _rate_tests(of: pd.DataFrame) -> tuple[dict[str, Part], tuple]:
    """Claim 6 on one network's runs: its two parts (the slope falls, the final loss is steady) and what the claim
    shows of them (the slope, the loss spread, the mean steps to converge per rate, stalls, censored runs)."""
    bar = LEARNED * (chance(of) or math.inf)
    stopped = of[of["status"] == "stopped"]
    converged = stopped[stopped["train_loss"].astype(float) < bar]
    stalled, censored = len(stopped) - len(converged), int((of["status"] == "completed").sum())
    slope = slope_interval(np.log(converged["lr"].astype(float)), np.log(converged["steps"].astype(float)))
    enough = len(converged) >= 3 and converged["lr"].nunique() >= 2
    loss_spread = spread(per_fold(of, "train_loss", "lr").mean())
    parts = {
        "falls": Part(slope, "below") if enough else Part(
            slope, fixed=INCONCLUSIVE, why=f"{len(converged)} converged run(s): too few for a slope"),
        "steady": Part(t_interval([]), fixed=HOLDS if loss_spread <= HARDLY else CONTRADICTED,
                       why=f"spread {loss_spread:.1%}"),
    }  # fmt: skip
    return parts, (slope, loss_spread, converged.groupby("lr")["steps"].mean(), stalled, censored)


def initial_rate(runs: pd.DataFrame) -> Claim:
    claim = Claim(6, *RULES[6])
    tests, shown = {}, {}
    for network, of in networks_that_learned(claim, runs):
        if of["lr"].nunique() >= 2:
            tests[network], shown[network] = _rate_tests(of)
    for network, parts in decide(claim, tests).items():
        slope, loss_spread, steps, stalled, censored = shown[network]
        outcome = combine(parts.values())
        claim.rows[network] = {
            "verdict": outcome, "log_steps_per_log_rate": {**slope.as_dict(), "verdict": parts["falls"]},
            "train_loss_spread": round(loss_spread, 6), "stalled": stalled, "censored": censored,
        }  # fmt: skip
        iterations = (f"converged in {', '.join(f'{s:.0f}' for s in steps)} iterations at rates "
                      f"{', '.join(f'{r:g}' for r in steps.index)}") if len(steps) else "no run converged"  # fmt: skip
        falls = tests[network]["falls"]
        claim.lines.append(
            f"{network}: {iterations} ({stalled} stalled above the bar, {censored} reached the budget: censored); "
            f"slope of log steps on log rate {'—, ' + falls.why if falls.fixed else slope.text('+.3f')} "
            f"({parts['falls']}); "
            f"final training-loss spread {loss_spread:.1%} ({parts['steady']}): {outcome}"
        )
    _not_run(claim, runs)
    claim.verdict = combine(r["verdict"] for r in claim.rows.values())
    return claim


# --- claim 7: Fig. 8 ------------------------------------------------------------------------------------------

ESCAPERS, STALLERS = ("llb", "adam"), ("sgd", "nag", "adagrad")


def _escape_lines(escapes: dict[str, list[int | None]], rates: dict[str, Any], where: str, budget: int) -> list[str]:
    """Claim 7's lines of one reading: each optimizer's rate and escape step per seed."""
    lines = []
    for name in ordered(escapes, OPTIMIZERS):
        shown = ", ".join("never" if s is None else str(s) for s in escapes[name])
        rate = rates.get(name)
        at = f" at rate {rate:.4g}" if rate is not None else ""
        lines.append(f"{where}: {OPTIMIZER_NAMES.get(name, name)}{at}: escape step per seed {shown} (budget {budget})")
    return lines


def saddles(measured: dict[str, Any] | None) -> Claim:
    """Claim 7 from Fig. 8's network measurement (`llbbench saddle`): its `escapes` map each optimizer to its
    escape step per seed (None: it did not escape within `budget` steps)."""
    claim = Claim(7, *RULES[7])
    escapes, budget = (measured or {}).get("escapes"), (measured or {}).get("budget")
    if not escapes or budget is None or "llb" not in escapes:
        return claim
    readings = {"configured": escapes}
    tuned = (measured or {}).get("tuned")
    if tuned and "llb" in tuned.get("escapes", {}):
        readings["tuned"] = tuned["escapes"]

    def steps(of: dict[str, list[int | None]], name: str) -> np.ndarray:
        return np.array([budget + 1 if s is None else s for s in of[name]], dtype=float)

    pairs = [("llb", r) for r in (*STALLERS, "adam")] + [("adam", r) for r in STALLERS]
    tests = {reading: {f"{mine}<{rival}": Part(t_interval(steps(of, rival) - steps(of, mine)))
                       for mine, rival in pairs if mine in of and rival in of}
             for reading, of in readings.items()}  # fmt: skip
    outcomes = decide(claim, tests)
    for reading, of in readings.items():
        prefix = "" if reading == "configured" else "tuned:"
        where = "at configured rates" if reading == "configured" else "at tuned rates"
        for key, outcome in outcomes[reading].items():
            mine, rival = key.split("<")
            interval = tests[reading][key].interval
            claim.rows[prefix + key] = {"verdict": outcome, "difference": interval.as_dict()}
            claim.lines.append(
                f"{where}: {OPTIMIZER_NAMES[rival]} − {OPTIMIZER_NAMES[mine]} escape steps: "
                f"{interval.text('+.1f')}: {outcome}"
            )
        rates = tuned["rates"] if reading == "tuned" else measured.get("rates") or {}
        claim.lines += _escape_lines(of, rates, where, budget)
    claim.verdict = combine(o for parts in outcomes.values() for o in parts.values())
    return claim


# --- all of them ----------------------------------------------------------------------------------------------


def split_by_dataset(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(CIFAR-10 runs, ImageNet runs), by the data each run used: an ImageNet experiment run on CIFAR-10 (the
    CPU scale's stand-in) counts for ImageNet; runs on any other image folder count for neither."""
    if not len(runs):
        return runs, runs
    stand_in_runs = runs["experiment"].astype(str).str.contains("imagenet")
    cifar = runs[(runs["dataset"] == "cifar10") & ~stand_in_runs]
    imagenet = runs[(runs["dataset"] == "imagenet") | ((runs["dataset"] == "cifar10") & stand_in_runs)]
    return cifar, imagenet


def all_claims(groups: dict[str, pd.DataFrame], saddle: dict[str, Any] | None = None) -> list[Claim]:
    """The seven claims from the one-shot runs of each experiment group and Fig. 8's network measurement."""
    empty = pd.DataFrame()
    cifar, imagenet = split_by_dataset(groups.get("table2", empty))
    rivals = ("nag", "pathsgd", "esgd")
    on_cifar = Claim(2, *RULES[2])
    on_imagenet = Claim(3, *RULES[3])
    imagenet_claim = beats(on_imagenet, imagenet, tuple(o for o in OPTIMIZERS if o != "llb"))
    if stand_in(imagenet):
        imagenet_claim.verdict, imagenet_claim.note = NOT_MEASURED, "stand-in: ImageNet's networks on CIFAR-10"
    return [
        speedup(cifar),
        beats(on_cifar, cifar, rivals),
        imagenet_claim,
        batch_size(groups.get("table3", empty)),
        initialization(groups.get("table4", empty)),
        initial_rate(groups.get("fig7", empty)),
        saddles(saddle),
    ]


# --- your optimizers against the paper's ----------------------------------------------------------------------

YOURS_TITLE = "Your optimizers against the paper's"
YOURS_RULE = (
    "per network of Table 2 (one-shot runs): the final training loss and the final test loss of each optimizer "
    "that is not the paper's minus LLb-SGD's, and minus the best baseline's (of the paper's eight others, the "
    "lowest mean final training loss over folds), paired by fold, with the corrected 95% t-interval of "
    "docs/verdicts.md (not Holm-corrected: these are descriptions, not the paper's claims). Negative: yours is "
    "the lower."
)


def yours(runs: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per network and added optimizer, its paired differences against LLb-SGD and the best baseline (train and
    test loss): network → optimizer → {"against": ..., "train_loss": interval, "test_loss": interval}."""
    from .runs import added_optimizers

    found: dict[str, dict[str, Any]] = {}
    for network in ordered(set(runs["model"]) if len(runs) else (), NETWORKS):
        of = runs[runs["model"] == network]
        present = set(of["optimizer"])
        means = per_fold(of, "train_loss", "optimizer").mean()
        baselines = [o for o in OPTIMIZERS if o != "llb" and o in present and not math.isnan(means.get(o, math.nan))]
        best = min(baselines, key=lambda o: means[o]) if baselines else None
        for mine in added_optimizers(of):
            against = [o for o in ("llb", best) if o is not None and o in present]
            found.setdefault(network, {})[mine] = {
                rival: {metric: paired(of, metric, mine, rival) for metric in ("train_loss", "test_loss")}
                for rival in against
            }
            found[network][mine]["best_baseline"] = best
    return found


def yours_markdown(found: dict[str, dict[str, Any]]) -> str:
    """claims.md's section on the added optimizers (empty when there are none)."""
    if not found:
        return ""
    lines = [f"## {YOURS_TITLE}", f"*Rule:* {YOURS_RULE}"]
    for network, optimizers in found.items():
        for mine, rivals in optimizers.items():
            best = rivals["best_baseline"]
            shown = []
            for rival, parts in rivals.items():
                if rival == "best_baseline":
                    continue
                role = " (best baseline)" if rival == best else ""
                train, test = parts["train_loss"].text(), parts["test_loss"].text()
                shown.append(f"− {optimizer_label(rival)}{role}: train {train}, test {test}")
            lines.append(f"- {network}: {optimizer_label(mine)} " + ("; ".join(shown) or "no paper optimizer ran here"))
    return "\n\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]) + "\n"


def yours_dict(found: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The section as yours.json holds it."""
    return {network: {mine: {rival: parts if rival == "best_baseline" else
                             {m: {"difference": p.interval.as_dict(), **({"decided_by": p.why} if p.fixed else {})}
                              for m, p in parts.items()}
                             for rival, parts in rivals.items()}
                      for mine, rivals in optimizers.items()}
            for network, optimizers in found.items()}  # fmt: skip
