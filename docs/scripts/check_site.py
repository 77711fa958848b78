"""Check a built site: every public name has its anchor in the API reference.

Run after ``mkdocs build`` (``.ci/run`` does)::

    python docs/scripts/check_site.py site/

mkdocstrings gives every documented object an HTML ``id`` equal to its dotted path and the
generated pages add one for each public path (``viscy_data.HCSDataModule``), so a name that failed to
render, or a page that lost its generator, shows up as a missing id.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import reference  # noqa: E402  (a sibling script)


def missing_anchors(site: Path) -> list[str]:
    """Public paths (``module.name``) of every public module's ``__all__`` without an id in the site."""
    missing = []
    for package in reference.PACKAGES:
        page = site / "reference" / "api" / package / "index.html"
        if not page.exists():
            missing.append(f"{page} (the page itself)")
            continue
        ids = set(re.findall(r'id="([^"]+)"', page.read_text()))
        for module in reference.public_modules(package):
            for name in getattr(importlib.import_module(module), "__all__", ()):
                if not name.startswith("__") and f"{module}.{name}" not in ids:
                    missing.append(f"{module}.{name}")
    return missing


def main() -> int:
    """Print the missing anchors; exit 1 if there are any."""
    site = Path(sys.argv[1] if len(sys.argv) > 1 else "site")
    missing = missing_anchors(site)
    for path in missing:
        print(f"not in the API reference: {path}", file=sys.stderr)
    if not missing:
        print(f"API reference: every public name of {', '.join(reference.PACKAGES)} is documented")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
