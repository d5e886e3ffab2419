"""Write docs/verdicts.md's list of the claims from the rules the report prints (llbbench/report/claims.py), so
that the two cannot drift; `--check` only says whether the file is up to date (exit 1 when not)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llbbench.report.claims import rules_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "verdicts.md"
START = "<!-- the claims: written from llbbench/report/claims.py by scripts/write_verdict_rules.py -->\n"
END = "<!-- end of the claims -->\n"


def rewritten(text: str) -> str:
    """`text` (docs/verdicts.md) with the part between START and END replaced by the rules."""
    if START not in text or END not in text:
        raise SystemExit(f"{DOC} lacks the markers {START.strip()} … {END.strip()}")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{rules_markdown()}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check that docs/verdicts.md is up to date")
    args = parser.parse_args()
    text = DOC.read_text()
    new = rewritten(text)
    if args.check:
        if new != text:
            print(f"{DOC} is out of date: run python scripts/write_verdict_rules.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new)
    print(f"wrote the claims' rules into {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
