"""Repository-wide pytest set-up shared by every package's tests."""

import os

# Figures are written to files in tests; never try to open a window.
os.environ.setdefault("MPLBACKEND", "Agg")
