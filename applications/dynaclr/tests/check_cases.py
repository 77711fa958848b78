"""Print the table of bad inputs and what ``dynaclr check`` says about them (issue 19's closing note).

Runs every case of ``test_check.CASES`` on its own copy of the synthetic experiments and prints, as a
markdown table, the bad input and the first line of the problem that names its culprit (temporary paths
shortened to ``…``)::

    uv run python applications/dynaclr/tests/check_cases.py > cases.md
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from test_check import CASES, _matching, make_setup, write_template  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        template = write_template(root / "template")
        rows = []
        for i, case in enumerate(CASES):
            setup = make_setup(template, root / f"case_{i}")
            case.mutate(setup)
            found = _matching(setup.check(case.stage), case, setup)
            message = str(found[0]).splitlines()[0] if found else "(no matching problem: test_check fails)"
            message = message.replace(str(root / f"case_{i}" / "data"), "…").replace(str(root / f"case_{i}"), "…")
            rows.append((case.input, message))
    print("| # | bad input | message (first line) |")
    print("|---|---|---|")
    for i, (bad, message) in enumerate(rows, 1):
        cell = message.replace("|", "\\|")
        print(f"| {i} | {bad.replace('|', chr(92) + '|')} | `{cell}` |")


if __name__ == "__main__":
    main()
