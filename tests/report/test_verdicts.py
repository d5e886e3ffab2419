"""The verdicts of claims.md / claims.json (docs/verdicts.md): each outcome from synthetic run directories in the
real format, the "did not learn" exclusion, diverged runs ranked last, and the statistics against hand values."""

from __future__ import annotations

import json
import math

import pytest
from scipy import stats

from llbbench.report import build_report
from llbbench.report.stats import Interval, Part, combine, holm, slope_interval, t_interval

from .test_report import write_run

T2 = "table2_cifar10"


def verdicts(root) -> dict[int, dict]:
    report = build_report([root])
    return {claim["id"]: claim for claim in json.loads((report / "claims.json").read_text())}


def test_t_interval_and_slope_against_hand_values():
    interval = t_interval([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, 2) = 4.302653
    assert (interval.mean, interval.n) == (2.0, 3)
    assert interval.low == pytest.approx(2 - 4.302653 / math.sqrt(3), abs=1e-5)
    assert interval.high == pytest.approx(2 + 4.302653 / math.sqrt(3), abs=1e-5)
    assert interval.outcome("above") == interval.outcome("below") == "inconclusive"
    assert t_interval([0.5, 0.6, 0.7]).outcome("above") == "holds"
    assert t_interval([0.5, 0.6, 0.7]).outcome("below") == "contradicted"
    assert t_interval([0.5]).outcome("above") == "inconclusive"  # one fold: no interval
    # x centred: -1.5, -0.5, 0.5, 1.5 (Sxx = 5); Sxy = 9: slope 1.8, the line 1.3 + 1.8x; residuals ±0.2, ±0.6;
    # se = sqrt(RSS / (n - 2) / Sxx), t(0.975, 2) = 4.302653
    slope = slope_interval([0.0, 1.0, 2.0, 3.0], [1.5, 2.5, 5.5, 6.5])
    assert slope.mean == pytest.approx(1.8)
    se = math.sqrt((0.2**2 + 0.6**2 + 0.6**2 + 0.2**2) / 2 / 5.0)
    assert slope.high - slope.mean == pytest.approx(4.302653 * se, abs=1e-5)
    assert combine(["holds", "holds"]) == "holds"
    assert combine(["holds", "inconclusive"]) == "inconclusive"
    assert combine(["holds", "contradicted", "inconclusive"]) == "contradicted"
    assert combine(["not measured"]) == "not measured"


def _table2(root, model: str, rival: str, llb: list[float], theirs: list[float], **kwargs) -> None:
    """LLb-SGD and `rival` on three folds, final training (and test = training + 0.5) losses as given."""
    for fold, (mine, other) in enumerate(zip(llb, theirs, strict=True)):
        write_run(root, T2, model, "llb", fold, [2.0, mine], mine + 0.5, **kwargs)
        write_run(root, T2, model, rival, fold, [2.0, other], other + 0.5, **kwargs)


@pytest.mark.parametrize(
    ("llb", "nag", "verdict"),
    [
        ([0.50, 0.55, 0.62], [1.00, 1.10, 1.20], "holds"),  # better by 0.50-0.58 on every fold
        ([1.00, 1.10, 1.20], [0.50, 0.55, 0.62], "contradicted"),  # worse on every fold
        ([0.50, 0.90, 0.60], [0.80, 0.70, 0.70], "inconclusive"),  # +0.3, -0.2, +0.1
    ],
)
def test_claim_2_holds_contradicted_or_inconclusive_by_the_paired_interval(tmp_path, llb, nag, verdict):
    _table2(tmp_path, "resnet34", "nag", llb, nag)
    claim = verdicts(tmp_path)[2]
    assert claim["verdict"] == verdict
    row = claim["rows"]["resnet34"]
    assert row["verdict"] == verdict and row["nag:train_loss"]["difference"]["n"] == 3
    assert row["nag:train_loss"]["difference"]["mean"] == pytest.approx(sum(nag) / 3 - sum(llb) / 3, abs=1e-6)


def test_a_pair_with_a_diverged_side_is_decided_without_an_interval_of_substitutes(tmp_path):
    """LLb-SGD better by 0.5 on three folds but diverged on the fourth: no interval is made of a substitute value
    (the pair is inconclusive, and says why); a rival that diverged on every fold, LLb-SGD on none, loses."""
    _table2(tmp_path, "resnet34", "nag", [0.50, 0.55, 0.60], [1.00, 1.05, 1.10])
    write_run(tmp_path, T2, "resnet34", "llb", 3, [2.0, 2.0], 2.0, status="diverged")
    write_run(tmp_path, T2, "resnet34", "nag", 3, [2.0, 1.0], 1.5)
    for fold in range(3):  # paired on the folds that hold both: LLb-SGD diverged on none of them
        write_run(tmp_path, T2, "resnet34", "esgd", fold, [2.0, 2.3], 2.3, status="diverged")
    claim = verdicts(tmp_path)[2]
    row = claim["rows"]["resnet34"]
    assert row["nag:train_loss"]["verdict"] == "inconclusive"
    assert row["nag:train_loss"]["decided_by"] == "diverged: NAG on 0, LLb-SGD on 1 of 4 folds"
    assert row["nag:train_loss"]["difference"]["n"] == 0  # no interval
    assert row["esgd:train_loss"]["verdict"] == row["esgd:test_loss"]["verdict"] == "holds"
    assert row["esgd:train_loss"]["decided_by"] == "ESGD diverged on every fold (3), the other on none"
    assert claim["verdict"] == "inconclusive"


def test_the_corrected_interval_is_wider_than_the_naive_one_by_nadeau_and_bengio():
    """Differences 0.135, 0.2, 0.265 (s = 0.065) over three folds of a 3-fold split: the naive 95% interval
    (s/√3) excludes zero, the corrected one (s·√(1/3 + 1/2)) does not."""
    values = [0.135, 0.2, 0.265]
    naive, corrected = t_interval(values), t_interval(values, test_over_train=1 / 2)
    assert naive.outcome("above") == "holds" and corrected.outcome("above") == "inconclusive"
    assert corrected.high - corrected.mean == pytest.approx(4.302653 * 0.065 * math.sqrt(1 / 3 + 1 / 2), abs=1e-5)
    assert corrected.p_value() == pytest.approx(2 * stats.t.sf(0.2 / (0.065 * math.sqrt(5 / 6)), 2))
    assert naive.p_value() < 0.05 < corrected.p_value()


def test_holm_decides_the_parts_of_a_claim_together():
    """Three tests with p ≈ 0.01, 0.02, 0.04: each alone is significant at 5%; Holm compares them with 0.05/3,
    0.05/2, 0.05 in order, so the smallest (0.01 ≤ 0.0167) holds and the second (0.02 > 0.025? no: 0.02 ≤ 0.025)
    also, the third (0.04 ≤ 0.05) too; with 0.03 in second place it stops there."""

    def test_with_p(p: float) -> Part:
        return Part(Interval(mean=1.0, low=0.5, high=1.5, n=6, se=1.0 / stats.t.isf(p / 2, 5), df=5))

    three = holm({"a": test_with_p(0.01), "b": test_with_p(0.02), "c": test_with_p(0.04)})
    assert three == {"a": "holds", "b": "holds", "c": "holds"}
    stops = holm({"a": test_with_p(0.01), "b": test_with_p(0.03), "c": test_with_p(0.04)})
    assert stops == {"a": "holds", "b": "inconclusive", "c": "inconclusive"}
    assert holm({"a": test_with_p(0.04)}) == {"a": "holds"}  # one test: its own interval's outcome
    below = Part(Interval(mean=-1.0, low=-1.5, high=-0.5, n=6, se=0.1, df=5))
    fixed = Part(t_interval([]), fixed="contradicted", why="diverged")
    assert holm({"x": below, "y": fixed}) == {"x": "contradicted", "y": "contradicted"}


def test_a_network_that_did_not_learn_is_excluded_and_named(tmp_path):
    _table2(tmp_path, "resnet34", "nag", [0.50, 0.55, 0.62], [1.00, 1.10, 1.20])
    _table2(tmp_path, "resnet50", "nag", [2.20, 2.21, 2.25], [2.30, 2.31, 2.35])  # best 2.22 > 0.9 ln 10 = 2.072
    claim = verdicts(tmp_path)[2]
    assert claim["verdict"] == "holds" and claim["excluded"] == ["resnet50"]
    assert set(claim["rows"]) == {"resnet34"}
    text = (tmp_path / "report" / "claims.md").read_text()
    assert "resnet50: did not learn (best final training loss 2.2200, not below 2.0723 = 0.9·ln C): left out" in text


def test_a_claim_with_no_network_left_is_not_measured(tmp_path):
    _table2(tmp_path, "resnet50", "nag", [2.20, 2.21, 2.25], [2.30, 2.31, 2.35])
    claim = verdicts(tmp_path)[2]
    assert claim["verdict"] == "not measured" and claim["excluded"] == ["resnet50"] and claim["rows"] == {}


def test_claim_3_on_the_stand_in_dataset_shows_its_numbers_but_is_not_measured(tmp_path):
    for fold in range(3):
        for optimizer, loss in (("llb", 0.5 + 0.01 * fold), ("sgd", 1.0), ("adam", 1.1 + 0.02 * fold)):
            write_run(tmp_path, "table2_imagenet", "alexnet", optimizer, fold, [2.0, loss], loss + 0.5)
    claim = verdicts(tmp_path)[3]
    assert claim["rows"]["alexnet"]["verdict"] == "holds"  # its numbers are there
    assert claim["verdict"] == "not measured" and "stand-in" in claim["note"]
    assert (
        "**Verdict: not measured** (stand-in: ImageNet's networks on CIFAR-10)"
        in (tmp_path / "report" / "claims.md").read_text()
    )


@pytest.mark.parametrize(("llb_loss", "verdict"), [(0.5, "holds"), (None, "contradicted")])
def test_claim_1_reads_steps_csv_and_judges_the_speed_up_ratio(tmp_path, llb_loss, verdict):
    """SGD's smoothed loss reaches its final 1.0 at step 200 + 10·fold (rows of 10 steps, a trailing mean of up
    to 5); LLb-SGD at 0.5 from the start reaches it at its first row, step 10 (ratios 20, 21, 22: holds);
    LLb-SGD moving as SGD does reaches it when SGD does (ratio 1, ceiling 20: contradicted)."""
    for fold in range(3):
        sgd = [2.0] * (15 + fold) + [1.0] * (7 - fold)  # 22 epochs on every fold
        write_run(tmp_path, T2, "resnet34", "sgd", fold, sgd, 1.5)
        write_run(tmp_path, T2, "resnet34", "llb", fold, [llb_loss] * len(sgd) if llb_loss else sgd, 1.5)
    claim = verdicts(tmp_path)[1]
    assert claim["verdict"] == verdict
    row = claim["rows"]["resnet34"]
    assert row["per_fold"] == ([20.0, 21.0, 22.0] if llb_loss else [1.0, 1.0, 1.0])
    assert row["ceiling"] == pytest.approx((20 * 21 * 22) ** (1 / 3), abs=1e-3)


def test_claim_1_is_inconclusive_when_its_ceiling_is_below_the_bar(tmp_path):
    """SGD reaches its final loss at its first logged step, as does LLb-SGD: no ratio above 1 can be measured,
    so a ratio of 1 does not contradict "4× faster": inconclusive, with the ceiling printed."""
    for fold in range(3):
        curve = [1.0, 1.0, 1.0]
        write_run(tmp_path, T2, "resnet34", "sgd", fold, curve, 1.5)
        write_run(tmp_path, T2, "resnet34", "llb", fold, curve, 1.5)
    claim = verdicts(tmp_path)[1]
    row = claim["rows"]["resnet34"]
    assert row["per_fold"] == [1.0, 1.0, 1.0] and row["ceiling"] < 3
    assert row["verdict"] == claim["verdict"] == "inconclusive"
    assert "ceiling" in (tmp_path / "report" / "claims.md").read_text()


def _sweep(root, experiment: str, factor: str, values: list, losses) -> None:
    """Three folds of LLb-SGD and SGD over `values` of `factor`; losses(optimizer, i, fold) → (train, test)."""
    for fold in range(3):
        for optimizer in ("llb", "sgd"):
            for i, value in enumerate(values):
                train, test = losses(optimizer, i, fold)
                write_run(root, experiment, "resnet34", optimizer, fold, [2.0, train], test, **{factor: value})


def test_claim_4_holds_when_the_training_loss_is_flatter_than_sgds_and_the_test_loss_falls(tmp_path):
    def losses(optimizer, i, fold):
        if optimizer == "llb":  # spread about 2%, test loss down 0.1 per doubling (+ fold noise)
            return 0.50 + 0.01 * ((i + fold) % 2), 1.2 - 0.1 * i + 0.01 * fold
        return 0.5 + 0.2 * i, 1.0  # SGD's spread about 160%

    _sweep(tmp_path, "table3_batch", "batch_size", [16, 32, 64], losses)
    claim = verdicts(tmp_path)[4]
    row = claim["rows"]["resnet34"]
    assert row["test_slope_per_doubling"]["mean"] == pytest.approx(-0.1)
    assert row["train_loss"]["verdict"] == "holds" and claim["verdict"] == "holds"


def test_claim_5_is_contradicted_when_llb_sgd_depends_on_the_initialization(tmp_path):
    def losses(optimizer, i, fold):
        return (0.5 + 0.5 * i + 0.01 * fold, 1.0 + 0.5 * i) if optimizer == "llb" else (0.5, 1.0)

    _sweep(tmp_path, "table4_init", "init", ["xavier", "msra"], losses)
    claim = verdicts(tmp_path)[5]
    assert claim["verdict"] == "contradicted"
    assert claim["rows"]["resnet34"]["train_loss"]["llb_spread"]["mean"] == pytest.approx(2 / 3, abs=0.01)


def test_an_initialization_at_which_neither_optimizer_learned_is_left_out_and_named(tmp_path):
    """Uniform leaves both optimizers at chance (2.30): it says nothing about stability and would make every
    spread large; without it LLb-SGD's spread is about 2% against SGD's 100%."""

    def losses(optimizer, i, fold):
        if i == 2:  # uniform
            return 2.30, 2.30
        return (0.50 + 0.01 * ((i + fold) % 2), 1.0 + 0.01 * fold) if optimizer == "llb" else (0.5 + 0.5 * i, 1.0 + i)

    _sweep(tmp_path, "table4_init", "init", ["xavier", "msra", "uniform"], losses)
    claim = verdicts(tmp_path)[5]
    text = (tmp_path / "report" / "claims.md").read_text()
    assert "resnet34: left out init uniform: neither LLb-SGD nor SGD learned there" in text
    assert claim["rows"]["resnet34"]["train_loss"]["llb_spread"]["mean"] == pytest.approx(0.01 / 0.505, abs=1e-3)


def test_where_no_optimizer_can_meet_the_bar_the_comparison_with_sgd_decides(tmp_path):
    """Both spreads far above 10% (LLb-SGD about 40%, SGD about 160%): the absolute bar cannot be met by anyone at
    this scale, so (a) is read as the comparison with SGD alone, and the report says which reading decided."""

    def losses(optimizer, i, fold):
        if optimizer == "llb":
            return 0.50 + 0.1 * i + 0.005 * fold, 1.2 - 0.1 * i + 0.01 * fold
        return 0.5 + 0.4 * i + 0.01 * fold, 1.0

    _sweep(tmp_path, "table3_batch", "batch_size", [16, 32, 64], losses)
    claim = verdicts(tmp_path)[4]
    row = claim["rows"]["resnet34"]["train_loss"]
    assert "llb_spread" not in row and row["decided_by"].startswith("the comparison with SGD")
    assert row["verdict"] == "holds"
    assert "decided by the comparison with SGD alone" in (tmp_path / "report" / "claims.md").read_text()


@pytest.mark.parametrize(
    ("losses", "verdict"), [((0.50, 0.51, 0.50, 0.505), "holds"), ((0.5, 0.8, 1.0, 1.0), "contradicted")]
)
def test_claim_6_needs_fewer_iterations_at_larger_rates_and_a_steady_loss(tmp_path, losses, verdict):
    for lr, epochs, loss in zip((0.001, 0.01, 0.1, 1.0), (8, 4, 2, 1), losses, strict=True):
        write_run(tmp_path, "fig7_lr", "resnet34", "llb", 0, [2.0] * (epochs - 1) + [loss], 1.0, lr=lr, budget=16,
                  status="stopped")  # fmt: skip
    claim = verdicts(tmp_path)[6]
    assert claim["verdict"] == verdict
    assert claim["rows"]["resnet34"]["log_steps_per_log_rate"]["mean"] == pytest.approx(-math.log(2) / math.log(10))


def test_claim_6_censors_budget_hits_and_does_not_count_a_stall_as_convergence(tmp_path):
    """A plateau stop at chance (2.28 > 0.9·ln 10) is a stall and a run that reached its budget is censored: both
    leave the slope; two converged runs are too few for it (inconclusive, not holds)."""
    runs = [(0.001, 8, 0.5, "completed"), (0.003, 2, 2.28, "stopped"), (0.01, 4, 0.5, "stopped"),
            (0.1, 2, 0.5, "stopped")]  # fmt: skip
    for lr, epochs, loss, status in runs:
        write_run(tmp_path, "fig7_lr", "resnet34", "llb", 0, [2.0] * (epochs - 1) + [loss], 1.0, lr=lr, budget=8,
                  status=status)  # fmt: skip
    claim = verdicts(tmp_path)[6]
    row = claim["rows"]["resnet34"]
    assert (row["stalled"], row["censored"]) == (1, 1)
    assert row["log_steps_per_log_rate"]["verdict"] == "inconclusive"
    assert "2 converged run(s): too few for a slope" in (tmp_path / "report" / "claims.md").read_text()


def test_claims_json_lists_the_seven_claims_with_their_verdicts(tmp_path):
    _table2(tmp_path, "resnet34", "nag", [0.50, 0.55, 0.62], [1.00, 1.10, 1.20])
    claims = json.loads((build_report([tmp_path]) / "claims.json").read_text())
    assert [c["id"] for c in claims] == [1, 2, 3, 4, 5, 6, 7]
    assert {"id", "claim", "verdict", "rows", "excluded"} <= set(claims[0])
    assert all(c["verdict"] in ("holds", "contradicted", "inconclusive", "not measured") for c in claims)
    assert [c["verdict"] for c in claims][2:] == ["not measured"] * 5  # nothing else was run


@pytest.mark.parametrize(("nag", "tied"), [([1.00, 1.10, 1.20], False), ([0.80, 0.50, 0.70], True)])
def test_table_2_marks_the_cells_statistically_tied_with_the_best(tmp_path, nag, tied):
    _table2(tmp_path, "resnet34", "nag", [0.50, 0.55, 0.62], nag)
    table = (build_report([tmp_path]) / "table2.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| resnet34 | train loss"))
    assert row.startswith("| resnet34 | train loss | **0.557 ± 0.060** |")
    assert row.endswith(" ≈ |") is tied


