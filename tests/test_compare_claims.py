"""scripts/compare_claims.py: which verdicts two claims checks disagree on, at the claim and inside its rows."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "compare_claims.py"


def load_script():
    spec = importlib.util.spec_from_file_location("compare_claims", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def claims(two_verdict: str, nag: str, extra_row: bool = False) -> list[dict]:
    rows = {"resnet34": {"verdict": "inconclusive", "nag:train_loss": {"verdict": nag, "n": 3}}}
    if extra_row:
        rows["resnet50"] = {"verdict": "holds"}
    return [
        {"id": 1, "verdict": "contradicted", "rows": {"resnet34": {"verdict": "contradicted", "ratio": {"n": 3}}}},
        {"id": 2, "verdict": two_verdict, "rows": rows},
    ]


def test_only_the_verdicts_that_changed_are_listed_with_where_they_are(tmp_path, capsys):
    compare = load_script()
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(claims("inconclusive", "inconclusive")))
    new.write_text(json.dumps(claims("holds", "holds", extra_row=True)))
    assert compare.differences(compare.read(str(old)), compare.read(str(new))) == [
        ("2", "", "inconclusive", "holds"),
        ("2", "resnet34 / nag:train_loss", "inconclusive", "holds"),
        ("2", "resnet50", "-", "holds"),
    ]
    assert compare.main([str(old), str(new)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "claim 2: inconclusive -> holds"
    assert out[-1] == "3 of 6 verdicts changed: 2 inconclusive -> holds, 1 - -> holds"
    assert compare.main([str(old), str(old), "--markdown"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "0 of 5 verdicts changed: none"


def test_a_committed_claims_file_is_read_from_git_and_a_bad_file_is_one_message(tmp_path, capsys, monkeypatch):
    compare = load_script()
    head = subprocess.run(["git", "ls-files", "results/small/report/claims.json"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()  # fmt: skip
    if head:  # a clone with the committed study: HEAD's file against itself
        monkeypatch.chdir(ROOT)
        assert compare.main([f"HEAD:{head}", f"HEAD:{head}"]) == 0
        assert capsys.readouterr().out.splitlines()[-1].startswith("0 of ")
    bad = tmp_path / "bad.json"
    bad.write_text('{"id": 1}')
    assert compare.main([str(bad), str(bad)]) == 2
    assert "not a claims.json" in capsys.readouterr().err
    assert compare.main([str(tmp_path / "missing.json"), str(bad)]) == 2
    assert "missing.json: No such file or directory" in capsys.readouterr().err
