"""Griffe extension: render Sphinx cross-reference roles of docstrings as inline code.

The docstrings are numpy style and use roles such as ``:class:`~viscy_data.hcs.HCSDataModule```,
which Markdown would print literally. ``~`` keeps the last component only, as in Sphinx.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|obj|data|exc|const|ref|doc):`(~?)([^`]+)`")


def _replace(match: re.Match) -> str:
    tilde, target = match.groups()
    # ":func:`title <target>`" shows the title
    if target.endswith(">") and "<" in target:
        target = target[: target.index("<")].strip()
    elif tilde:
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


def plain_roles(text: str) -> str:
    """Return ``text`` with every Sphinx role replaced by inline code."""
    return _ROLE.sub(_replace, text)


class SphinxRoles(griffe.Extension):
    """Rewrite ``:role:`target``` in every docstring to ```target```."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:  # noqa: D102
        if obj.docstring is not None:
            obj.docstring.value = plain_roles(obj.docstring.value)
