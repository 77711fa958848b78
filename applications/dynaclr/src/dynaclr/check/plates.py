"""Checks of the plates and tracking CSVs of a multi-experiment configuration, FOV by FOV."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from dynaclr.check.arguments import _PREFIX, _TRANSFORM_LISTS
from viscy_data import checks

__all__ = ["preprocess_command"]

#: FOV names listed in one message before "and N more"
_MAX_LISTED = 5


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


def preprocess_command(data_path: str | Path, channels: list[str]) -> str:
    """Return the ``dynaclr preprocess`` command that writes a plate's normalisation statistics for ``channels``."""
    return f"dynaclr preprocess --data_path {data_path} --channel_names '[{', '.join(channels)}]'"


@dataclass
class _Experiment:
    """What the plate and tracks pass found about one experiment."""

    cells_per_well: Counter = field(default_factory=Counter)
    plate_wells: set = field(default_factory=set)
    plate_fovs: set = field(default_factory=set)
    filtered_wells: set = field(default_factory=set)
    n_timepoints: int = 0
    n_fovs: int = 0
    n_with_meta: int = 0
    without_meta: list = field(default_factory=list)
    geometry: dict = field(default_factory=lambda: defaultdict(list))  # (key, message) -> FOVs
    meta_missing: dict = field(default_factory=lambda: defaultdict(list))  # (channel, message) -> FOVs
    no_csv: list = field(default_factory=list)  # FOVs
    no_rows: list = field(default_factory=list)  # FOVs
    dropped: dict = field(default_factory=dict)  # FOV -> FovTracks with rows the index leaves out


