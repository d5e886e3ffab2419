"""The verdicts of claims.md / claims.json (docs/verdicts.md): each outcome from synthetic run directories in the
real format, the "did not learn" exclusion, diverged runs ranked last, and the statistics against hand values."""

from __future__ import annotations

import json
import math

import pytest

from llbbench.report import build_report
from llbbench.report.stats import combine, slope_interval, t_interval

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


def test_a_diverged_run_ranks_last_and_is_never_dropped(tmp_path):
    """LLb-SGD better by 0.5 on two folds but diverged on the third: without it the claim would hold; counted as
    the larger of ln 10 and the worst finished loss, it makes the interval include zero."""
    _table2(tmp_path, "resnet34", "nag", [0.50, 0.55, 0.60], [1.00, 1.05, 1.10])
    write_run(tmp_path, T2, "resnet34", "llb", 3, [2.0, 2.0], 2.0, status="diverged")
    write_run(tmp_path, T2, "resnet34", "nag", 3, [2.0, 1.0], 1.5)
    claim = verdicts(tmp_path)[2]
    difference = claim["rows"]["resnet34"]["nag:train_loss"]["difference"]
    assert difference["n"] == 4
    assert difference["mean"] == pytest.approx((0.5 + 0.5 + 0.5 + (1.0 - math.log(10))) / 4, abs=1e-6)
    assert claim["verdict"] == "inconclusive"


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
    """SGD's smoothed loss reaches its final 1.0 at step 200 + 10·fold (rows of 10 steps, a trailing mean of 5);
    LLb-SGD at 0.5 from the start reaches it at step 50 (ratios 4.0, 4.2, 4.4: holds); LLb-SGD moving as SGD
    does reaches it when SGD does (ratio 1: contradicted)."""
    for fold in range(3):
        sgd = [2.0] * (15 + fold) + [1.0] * (7 - fold)  # 22 epochs on every fold
        write_run(tmp_path, T2, "resnet34", "sgd", fold, sgd, 1.5)
        write_run(tmp_path, T2, "resnet34", "llb", fold, [llb_loss] * len(sgd) if llb_loss else sgd, 1.5)
    claim = verdicts(tmp_path)[1]
    assert claim["verdict"] == verdict
    ratios = claim["rows"]["resnet34"]["per_fold"]
    assert ratios == ([4.0, 4.2, 4.4] if llb_loss else [1.0, 1.0, 1.0])


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


@pytest.mark.parametrize(("losses", "verdict"), [((0.50, 0.51, 0.50), "holds"), ((0.5, 0.8, 1.0), "contradicted")])
def test_claim_6_needs_fewer_iterations_at_larger_rates_and_a_steady_loss(tmp_path, losses, verdict):
    for lr, epochs, loss in zip((0.001, 0.01, 0.1), (8, 4, 2), losses, strict=True):
        write_run(tmp_path, "fig7_lr", "resnet34", "llb", 0, [2.0] * (epochs - 1) + [loss], 1.0, lr=lr, budget=8,
                  status="stopped" if epochs < 8 else "completed")  # fmt: skip
    claim = verdicts(tmp_path)[6]
    assert claim["verdict"] == verdict
    assert claim["rows"]["resnet34"]["log_steps_per_log_rate"]["mean"] == pytest.approx(-math.log(2) / math.log(10))


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
        ([10, 12, 11], "holds"),  # before Adam (20-22) and the stallers (never: 101) on every seed
        ([150, None, None], "contradicted"),  # after Adam on every seed
        ([10, 60, 30], "inconclusive"),  # before, after, before Adam's 20-22... by too little to tell
    ],
)
def test_claim_7_pairs_the_escape_steps_by_seed(llb, verdict):
    from llbbench.report.claims import saddles

    escapes = {"llb": llb, "adam": [20, 22, 21], "sgd": [None] * 3, "nag": [None] * 3, "adagrad": [90, 95, 99]}
    claim = saddles({"escapes": escapes, "budget": 100})
    assert claim.verdict == verdict
    assert claim.rows["adam<sgd"]["verdict"] == "holds"  # Adam escapes, SGD never does (counted as 101)
    assert saddles(None).verdict == "not measured"
