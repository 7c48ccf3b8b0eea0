"""Writes tests/scope_seconds.json, the seconds each xdist scheduling unit takes, from the
output of `./dev test --durations=0` (its first, parallel phase), for the scheduler in
tests/conftest.py:  python -m tests.scope_seconds < run.log"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict

from tests.conftest import SCOPE_SECONDS, scope_of

LINE = re.compile(r"^\s*([\d.]+)s (?:setup|call|teardown)\s+(\S.*?)\s*$")


def main() -> None:
    seconds: dict[str, float] = defaultdict(float)
    sections = 0
    for line in sys.stdin:
        if "slowest durations" in line:
            sections += 1
            if sections > 1:  # the serial phase: not scheduled on workers
                break
        elif sections and (match := LINE.match(line)):
            seconds[scope_of(match[2])] += float(match[1])
    ordered = dict(sorted(((k, round(v, 1)) for k, v in seconds.items()), key=lambda kv: -kv[1]))
    SCOPE_SECONDS.write_text(json.dumps(ordered, indent=1) + "\n")


if __name__ == "__main__":
    main()