class _PlateChecks:
    """Checks of every used FOV of every plate: image geometry, normalisation metadata, tracking CSVs."""

    def norm_requirements(self) -> list[tuple[int, str, int, str, tuple[str, ...]]]:
        """(position, level, transform number, list name, statistics) read by every NormalizeSampled."""
        from viscy_transforms import NormalizeSampled

        needs = []
        for list_name in _TRANSFORM_LISTS:
            for i, transform in enumerate(getattr(self.dm, list_name)):
                if isinstance(transform, NormalizeSampled):
                    for key in transform.keys:
                        if str(key).startswith("ch_") and str(key)[3:].isdigit():
                            stats = (transform.subtrahend, transform.divisor)
                            needs.append((int(str(key)[3:]), transform.level, i, list_name, stats))
        return needs

    # ------------------------------------------------------------------ plates and tracks
    def check_plate(self, exp, needs) -> None:
        """Read every used FOV of an experiment (image shape, metadata, tracks) and report what is wrong."""
        from iohub.ngff import open_ome_zarr

        dm = self.dm
        found = self.found.setdefault(exp.name, _Experiment())
        include = None if "include_wells" in self.bad else dm.include_wells
        exclude = set(dm.exclude_fovs or []) if "exclude_fovs" not in self.bad else set()
        with open_ome_zarr(exp.data_path, layout="hcs", mode="r") as plate:
            for name, position in plate.positions():
                fov = name.strip("/")
                well = "/".join(fov.split("/")[:2])
                found.plate_wells.add(well)
                found.plate_fovs.add(fov)
                if (include is not None and well not in include) or fov in exclude:
                    found.filtered_wells.add(well)
                    continue
                self.scan_fov(exp, found, fov, well, position, needs)
        self.report_plate(exp, found)

    def scan_fov(self, exp, found: _Experiment, fov: str, well: str, position, needs) -> None:
        from dynaclr.index.tracks_csv import first_csv, read_tracks_csv
        from viscy_data.norm_meta import NORM_META_KEY

        found.n_fovs += 1
        shape = tuple(int(s) for s in position["0"].shape)
        found.n_timepoints = max(found.n_timepoints, shape[0])
        if not {"z_range", "yx_patch_size"} & self.bad:
            for key, message in checks.patch_fit_problems(shape, slice(*self.dm.z_range), self.dm.yx_patch_size):
                found.geometry[(key, message)].append(fov)
        raw = position.zattrs.get(NORM_META_KEY)
        if raw is None:
            found.without_meta.append(fov)
        else:
            found.n_with_meta += 1
            for position_index, level, _, _, stats in needs:
                channel = self.channel_name(exp, position_index)
                if channel is None:
                    continue
                if channel not in raw:
                    message = f"has no channel '{channel}' (has {sorted(raw)})"
                elif level not in raw[channel]:
                    message = f"has no '{level}' for channel '{channel}'"
                elif level != "timepoint_statistics" and any(s not in raw[channel][level] for s in stats):
                    message = f"has no statistics {[s for s in stats if s not in raw[channel][level]]} in '{level}'"
                else:
                    continue
                found.meta_missing[(channel, message)].append(fov)
        if exp.name not in self.tracks_ok:
            return
        csv = first_csv(Path(exp.tracks_path) / fov)
        if csv is None:
            found.no_csv.append(fov)
            return
        fov_tracks = read_tracks_csv(csv, (shape[0], shape[-2], shape[-1]))
        for message in fov_tracks.errors:
            self.report.error(message, experiment=exp.name, file=csv, key="tracks_path")
        if fov_tracks.table is None:
            return
        if fov_tracks.n_dropped:
            found.dropped[fov] = fov_tracks
        if len(fov_tracks.table) == 0:
            found.no_rows.append(fov)
        found.cells_per_well[well] += len(fov_tracks.table) - fov_tracks.n_dropped

    def report_plate(self, exp, found: _Experiment) -> None:
        from dynaclr.index.tracks_csv import describe_dropped_rows

        for (key, message), fovs in found.geometry.items():
            self.report.error(
                f"FOV{'s' * (len(fovs) > 1)} {_listed(fovs)}: {message}",
                experiment=exp.name,
                file=exp.data_path,
                key=_PREFIX + key,
            )
        for (channel, message), fovs in found.meta_missing.items():
            self.report.error(
                f"normalisation metadata of {len(fovs)} FOV(s) ({_listed(fovs)}) {message}, which NormalizeSampled "
                f"reads; write it with: {preprocess_command(exp.data_path, [channel])}",
                experiment=exp.name,
                file=exp.data_path,
                key=_PREFIX + "normalizations",
            )
        if found.n_fovs == 0:
            filters = f"include_wells {self.dm.include_wells}, exclude_fovs {self.dm.exclude_fovs}"
            message = f"no FOV of the plate is used ({filters})" if found.filtered_wells else "the plate has no FOV"
            self.report.error(message, experiment=exp.name, file=exp.data_path, key="data_path")
        if exp.name not in self.tracks_ok:
            return
        tracks_root = Path(exp.tracks_path)
        messages = []
        if found.n_fovs and len(found.no_csv) == found.n_fovs:
            self.report.error(
                f"no tracking CSV for any of the {found.n_fovs} FOVs (looked for "
                f"{tracks_root / found.no_csv[0]}/*.csv and the like)",
                experiment=exp.name,
                file=tracks_root,
                key="tracks_path",
            )
        elif found.no_csv:
            messages.append(
                f"{len(found.no_csv)} FOV(s) have no tracking CSV and are left out: {_listed(found.no_csv)}"
            )
        if found.no_rows:
            messages.append(f"{len(found.no_rows)} tracking CSV(s) have a header but no rows: {_listed(found.no_rows)}")
        if found.dropped:
            messages.append(describe_dropped_rows(found.dropped))
        for message in messages:
            self.report.warning(message, experiment=exp.name, file=tracks_root, key="tracks_path")

    def channel_name(self, exp, position_index: int) -> str | None:
        if position_index >= len(exp.source_channel):
            return None
        name = exp.source_channel[position_index]
        return name if name in exp.channel_names else None  # zero-filled channels need no statistics

    def check_norm_presence(self, needs) -> None:
        """FOVs without any normalisation metadata: an error when a transform reads it or a batch could mix."""
        used = [n for n in self.used_names() if n in self.found]
        with_meta = sum(self.found[n].n_with_meta for n in used)
        any_transform = any(getattr(self.dm, name) for name in _TRANSFORM_LISTS)
        exps = {e.name: e for e in self.experiments}
        for name in used:
            missing = self.found[name].without_meta
            if not missing:
                continue
            exp = exps[name]
            channels = [c for c in exp.source_channel if c in exp.channel_names]
            if needs:
                why = "NormalizeSampled reads it"
            elif any_transform and with_meta:
                why = "other FOVs have it, and a batch mixing FOVs with and without statistics cannot be normalised"
            else:
                continue
            self.report.error(
                f"{len(missing)} of {self.found[name].n_fovs} FOV(s) have no normalisation metadata "
                f"({_listed(missing)}) and {why}; write it with: {preprocess_command(exp.data_path, channels)}",
                experiment=name,
                file=exp.data_path,
                key=_PREFIX + "normalizations",
            )

    # ------------------------------------------------------------------ conditions