def test_tables_say_how_a_network_was_run_and_on_what_stand_in():
    from llbbench.report.runs import architecture
    from llbbench.report.tables import _network_notes

    assert architecture({"name": "alexnet", "form": "auto", "width": 0.125, "dropout": 0.0, "batch_norm": True}) == (
        "dropout 0, batch_norm"
    )
    assert architecture({"name": "resnet34", "width": 1.0, "zero_init_residual": False}) == ""
    import pandas as pd

    runs = pd.DataFrame(
        {"model": ["alexnet", "resnet34"], "architecture": ["dropout 0, batch_norm", ""], "init": ["msra", "default"],
         "experiment": ["table2_imagenet", "table2_cifar10"], "dataset": ["cifar10", "cifar10"]}
    )  # fmt: skip
    assert _network_notes(runs, "optimizer") == [
        "Networks as run: alexnet: dropout 0, batch_norm; init msra; on cifar10 as a stand-in for ImageNet."
    ]
    assert _network_notes(runs[runs["model"] == "resnet34"], "optimizer") == []
    batches = runs.assign(batch_size=[64, 32])  # the table's networks differ in batch size: each is named
    assert _network_notes(batches, "optimizer") == [
        "Networks as run: resnet34: batch 32. alexnet: dropout 0, batch_norm; init msra; batch 64; on cifar10 as a "
        "stand-in for ImageNet."
    ]
    assert _network_notes(runs.assign(batch_size=[64, 64]), "optimizer") == _network_notes(runs, "optimizer")
    assert _network_notes(batches, "batch_size") == _network_notes(runs, "batch_size")  # Table 3 varies it


@pytest.mark.parametrize(
    ("llb", "verdict"),
    [
        ([10, 12, 11, 10, 12], "holds"),  # before Adam (20-24) and the stallers (never: 101) on every seed
        ([150, 140, 160, 145, 155], "contradicted"),  # long after Adam on every seed
        ([10, 60, 30, 15, 40], "inconclusive"),  # before, after, before Adam... by too little to tell
    ],
)
def test_claim_7_pairs_the_escape_steps_by_seed(llb, verdict):
    from llbbench.report.claims import saddles

    escapes = {"llb": llb, "adam": [20, 22, 21, 24, 20], "sgd": [None] * 5, "nag": [None] * 5,
               "adagrad": [90, 95, 99, 92, 97]}  # fmt: skip
    claim = saddles({"escapes": escapes, "budget": 100})
    assert claim.verdict == verdict
    assert claim.rows["adam<sgd"]["verdict"] == "holds"  # Adam escapes, SGD never does (counted as 101)
    assert saddles(None).verdict == "not measured"
