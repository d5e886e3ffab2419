"""scripts/run_time.py: a results folder's training time, recorded and at each kind's median seconds per step."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "run_time.py"


def load_script():
    spec = importlib.util.spec_from_file_location("run_time", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_run_slowed_by_other_work_does_not_inflate_the_median_time():
    runs = pd.DataFrame(
        {
            "experiment": ["t2", "t2", "t2", "t3"],
            "model": ["r34"] * 4,
            "optimizer": ["sgd"] * 4,
            "batch_size": [64, 64, 64, 16],
            "steps": [100, 100, 100, 50],
            "seconds": [10.0, 12.0, 600.0, 30.0],  # the third was slowed down 50-fold
        }
    )
    table = load_script().run_time(runs)
    assert table.loc["t2", "runs"] == 3 and table.loc["t2", "recorded"] == round(622 / 60, 1)
    assert table.loc["t2", "typical"] == round(3 * 12.0 / 60, 1)  # every step at the median 0.12 s
    assert table.loc["t3", "typical"] == 0.5 and table.loc["all", "runs"] == 4


def test_the_start_up_is_summed_and_the_wall_time_spans_first_start_to_last_end():
    runs = pd.DataFrame(
        {
            "experiment": ["t2", "t2", "t3"],
            "model": ["r34"] * 3,
            "optimizer": ["sgd"] * 3,
            "batch_size": [64] * 3,
            "steps": [100] * 3,
            "seconds": [60.0, 60.0, 60.0],
            "setup_seconds": [3.0, 3.0, 6.0],
            # two runs of t2 side by side (their minutes overlap), then t3
            "started": ["2026-12-01T10:00:00+00:00", "2026-12-01T10:00:00+00:00", "2026-12-01T10:02:00+00:00"],
            "ended": ["2026-12-01T10:01:03+00:00", "2026-12-01T10:01:06+00:00", "2026-12-01T10:03:06+00:00"],
        }
    )
    table = load_script().run_time(runs)
    assert table.loc["t2", "startup"] == 0.1 and table.loc["t2", "wall"] == 1.1  # 66 s, not the 126 s summed
    assert table.loc["all", "startup"] == 0.2 and table.loc["all", "wall"] == 3.1
    assert pd.isna(load_script().run_time(runs.drop(columns=["setup_seconds"])).loc["t2", "wall"])


def test_the_study_time_of_several_sittings_leaves_out_the_pauses_and_the_gaps(tmp_path):
    """scripts/study_time.py: a killed sitting ends at its last time stamp, an ended one at its `end` line; the
    pauses inside a sitting are taken off, the time between sittings is not counted."""
    import subprocess
    import sys

    first = tmp_path / "reproduce-small-1.log"
    first.write_text("start 2026-12-02T10:00:00Z on 2 cores\n[2026-12-02 10:30:00,000][HYDRA] sweep of 4 runs\n"
                     "run 1 of 4\n[2026-12-02 11:00:00,500][HYDRA] sweep done\nepoch 1/8\n")  # fmt: skip
    second = tmp_path / "reproduce-small-2.log"
    second.write_text("start 2026-12-02T14:00:00Z on 2 cores\n[2026-12-02 14:10:00,000][HYDRA] x\n"
                      "wall 1800 s\nend 2026-12-02T14:30:00Z rc 0\n")  # fmt: skip
    stops = tmp_path / "pauses.log"
    stops.write_text(
        "pause 2026-12-02T10:10:00Z\nresume 2026-12-02T10:20:00Z\ncontention ... (a comment)\n"
        "pause 2026-12-02T12:00:00Z\nresume 2026-12-02T13:00:00Z\n"
    )  # fmt: skip  (between sittings)
    script = SCRIPT.parent / "study_time.py"
    done = subprocess.run([sys.executable, str(script), str(second), str(first), "--pauses", str(stops)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    lines = done.stdout.splitlines()
    assert "| reproduce-small-1.log | 2026-12-02 10:00:00 | 11:00:00 (killed; last stamp) | 1 h 00.0 min" in lines[2]
    assert lines[2].endswith("| 0 h 10.0 min | 0 h 50.0 min |")
    assert "14:30:00 (ended) | 0 h 30.0 min | 0 h 00.0 min | 0 h 30.0 min |" in lines[3]
    assert lines[-1] == "wall time without the pauses, all sittings: 1 h 20.0 min (1.33 h)"
