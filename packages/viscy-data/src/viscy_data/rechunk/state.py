"""Resumable destinations: the bookkeeping of an unfinished rechunk and the provenance of a finished one.

An unfinished rechunk keeps its settings, staged FOVs and one record per completed FOV in a state
folder beside the destination (``.<name>.rechunk``). A finished one carries its source, settings and
per-FOV checksums in the plate's root attributes under :data:`PROVENANCE_KEY`. :func:`_prepare_destination`
tells the three cases apart (new, unfinished, finished) and refuses a destination started with other
settings.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from viscy_data.rechunk.metadata import _write_json_atomic
from viscy_data.rechunk.plan import _Settings

#: root attribute of a rechunked plate recording its source, settings and per-FOV pixel checksums
PROVENANCE_KEY = "rechunk"


def _state_dir(dest: Path) -> Path:
    """Bookkeeping of an unfinished rechunk, beside the destination (zarr warns about foreign folders inside)."""
    return dest.parent / f".{dest.name}.rechunk"


def _settings_mismatch(found: dict[str, Any], wanted: dict[str, Any]) -> str:
    return "; ".join(f"{k}: was {found.get(k)!r}, now {v!r}" for k, v in wanted.items() if found.get(k) != v)


def _prepare_destination(dest: Path, settings: _Settings) -> dict[str, str] | None:
    """Start, resume or recognise a finished rechunk into ``dest``.

    Returns
    -------
    dict or None
        The per-FOV checksums when ``dest`` is already a finished rechunk with these settings; ``None``
        when FOVs remain to be written (the state folder then exists, with these settings).
    """
    state = _state_dir(dest)
    wanted = settings.as_json()
    settings_file = state / "settings.json"
    if settings_file.exists():
        detail = _settings_mismatch(json.loads(settings_file.read_text()), wanted)
        if detail:
            raise ValueError(
                f"{dest} is an unfinished rechunk with other settings ({detail}); re-run with the same settings "
                f"to finish it, or remove {dest} and {state} to start over"
            )
        dest.mkdir(exist_ok=True)
        return None
    if dest.exists():
        root = dest / "zarr.json"
        provenance = json.loads(root.read_text()).get("attributes", {}).get(PROVENANCE_KEY) if root.exists() else None
        if not isinstance(provenance, dict):
            raise FileExistsError(
                f"destination {dest} exists and is not a rechunk destination; choose a new path or remove it"
            )
        detail = _settings_mismatch(provenance, wanted)
        if detail:
            raise ValueError(f"{dest} is a finished rechunk with other settings ({detail}); choose a new destination")
        return dict(provenance.get("checksums", {}))
    if not dest.parent.exists():
        raise FileNotFoundError(f"parent folder of the destination does not exist: {dest.parent}")
    # the state folder appears complete with its settings in one rename: it never exists without them
    tmp = dest.parent / f".{dest.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    _write_json_atomic(tmp / "settings.json", wanted)
    os.replace(tmp, state)
    dest.mkdir()
    return None


def _completed_fov(dest: Path, fov: str) -> str | None:
    """Checksum of ``fov`` when an earlier run moved it into ``dest`` and recorded it as done, else ``None``."""
    record = _state_dir(dest) / "done" / f"{fov}.json"
    if record.exists() and (dest / fov / "zarr.json").exists():
        return json.loads(record.read_text())["blake2b"]
    return None


def _record_done(dest: Path, fov: str, digest: str, nbytes: int) -> None:
    """Record ``fov`` as complete (in place and verified), so that a resumed run skips it."""
    _write_json_atomic(_state_dir(dest) / "done" / f"{fov}.json", {"fov": fov, "blake2b": digest, "bytes": nbytes})
