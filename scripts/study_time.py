"""The wall time of `make reproduce-small` (or any logged command) run in several sittings: each sitting's log,
from its `start <UTC time>` line to its `end <UTC time>` line, or, for a sitting killed before its end (a session
that ended), to the last time stamp it logged (Hydra's `[YYYY-MM-DD HH:MM:SS,mmm]`); minus the pauses inside
it (`pause <UTC time>` / `resume <UTC time>` lines of --pauses, e.g. the machine's work stopped with SIGSTOP
for other work). The runs in flight when a sitting was killed are trained again in the next one: counted twice,
at most a couple of runs a sitting.

    python scripts/study_time.py .study/reproduce-small-*.log --pauses .study/pauses.log
"""

from __future__ import annotations

import argparse
import re
from datetime import datetime, timedelta
from pathlib import Path

STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+\]")
MARK = re.compile(r"^(start|end|pause|resume) (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "").replace("T", " "))


def sitting(log: Path) -> tuple[datetime, datetime, bool]:
    """(start, end, whether it ended by itself) of one sitting's log."""
    start = end = None
    ended = False
    for line in log.read_text(errors="replace").splitlines():
        mark, stamp = MARK.match(line), STAMP.match(line)
        if mark and mark.group(1) == "start" and start is None:
            start = _time(mark.group(2))
        elif mark and mark.group(1) == "end":
            end, ended = _time(mark.group(2)), True
        elif stamp and not ended:
            end = _time(stamp.group(1))
    if start is None or end is None:
        raise SystemExit(f"{log}: no `start <time>` line or no time stamp after it")
    return start, end, ended


def pauses(path: Path | None) -> list[tuple[datetime, datetime]]:
    """The (pause, resume) intervals of a pauses file; other lines are comments."""
    if path is None:
        return []
    found, begun = [], None
    for line in path.read_text().splitlines():
        mark = MARK.match(line)
        if mark and mark.group(1) == "pause":
            begun = _time(mark.group(2))
        elif mark and mark.group(1) == "resume" and begun is not None:
            found.append((begun, _time(mark.group(2))))
            begun = None
    return found


def overlap(a: tuple[datetime, datetime], b: tuple[datetime, datetime]) -> timedelta:
    return max(timedelta(0), min(a[1], b[1]) - max(a[0], b[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+", type=Path)
    parser.add_argument("--pauses", type=Path)
    args = parser.parse_args()
    stopped = pauses(args.pauses)
    total = timedelta(0)
    print("| sitting | start (UTC) | end (UTC) | wall | paused | net |\n| --- | --- | --- | ---: | ---: | ---: |")
    for log in sorted(args.logs, key=lambda p: sitting(p)[0]):
        start, end, ended = sitting(log)
        paused = sum((overlap((start, end), p) for p in stopped), timedelta(0))
        net = end - start - paused
        total += net
        how = "ended" if ended else "killed; last stamp"
        print(f"| {log.name} | {start:%Y-%m-%d %H:%M:%S} | {end:%H:%M:%S} ({how}) | {_m(end - start)} | {_m(paused)} "
              f"| {_m(net)} |")  # fmt: skip
    print(f"\nwall time without the pauses, all sittings: {_m(total)} ({total.total_seconds() / 3600:.2f} h)")


def _m(span: timedelta) -> str:
    minutes = span.total_seconds() / 60
    return f"{int(minutes // 60)} h {minutes % 60:04.1f} min"


if __name__ == "__main__":
    main()
