"""Run every code block of the documentation and READMEs that is marked runnable.

A block is runnable when the line right before its opening fence is ``<!-- runnable -->`` (invisible
on GitHub and in the site). ``python``/``py`` blocks of one file run in order in one namespace;
``sh``/``bash`` blocks run with ``bash -euo pipefail`` and this environment's console scripts on
PATH. Each file runs in its own temporary folder, so examples may write ``plate.zarr`` and the like.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- runnable -->"
LANGUAGES = {"python": "python", "py": "python", "sh": "sh", "bash": "sh"}
_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^\s`]*)")


@dataclass(frozen=True)
class Block:
    """One runnable code block."""

    path: Path
    line: int  # 1-based line of the first line of code
    language: str  # "python" or "sh"
    code: str


def markdown_files() -> list[Path]:
    """The documentation pages and READMEs whose runnable blocks are tested."""
    files = [ROOT / "README.md", ROOT / "CONTRIBUTING.md"]
    files += sorted(ROOT.glob("packages/*/README.md")) + sorted(ROOT.glob("applications/*/README.md"))
    files += sorted(p for p in (ROOT / "docs").rglob("*.md") if "scripts" not in p.relative_to(ROOT / "docs").parts)
    return [f for f in files if f.exists()]


def runnable_blocks(text: str, path: Path) -> list[Block]:
    """Parse the blocks marked runnable in a markdown text.

    Raises
    ------
    ValueError
        If a marker is not followed by a fenced block, the block's language cannot run, or the
        fence is never closed.
    """
    lines = text.splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if line.strip() != MARKER:
            continue
        fence = _FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
        if fence is None:
            raise ValueError(f"{path}:{i + 1}: {MARKER} must be followed directly by a fenced code block")
        language = LANGUAGES.get(fence["info"].lower())
        if language is None:
            raise ValueError(
                f"{path}:{i + 2}: a runnable block must be one of {sorted(LANGUAGES)}, not {fence['info']!r}"
            )
        indent, marks = len(fence["indent"]), fence["fence"]
        body = []
        for j in range(i + 2, len(lines)):
            if lines[j].strip() == marks:
                break
            body.append(lines[j][indent:])
        else:
            raise ValueError(f"{path}:{i + 2}: the runnable block's fence is never closed")
        blocks.append(Block(path, i + 3, language, "\n".join(body) + "\n"))
    return blocks


def _blocks_by_file() -> dict[Path, list[Block]]:
    found = {}
    for path in markdown_files():
        blocks = runnable_blocks(path.read_text(), path)
        if blocks:
            found[path] = blocks
    return found


BLOCKS = _blocks_by_file()


def run_blocks(blocks: list[Block], cwd: Path) -> None:
    """Run the blocks of one file in order in ``cwd`` (python blocks share a namespace)."""
    namespace: dict = {"__name__": "__doc_example__"}
    env = dict(os.environ, MPLBACKEND="Agg", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        for block in blocks:
            where = f"{block.path.relative_to(ROOT) if block.path.is_relative_to(ROOT) else block.path}:{block.line}"
            if block.language == "python":
                # the filename and line offset make tracebacks point into the markdown file
                code = compile("\n" * (block.line - 1) + block.code, str(block.path), "exec")
                exec(code, namespace)  # noqa: S102 - running the documentation is the point
            else:
                result = subprocess.run(
                    ["bash", "-euo", "pipefail", "-c", block.code], cwd=cwd, env=env, capture_output=True, text=True
                )
                if result.returncode != 0:
                    raise AssertionError(
                        f"{where}: exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
                    )
    finally:
        os.chdir(previous)


@pytest.mark.parametrize("path", list(BLOCKS), ids=lambda p: str(p.relative_to(ROOT)))
def test_runnable_examples(path, tmp_path):
    run_blocks(BLOCKS[path], tmp_path)


def test_docs_have_runnable_examples():
    """The guides keep examples that run (a lost marker would silently stop testing them)."""
    pages = {p.relative_to(ROOT).as_posix() for p in BLOCKS}
    for page in [
        "docs/getting-started.md",
        "docs/guides/data-layout.md",
        "docs/guides/preparing-data.md",
        "docs/guides/embeddings.md",
        "docs/guides/sampling.md",
        "packages/viscy-transforms/README.md",
    ]:
        assert page in pages, f"{page} has no runnable example"
    assert {b.language for bs in BLOCKS.values() for b in bs} == {"python", "sh"}


def test_parser_finds_marked_blocks_only(tmp_path):
    text = "\n".join(
        [
            "```python",
            "not_run()",
            "```",
            MARKER,
            "```python",
            "x = 1",
            "```",
            "  " + MARKER,
            "  ```sh",
            "  echo indented",
            "  ```",
        ]
    )
    blocks = runnable_blocks(text, tmp_path / "page.md")
    assert [(b.language, b.code, b.line) for b in blocks] == [("python", "x = 1\n", 6), ("sh", "echo indented\n", 10)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"{MARKER}\n\n```python\nx = 1\n```", "followed directly"),
        (f"{MARKER}\n```yaml\na: 1\n```", "must be one of"),
        (f"{MARKER}\n```python\nx = 1\n", "never closed"),
    ],
)
def test_parser_rejects_misplaced_markers(text, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        runnable_blocks(text, tmp_path / "page.md")


def test_failing_examples_fail_with_their_location(tmp_path):
    page = tmp_path / "page.md"
    python = runnable_blocks(f"text\n{MARKER}\n```python\nx = 1\nassert x == 2\n```\n", page)
    with pytest.raises(AssertionError) as err:
        run_blocks(python, tmp_path)
    assert err.traceback[-1].lineno + 1 == 5  # line 5 of page.md
    shell = runnable_blocks(f"{MARKER}\n```sh\nfalse\n```\n", page)
    with pytest.raises(AssertionError, match="page.md:3: exit 1"):
        run_blocks(shell, tmp_path)
