"""The report from a results tree with known numbers: exact cells, markers, "—"/"div." entries and verdicts."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from llbbench.commands import saddle
from llbbench.records.run import COLUMNS, EPOCHS, LAYER_LRS, STEPS, SUMMARY_KEYS, RunDir
from llbbench.records.saddle import ANALYTIC_FILE, write_json
from llbbench.report import build_report
from tests.conftest import llbbench


def write_run(
    root: Path,
    experiment: str,
    model: str,
    optimizer: str,
    fold: int,
    curve: list[float],
    test_loss: float,
    *,
    status: str = "completed",
    batch_size: int = 128,
    init: str = "default",
    lr: float = 0.1,
    steps_per_epoch: int = 10,
    dataset: str = "cifar10",
    fingerprint: str | None = None,
    budget: int | None = None,
    **llb_options: object,
) -> Path:
    """A run directory as `llbbench run` writes it, with the training-loss curve `curve` (one value per epoch), of
    a run with `budget` epochs (default: the curve's; a stopped run's curve is shorter)."""
    variant = "".join(f"-{v}" for v in llb_options.values())
    path = root / experiment / f"{model}-{optimizer}-f{fold}-{batch_size}-{init}-{lr}{variant}"
    path.mkdir(parents=True)
    config = {
        "experiment_name": experiment,
        "scale": "small",
        "seed": 0,
        "fold": fold,
        "cv": {"folds": 5},
        "dataset": {"name": dataset, "subset": 2000, **({"fingerprint": fingerprint} if fingerprint else {})},
        "model": {"name": model, "width": 0.125},
        "optimizer": {
            "name": optimizer,
            "lr": lr,
            "weight_decay": 5e-4,
            **({"threshold": 0.0} if optimizer == "llb" else {}),
            **llb_options,
        },
        "init": {"name": init},
        "train": {"epochs": budget or len(curve), "batch_size": batch_size, "log_every": steps_per_epoch},
    }
    record = RunDir(path)  # through the run-directory contract, as the training code writes
    record.write_config(config)
    final = None
    for epoch, loss in enumerate(curve, 1):
        step = steps_per_epoch * epoch
        final = {**dict.fromkeys(COLUMNS[EPOCHS], math.nan), "epoch": epoch, "step": step, "train_loss": loss,
                 "test_loss": test_loss, "test_acc": 0.5}  # fmt: skip
        record.append_row(EPOCHS, final)
        record.append_row(STEPS, {**dict.fromkeys(COLUMNS[STEPS], math.nan), "step": step, "epoch": epoch,
                                  "loss": loss, "lr": lr, "lr_min": lr, "lr_max": lr})  # fmt: skip
        if optimizer == "llb":
            record.append_row(LAYER_LRS, {"step": step, "conv1": lr * 0.9 ** (epoch - 1), "fc": lr})
    summary = {**dict.fromkeys(SUMMARY_KEYS), "status": status, "scale": "small", "epochs": len(curve),
               "steps": steps_per_epoch * len(curve), "seconds": 30.0 * len(curve), "resumed_at_steps": [],
               "final": final if status != "diverged" else None}  # fmt: skip
    record.write_summary(summary)
    return path


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results")
    write_json(root / "fig8_saddle" / ANALYTIC_FILE, saddle.analytic())  # Fig. 8's lower panels
    t2 = "table2_cifar10"
    # resnet34: LLb-SGD reaches SGD's final loss 1.0 after one of four epochs: 4x faster; it beats NAG
    for fold, shift in ((0, 0.0), (1, 0.2)):
        write_run(root, t2, "resnet34", "llb", fold, [0.9 + shift, 0.7 + shift, 0.6 + shift, 0.5 + shift], 1.0 + shift)
        write_run(root, t2, "resnet34", "sgd", fold, [2.0, 1.5, 1.2, 1.0], 1.5)
        write_run(root, t2, "resnet34", "nag", fold, [2.0, 1.5, 1.0, 0.8], 1.3)
    write_run(root, t2, "resnet34", "adam", 0, [1.0, 0.9, 0.8, 0.7], 1.2)
    write_run(root, t2, "resnet34", "adam", 1, [1.0, 0.9, 0.8, 0.7], 1.2, status="diverged")
    write_run(root, t2, "resnet50", "llb", 0, [1.0, 0.8, 0.6, 0.4], 0.9)
    write_run(root, t2, "resnet50", "sgd", 0, [1.0, 0.9, 0.8, 0.3], 0.8)
    # batch sizes: training loss 0.50 / 0.52 (spread 4%), test loss falls with the batch size
    for batch, train_loss, test_loss in ((16, 0.50, 1.2), (64, 0.51, 1.1), (256, 0.52, 1.0)):
        write_run(root, "table3_batch", "resnet34", "llb", 0, [train_loss], test_loss, batch_size=batch)
    # initializations: training loss 0.5 / 1.0: results depend on it
    write_run(root, "table4_init", "resnet34", "llb", 0, [0.5], 1.0, init="xavier")
    write_run(root, "table4_init", "resnet34", "llb", 0, [1.0], 1.5, init="msra")
    # initial rates: the same final loss after 10 or 40 iterations
    write_run(root, "fig7_lr", "resnet34", "llb", 0, [0.50], 1.0, lr=0.1, budget=4, status="stopped")
    write_run(root, "fig7_lr", "resnet34", "llb", 0, [0.51] * 4, 1.0, lr=0.001)
    return root


@pytest.fixture(scope="module")
def report(results) -> Path:
    return build_report([results])


def read(report: Path, name: str) -> str:
    return (report / name).read_text()


def test_table2_cells_markers_missing_and_diverged(report):
    rows = {tuple(line.split(" | ")[:2]): line for line in read(report, "table2.md").splitlines()}
    assert read(report, "table2.md").splitlines()[2] == "| network | metric | LLb-SGD | SGD | NAG | Adam |"
    assert (
        rows[("| resnet34", "train loss")]
        == "| resnet34 | train loss | **0.600 ± 0.141** | 1.000 ± 0.000 ≈ | 0.800 ± 0.000 ≈ | div. |"
    )
    assert (
        rows[("| resnet34", "test loss")]
        == "| resnet34 | test loss | **1.100 ± 0.141** | 1.500 ± 0.000 ≈ | 1.300 ± 0.000 ≈ | div. |"
    )
    assert (
        rows[("| resnet50", "train loss")] == "| resnet50 | train loss | 0.400 | **0.300** | — | — |"
    )  # one run: no ±
    assert rows[("| resnet50", "test acc.")] == "| resnet50 | test acc. | **0.500** | **0.500** | — | — |"
    text = read(report, "table2.md")
    assert (
        "div. a run of this cell diverged (a non-finite loss, or a final training loss above 2·ln C): resnet34 × "
        "Adam (1 of 2 runs)." in text
    )
    assert "— no finished run: resnet50 × NAG; resnet50 × Adam." in text


def test_table2_in_latex_and_csv(report):
    tex = read(report, "table2.tex")
    assert r"\toprule" in tex and r"\bottomrule" in tex
    assert (
        r"resnet34 & train loss & \textbf{0.600 $\pm$ 0.141} & 1.000 $\pm$ 0.000 $\approx$ & "
        r"0.800 $\pm$ 0.000 $\approx$ & div. \\" in tex
    )
    data = pd.read_csv(report / "table2.csv")
    row = data[(data["network"] == "resnet34") & (data["optimizer"] == "llb") & (data["metric"] == "train_loss")]
    assert row["mean"].item() == pytest.approx(0.6) and bool(row["best"].item())
    assert data[(data["optimizer"] == "adam") & (data["metric"] == "train_loss")]["diverged"].tolist() == [1, 0]


def test_tables_1_3_and_4(report):
    table1 = read(report, "table1.md")
    assert "| cifar10 | LLb-SGD | 0.001, 0.1 | 16, 64, 128, 256 | 0.0005 | — | 0 | 1, 4 |" in table1
    table3 = read(report, "table3.md")
    assert "| network | metric | 16 | 64 | 256 |" in table3
    assert "| resnet34 (LLb-SGD) | test loss | 1.200 | 1.100 | **1.000** |" in table3
    assert "| resnet34 (LLb-SGD) | steps | 10 | 10 | 10 |" in table3  # the steps each batch size took
    assert "| resnet50 | not run at small scale |  |  |  |" in table3
    assert "Budget: the same epochs for every batch size (the paper's protocol) — batch size: epochs 16: 1;" in table3
    assert "| resnet34 (LLb-SGD) | train loss | **0.500** | 1.000 |" in read(report, "table4.md")


def test_every_claim_gets_its_verdict(report):
    """This fixture has one or two folds per cell: nothing can be told apart (tests/report/test_verdicts.py has
    each outcome)."""
    claims = read(report, "claims.md")
    verdicts = [line for line in claims.splitlines() if line.startswith("**Verdict")]
    assert verdicts == [
        "**Verdict: inconclusive**",  # 1: the smoothed loss exists from the first logged row; too few folds
        "**Verdict: inconclusive**",  # 2: beats NAG on resnet34 by 0.3 and 0.1: two folds, an interval across 0
        "**Verdict: not measured**",  # 3: no ImageNet network
        "**Verdict: inconclusive**",  # 4: one fold
        "**Verdict: inconclusive**",  # 5: one fold
        "**Verdict: inconclusive**",  # 6: two rates, no interval for the slope
        "**Verdict: not measured**",  # 7: no Fig. 8 runs
    ]
    assert "resnet50: not run at small scale" in claims
    assert "- scale: **small**" in claims
    # at 30 s an epoch: Table 2 ten runs of 4 epochs, Table 3 three of 1, Table 4 two of 1, Fig. 7 one of 1 and 4
    assert "- recorded run time: 25.0 min (training and evaluation, summed over the runs' summaries; by " in claims
    assert "experiment: fig7_lr 2.5, table2_cifar10 20.0, table3_batch 1.5, table4_init 1.0)" in claims


def test_every_figure_is_written_and_not_empty(report):
    for name in ("fig5_training_loss", "fig6_layer_rates", "fig7_initial_rate", "fig8_saddles"):
        for suffix in (".png", ".pdf"):
            assert (report / f"{name}{suffix}").stat().st_size > 1000


def test_a_blown_up_curve_leaves_the_panel_readable_and_is_named():
    from matplotlib.figure import Figure

    from llbbench.report.figures import clip_blown_up

    ax = Figure().subplots()
    epochs = [1, 2, 3]
    means = {
        "SGD": pd.Series([2.4, 2.0, 1.8], index=epochs),
        "Adam": pd.Series([2.2, 1.7, 1.5], index=epochs),
        "Path-SGD": pd.Series([2.6, 1e12, float("nan")], index=epochs),
    }
    assert clip_blown_up(ax, means) == ["Path-SGD"]
    assert ax.get_ylim()[1] == pytest.approx(1.5 * 2.4)  # 1.5 x the median first-epoch loss
    assert ax.get_ylim()[0] < 1.5
    assert any("off the scale: Path-SGD" in text.get_text() for text in ax.texts)

    calm = Figure().subplots()
    assert clip_blown_up(calm, {k: v for k, v in means.items() if k != "Path-SGD"}) == []
    assert not calm.texts


def test_every_optimizer_and_control_of_table_2_looks_different_and_a_control_takes_its_base_colour():
    from llbbench.paper import OPTIMIZERS
    from llbbench.report.figures import optimizer_style

    variants = [*OPTIMIZERS, "llb+global", "sgd+cosine", "sgd+inverse_time"]
    looks = [(style["color"], style.get("ls", "-"), style["lw"]) for style in map(optimizer_style, variants)]
    assert len(set(looks)) == len(variants)  # twelve lines, twelve looks (ten colours alone would repeat two)
    for control in ("llb+global", "sgd+cosine", "sgd+inverse_time"):
        base = control.split("+")[0]
        assert optimizer_style(control)["color"] == optimizer_style(base)["color"]
        assert optimizer_style(control)["ls"] != "-"


def test_the_report_is_reproducible_byte_for_byte(results, report, tmp_path):
    again = build_report([results], tmp_path / "again")
    for name in (
        "table1.md",
        "table2.md",
        "table2.tex",
        "table2.csv",
        "table3.md",
        "table4.md",
        "claims.md",
        "claims.json",
        "report.md",
    ):
        assert (again / name).read_bytes() == (report / name).read_bytes(), name


def test_the_command_line_and_its_errors(results, tmp_path):
    out = llbbench("report", str(results / "table2_cifar10"), "--out", str(tmp_path / "r"), "--formats", "md")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "r" / "table2.md").exists() and not (tmp_path / "r" / "table2.tex").exists()
    bad = llbbench("report", str(results), "--formats", "md,html")
    assert bad.returncode == 2 and "unknown format html; valid formats: md, tex, csv" in bad.stderr
    empty = llbbench("report", str(tmp_path / "nothing"))
    assert empty.returncode == 2 and "no such results folder" in empty.stderr


def test_an_unreadable_run_is_named_and_the_rest_reported(results, tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    cut = copy / "table2_cifar10" / "resnet34-nag-f0-128-default-0.1"
    summary = (cut / "summary.json").read_text()
    (cut / "summary.json").write_text(summary[: len(summary) // 2])
    short = copy / "table2_cifar10" / "resnet34-nag-f1-128-default-0.1" / "epochs.csv"
    short.write_text("\n".join(short.read_text().splitlines()[:-1]) + "\n")  # the last epoch's row lost
    out = llbbench("report", str(copy), "--out", str(tmp_path / "r"))
    assert out.returncode == 0, out.stderr
    assert f"left out the unreadable run directory {cut} (JSONDecodeError" in out.stderr
    assert f"{short} holds 3 complete rows, but summary.json counts 4 epochs" in out.stderr
    claims = (tmp_path / "r" / "claims.md").read_text()
    assert "**2 run directories could not be read** and are left out:" in claims
    assert f"  - `{cut}`: JSONDecodeError" in claims
    # NAG's two runs are gone: its column is gone from Table 2, the rest is reported
    assert "| network | metric | LLb-SGD | SGD | Adam |" in (tmp_path / "r" / "table2.md").read_text()


def test_report_out_that_is_a_file_is_refused(results, tmp_path):
    file = tmp_path / "report.txt"
    file.write_text("a file")
    out = llbbench("report", str(results), "--out", str(file))
    assert out.returncode == 2
    assert f"llbbench report: error: --out {file} is a file; name a folder" in out.stderr
    assert file.read_text() == "a file"


def test_claims_follow_the_dataset_the_runs_used_not_the_network(tmp_path):
    """A quick-start grid (smallcnn on CIFAR-10) is judged by the CIFAR-10 claims, not by the ImageNet claim;
    an ImageNet experiment run on CIFAR-10 (the CPU scale's stand-in) counts for the ImageNet claim."""
    root = tmp_path / "results"
    for fold in (0, 1):
        write_run(root, "quickstart", "smallcnn", "llb", fold, [1.0, 0.5], 1.0)
        write_run(root, "quickstart", "smallcnn", "nag", fold, [1.0, 0.8], 1.2)
    claims = (build_report([root], tmp_path / "r") / "claims.md").read_text()
    verdicts = [line for line in claims.splitlines() if line.startswith("**Verdict")]
    assert verdicts[1] == "**Verdict: holds**" and verdicts[2] == "**Verdict: not measured**"
    for fold in (0, 1):
        write_run(root, "table2_imagenet", "alexnet", "llb", fold, [1.0, 0.5], 1.0)
        write_run(root, "table2_imagenet", "alexnet", "sgd", fold, [1.0, 0.8], 1.2)
    claims = (build_report([root], tmp_path / "r2") / "claims.md").read_text()
    verdicts = [line for line in claims.splitlines() if line.startswith("**Verdict")]
    assert verdicts[2] != "**Verdict: not measured**" and "alexnet" in claims.split("3. LLb-SGD")[1]


def test_latex_tables_hold_only_what_pdflatex_takes(report):
    from llbbench.report.tables import latex_escape

    assert latex_escape("threshold τ & 5% ± 1 — a_b {x} ~^") == (
        r"threshold $\tau$ \& 5\% $\pm$ 1 --- a\_b \{x\} \textasciitilde{}\textasciicircum{}"
    )
    assert latex_escape("Ω ς é ✓") == r"$\Omega$ ? e ?"
    for tex in report.glob("*.tex"):
        assert tex.read_text().isascii(), tex.name
    assert r"threshold $\tau$" in read(report, "table1.tex")


def test_the_header_says_when_the_data_was_not_the_official_release(tmp_path):
    root = tmp_path / "results"
    write_run(root, "quickstart", "smallcnn", "llb", 0, [1.0], 1.0, fingerprint="cifar10-official-0123456789abcdef")
    claims = (build_report([root], tmp_path / "r") / "claims.md").read_text()
    assert "not the official CIFAR-10 release" not in claims
    write_run(root, "quickstart", "smallcnn", "sgd", 0, [1.0], 1.0, fingerprint="cifar10-fedcba9876543210")
    claims = (build_report([root], tmp_path / "r2") / "claims.md").read_text()
    assert "- **data: not the official CIFAR-10 release** (fingerprint cifar10-fedcba9876543210)" in claims


def test_report_help_answers_without_importing_the_reporter():
    code = (
        "import sys\n"
        "from llbbench.cli import main\n"
        "try:\n    main(['report', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('pandas', 'torch', 'matplotlib', 'hydra') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "usage: llbbench report" in out.stdout and out.stdout.strip().endswith("[]")


def test_the_ablation_table_marks_each_variant_against_sgd_and_names_those_that_change_the_ranking(tmp_path):
    root = tmp_path / "results"
    for fold in (0, 1):
        write_run(root, "table2_cifar10", "resnet34", "sgd", fold, [2.0, 1.0], 1.5)
        # the default reading beats SGD; one variant ends above it on both losses, one diverges
        for options, curve, test in (
            ({"direction": "gate", "conv_norm": "kernel_fro", "loss_ema": 0.0}, [1.5, 0.8], 1.2),
            ({"direction": "signed", "conv_norm": "relative", "loss_ema": 0.9}, [1.8, 1.3], 1.7),
            ({"direction": "loss", "conv_norm": "kernel_fro", "loss_ema": 0.0}, [1.9, 0.9], 1.4),
            ({"direction": "signed", "conv_norm": "kernel_fro", "loss_ema": 0.0, "max_lr_ratio": 4.0}, [1.4, 0.7], 1.1),
        ):
            write_run(root, "ablation_llb", "resnet34", "llb", fold, curve, test, **options)
    report = build_report([root], tmp_path / "r")
    table = (report / "ablation.md").read_text()
    assert "| direction | conv_norm | loss_ema | max_lr_ratio | resnet34: train | resnet34: test |" in table
    lines = [line for line in table.splitlines() if line.startswith("| gate") or line.startswith("| signed")]
    assert lines[0] == "| gate | kernel_fro | 0.0 | 1.0 | 0.800 ± 0.000 (<SGD) | 1.200 ± 0.000 (<SGD) |"  # the default
    assert "| signed | kernel_fro | 0.0 | 4.0 | 0.700 ± 0.000 (<SGD) | 1.100 ± 0.000 (<SGD) |" in lines
    assert "| signed | relative | 0.9 | 1.0 | 1.300 ± 0.000 (>SGD) | 1.700 ± 0.000 (>SGD) |" in lines
    assert (
        "Variants that change the ranking against SGD (the other side of SGD than the default): "
        "signed/relative/0.9/1.0 on resnet34 (train loss); signed/relative/0.9/1.0 on resnet34 (test loss)" in table
    )
    assert (report / "ablation_rates.png").stat().st_size > 1000
    assert "![Ablation](ablation_rates.png)" in (report / "report.md").read_text()


def test_one_shot_and_tuned_tables_and_how_tuning_moves_the_ranking(tmp_path):
    root = tmp_path / "results"
    t2 = "table2_cifar10"
    entries = []
    # SGD: configured 0.1, tuned 0.3 (better); LLb-SGD: configured 0.1 and tuned 0.1 (the same runs)
    for fold in (0, 1):
        write_run(root, t2, "resnet34", "sgd", fold, [2.0, 1.2], 1.5, lr=0.1)
        write_run(root, t2, "resnet34", "sgd", fold, [2.0, 0.6], 1.0, lr=0.3)
        write_run(root, t2, "resnet34", "llb", fold, [2.0, 0.9], 1.2, lr=0.1)
    write_run(root, t2, "resnet34", "sgd", 0, [2.0, 5.0], 9.0, lr=1.0)  # another rate of the grid: no table
    write_run(root, "table2_imagenet", "alexnet", "sgd", 0, [2.0, 1.0], 1.5, lr=0.01)  # the stand-in: one-shot only
    for fold in (0, 1):  # a rate left to the preset (null) is the configured one
        write_run(root, t2, "resnet34", "adadelta", fold, [2.0, 1.1], 1.3, lr=None)
    for name, winner in (("sgd", 0.3), ("llb", 0.1), ("adadelta", 0.3)):
        entries.append({"network": "resnet34", "optimizer": name, "configured": 0.1, "fold": 0, "edge": False,
                        "grid": [0.1, 0.3, 1.0], "val_loss": [1.5, 1.0, None], "winner": winner})  # fmt: skip
    (root / t2 / "tuning.json").write_text(json.dumps(entries))
    report = build_report([root], tmp_path / "r")
    one_shot = (report / "table2.md").read_text()
    assert "(one-shot rates)" in one_shot and "Rates: one-shot" in one_shot
    # the 1.0 run is left out; Adadelta's runs at its preset rate are its one-shot runs
    assert "| resnet34 | train loss | **0.900 ± 0.000** | 1.200 ± 0.000 | 1.100 ± 0.000 |" in one_shot
    tuned = (report / "table2_tuned.md").read_text()
    assert "| resnet34 | train loss | 0.900 ± 0.000 | **0.600 ± 0.000** |" in tuned
    assert "Rates: tuned — chosen by fold 0's validation loss" in tuned
    assert "Not tuned (one-shot only, in the table above): alexnet." in tuned and "| alexnet |" in one_shot
    ranking = (report / "table2_ranking.md").read_text()
    assert "| resnet34 | train loss | LLb-SGD, Adadelta, SGD | SGD, LLb-SGD | 1 → 2 | -1.00 |" in ranking
    grids = (report / "table1_tuning.md").read_text()
    assert "| table2_cifar10 | resnet34 | SGD | 0 | 0.1 (1.500), 0.3 (1.000), 1 (div.) | 0.3 |" in grids


def test_a_winner_at_a_preset_rate_is_the_preset_runs_and_the_same_rate_written_out_enters_no_table(tmp_path):
    """Adadelta's YAML leaves lr to its preset (1.0); where 1.0 also wins the tuning, its runs at lr null are its
    one-shot and its tuned runs. Runs at 1.0 written out (the same rate under another run identity, as tuned
    runs were made before) enter no table: counted too, they would split every Table 2 by optimizer.lr."""
    root, t2 = tmp_path / "results", "table2_cifar10"
    for fold in (0, 1):
        write_run(root, t2, "resnet50", "sgd", fold, [2.0, 1.2], 1.5, lr=0.1)
        write_run(root, t2, "resnet50", "adadelta", fold, [2.0, 1.1], 1.3, lr=None)  # the preset's rate
        write_run(root, t2, "resnet50", "adadelta", fold, [2.0, 0.7], 1.3, lr=1.0)  # 1.0 written out
    entries = [{"network": "resnet50", "optimizer": name, "configured": rate, "fold": 0, "edge": False,
                "grid": [rate / 10, rate, rate * 10], "val_loss": [2.0, 1.0, 2.0], "winner": rate}
               for name, rate in (("sgd", 0.1), ("adadelta", 1.0))]  # fmt: skip
    (root / t2 / "tuning.json").write_text(json.dumps(entries))
    report = build_report([root], tmp_path / "r")
    assert not list(report.glob("table2_lr-*")), "Table 2 was split by optimizer.lr"
    for name in ("table2.md", "table2_tuned.md"):
        assert "| resnet50 | train loss | 1.200 ± 0.000 | **1.100 ± 0.000** |" in (report / name).read_text(), name


def test_untuned_runs_at_a_preset_rate_and_at_a_written_out_rate_are_both_shown(tmp_path):
    """Without tuning.json, a rate written out is no duplicate of the preset's: both sets of runs are reported (in
    tables of their own setting), none left out."""
    root = tmp_path / "results"
    for fold in (0, 1):
        write_run(root, "table2_cifar10", "resnet34", "sgd", fold, [2.0, 1.2], 1.5, lr=0.1)
        write_run(root, "table2_cifar10", "resnet34", "adadelta", fold, [2.0, 1.1], 1.3, lr=None)
        write_run(root, "table2_cifar10", "resnet34", "adadelta", fold, [2.0, 0.7], 1.3, lr=0.5)
    report = build_report([root], tmp_path / "r")
    shown = "".join(p.read_text() for p in report.glob("table2*.md"))
    assert "1.100 ± 0.000" in shown and "0.700 ± 0.000" in shown


def test_a_report_written_again_removes_what_it_no_longer_writes_and_nothing_else(tmp_path):
    """A table split by a setting that is gone must not stay beside the new report; a file of the user's stays."""
    root = tmp_path / "results"
    odd = [write_run(root, "table2_cifar10", "resnet34", "sgd", fold, [2.0, 1.0], 1.5, lr=0.3) for fold in (0, 1)]
    for fold in (0, 1):
        write_run(root, "table2_cifar10", "resnet34", "sgd", fold, [2.0, 1.2], 1.5, lr=0.1)
        write_run(root, "table2_cifar10", "resnet34", "llb", fold, [2.0, 1.1], 1.5, lr=0.1)
    out = build_report([root], tmp_path / "r")
    split = sorted(p.name for p in out.glob("table2_lr-*"))
    assert split, "the two rates of SGD should split Table 2"
    (out / "notes.md").write_text("mine")
    for path in odd:
        shutil.rmtree(path)
    build_report([root], out)
    assert not [name for name in split if (out / name).exists()]
    assert (out / "notes.md").read_text() == "mine" and (out / "table2.md").exists() and (out / "claims.md").exists()
