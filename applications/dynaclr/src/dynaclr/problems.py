"""Problems found in a configuration, collected into one report instead of failing on the first.

:mod:`dynaclr.check` (``dynaclr check -c config.yml`` and the pre-flight of ``fit``/``predict``) and the
validation helpers of :mod:`dynaclr.experiment` and :mod:`dynaclr.index.tracks_csv` describe every defect as a
:class:`Problem` naming the experiment, file and configuration key it is about, so a user sees all of them at
once and knows where to look. This module is deliberately light (no numpy, no torch): the ``dynaclr`` command
imports it to print a report without a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from viscy_data.checks import DataCheckError

__all__ = ["CheckReport", "ConfigCheckError", "Problem", "yaml_error_text"]

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One defect of a configuration or of the data it points to.

    Parameters
    ----------
    severity : {"error", "warning"}
        Errors stop ``fit``/``predict`` before anything is written; warnings are reported and the run goes on.
    message : str
        What is wrong and, where possible, what to do about it.
    experiment : str or None
        Experiment name (as in the experiments file) the problem belongs to.
    file : str or None
        The file or store concerned: experiments YAML, plate, tracking CSV, config.
    key : str or None
        Configuration key, e.g. ``"data.init_args.z_range"`` or ``"experiments[1].data_path"``.
    """

    severity: Severity
    message: str
    experiment: str | None = None
    file: str | None = None
    key: str | None = None

    def describe(self) -> str:
        """Describe the problem on one line without its severity: ``[experiment 'a'] key: message (file)``."""
        parts = []
        if self.experiment is not None:
            parts.append(f"[experiment '{self.experiment}']")
        if self.key is not None:
            parts.append(f"{self.key}:")
        parts.append(self.message)
        text = " ".join(parts)
        return f"{text} (in {self.file})" if self.file is not None else text

    def __str__(self) -> str:
        return f"{self.severity}: {self.describe()}"


@dataclass
class CheckReport:
    """All problems found by a check, errors and warnings, in the order they were found.

    Parameters
    ----------
    problems : list[Problem]
        The problems.
    source : str or None
        What was checked (a config file), shown in the summary line.
    notes : list[str]
        What was found besides problems (counts of experiments, anchors, batches), shown before the summary.
    """

    problems: list[Problem] = field(default_factory=list)
    source: str | None = None
    notes: list[str] = field(default_factory=list)

    def error(self, message: str, *, experiment: str | None = None, file=None, key: str | None = None) -> None:
        """Add an error."""
        self.problems.append(Problem("error", message, experiment, None if file is None else str(file), key))

    def warning(self, message: str, *, experiment: str | None = None, file=None, key: str | None = None) -> None:
        """Add a warning."""
        self.problems.append(Problem("warning", message, experiment, None if file is None else str(file), key))

    def extend(self, problems: Iterable[Problem]) -> None:
        """Add problems found elsewhere."""
        self.problems.extend(problems)

    @property
    def errors(self) -> list[Problem]:
        """The problems that stop a run."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        """The problems that are only reported."""
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    def summary(self) -> str:
        """``dynaclr check: N errors, M warnings [in source]``."""
        n_err, n_warn = len(self.errors), len(self.warnings)
        where = f" in {self.source}" if self.source else ""
        return f"dynaclr check: {n_err} error{'s' * (n_err != 1)}, {n_warn} warning{'s' * (n_warn != 1)}{where}"

    def format(self) -> str:
        """Errors first, then warnings, one per line, then the notes and the summary line."""
        lines = [str(p) for p in self.errors] + [str(p) for p in self.warnings]
        return "\n".join([*lines, *self.notes, self.summary()])

    def log(self, logger: logging.Logger) -> None:
        """Log every warning (and error) of the report on ``logger``."""
        for problem in self.problems:
            logger.log(logging.ERROR if problem.severity == "error" else logging.WARNING, "%s", problem)

    def raise_for_errors(self) -> None:
        """Raise :class:`ConfigCheckError` (carrying this report) when there is any error."""
        if self.errors:
            raise ConfigCheckError(self)


class ConfigCheckError(DataCheckError):
    """A configuration failed its checks; :attr:`report` holds every problem found.

    A :class:`viscy_data.checks.DataCheckError`, so the ``viscy``/``dynaclr`` commands print it without a
    traceback (unless ``--debug``) and exit with status 1.

    Parameters
    ----------
    report : CheckReport
        The report; its errors make up the message.
    """

    def __init__(self, report: CheckReport) -> None:
        self.report = report
        lines = [p.describe() for p in report.errors]
        ValueError.__init__(
            self, f"{len(lines)} configuration error(s):\n" + "\n".join(f"  - {line}" for line in lines)
        )
        self.messages = lines
        self.source = report.source

    def format(self) -> str:
        """Format the whole report: errors, warnings, notes and the summary line."""
        return self.report.format()


def yaml_error_text(err: Exception) -> str:
    """One line for a YAML parsing error: ``line L, column C: <problem>`` when PyYAML knows the place."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None)
    if mark is not None and problem:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return " ".join(str(err).split())
