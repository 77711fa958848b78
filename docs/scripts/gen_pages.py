"""mkdocs-gen-files script: write the generated reference pages (see ``reference.py``)."""

import sys
from pathlib import Path

import mkdocs_gen_files

sys.path.insert(0, str(Path(__file__).parent))
import reference  # noqa: E402  (a sibling script, not a package)

for path, text in reference.pages().items():
    with mkdocs_gen_files.open(path, "w") as f:
        f.write(text)
    mkdocs_gen_files.set_edit_path(path, "docs/scripts/reference.py")
