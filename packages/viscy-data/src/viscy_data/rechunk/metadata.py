"""Group metadata of a rechunked plate: reading zarr v2/v3 groups and rewriting NGFF 0.4 as 0.5.

Plate, row, well, FOV and label groups are copied through these helpers: attributes are split into
the NGFF part (under ``"ome"`` in 0.5, top-level keys in 0.4) and the rest, the NGFF part is rewritten
for version 0.5, normalisation statistics are restricted to the kept channels, and the zarr v3 group
document is written atomically.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

#: NGFF metadata keys that move under ``"ome"`` in NGFF 0.5
_OME_KEYS = ("plate", "well", "multiscales", "omero", "labels", "image-label", "bioformats2raw.layout")


def _load_attrs(group_path: Path) -> tuple[dict[str, Any], int]:
    """Attributes and zarr format (2 or 3) of the group stored at ``group_path``."""
    if (group_path / "zarr.json").exists():
        meta = json.loads((group_path / "zarr.json").read_text())
        if meta.get("node_type") != "group":
            raise ValueError(f"{group_path} is a zarr {meta.get('node_type')}, not a group")
        return dict(meta.get("attributes", {})), 3
    if (group_path / ".zgroup").exists():
        attrs_file = group_path / ".zattrs"
        return (json.loads(attrs_file.read_text()) if attrs_file.exists() else {}), 2
    raise FileNotFoundError(f"no zarr group at {group_path} (neither zarr.json nor .zgroup)")


def _split_ome(attrs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a group's attributes into (NGFF metadata, other attributes), for NGFF 0.4 or 0.5."""
    attrs = copy.deepcopy(attrs)
    if "ome" in attrs:
        ome = attrs.pop("ome")
        return ome, attrs
    ome = {key: attrs.pop(key) for key in _OME_KEYS if key in attrs}
    attrs.pop("version", None)  # iohub's top-level NGFF 0.4 version marker
    return ome, attrs


def _ngff_version(ome: dict[str, Any]) -> str | None:
    """Return the NGFF version a group declares (0.5: ``ome.version``; 0.4: inside plate/well/multiscales)."""
    if "version" in ome:
        return str(ome["version"])
    for key in ("plate", "well", "omero", "image-label"):
        if isinstance(ome.get(key), dict) and "version" in ome[key]:
            return str(ome[key]["version"])
    for scale in ome.get("multiscales", []):
        if "version" in scale:
            return str(scale["version"])
    return None


def _as_ngff_05(ome: dict[str, Any]) -> dict[str, Any]:
    """NGFF metadata rewritten for 0.5: ``version`` at the top, nested version markers updated."""
    ome = copy.deepcopy(ome)
    for key in ("plate", "well", "omero", "image-label"):
        if isinstance(ome.get(key), dict) and "version" in ome[key]:
            ome[key]["version"] = "0.5"
    for scale in ome.get("multiscales", []):
        if "version" in scale:
            scale["version"] = "0.5"
    ome["version"] = "0.5"
    return ome


def _keep_channels_in_norm(attrs: dict[str, Any], channels: list[str] | None) -> dict[str, Any]:
    """Restrict normalisation statistics (keyed by channel name) to the kept channels."""
    from viscy_data.norm_meta import NORM_META_KEY

    if channels is None or not isinstance(attrs.get(NORM_META_KEY), dict):
        return attrs
    attrs[NORM_META_KEY] = {name: v for name, v in attrs[NORM_META_KEY].items() if name in channels}
    return attrs


def _group_json(ome: dict[str, Any] | None, attrs: dict[str, Any]) -> dict[str, Any]:
    attributes = ({"ome": ome} if ome else {}) | attrs
    return {"zarr_format": 3, "node_type": "group", "attributes": attributes}


def _write_json_atomic(path: Path, content: dict[str, Any]) -> None:
    """Write JSON so that ``path`` holds either the old or the complete new content, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(content, indent=2))
    os.replace(tmp, path)
