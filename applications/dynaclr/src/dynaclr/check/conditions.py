"""Checks of conditions and well filters against what the plates hold."""

from __future__ import annotations

from dynaclr.check.arguments import _PREFIX
from dynaclr.check.plates import _listed


class _ConditionChecks:
    """Checks of ``condition_wells`` against the wells and cells found, and of the well/FOV filters."""

    def check_conditions(self) -> None:
        from dynaclr.experiment import well_name_problem

        all_conditions: set[str] = set()
        for exp in self.experiments:
            found = self.found.get(exp.name)
            if found is None or not isinstance(exp.condition_wells, dict):
                continue
            all_conditions.update(map(str, exp.condition_wells))
            assigned = set()
            for condition, wells in exp.condition_wells.items():
                if not isinstance(wells, (list, tuple)):
                    continue
                wells = [w for w in wells if well_name_problem(w) is None]
                assigned.update(wells)
                absent = [w for w in wells if w not in found.plate_wells]
                if absent:
                    self.report.error(
                        f"wells {absent} of condition '{condition}' are not in the plate (its wells: "
                        f"{_listed(sorted(found.plate_wells))})",
                        experiment=exp.name,
                        file=exp.data_path,
                        key=f"condition_wells.{condition}",
                    )
                if exp.name not in self.tracks_ok:
                    continue
                cells = sum(found.cells_per_well[w] for w in wells)
                if cells == 0 and wells and all(w in found.filtered_wells for w in wells if w in found.plate_wells):
                    if any(w in found.plate_wells for w in wells):
                        self.report.warning(
                            f"condition '{condition}' has no cells: include_wells/exclude_fovs leave out its "
                            f"wells {wells}",
                            experiment=exp.name,
                            file=self.file,
                            key=f"condition_wells.{condition}",
                        )
                elif cells == 0:
                    self.report.error(
                        f"condition '{condition}' has no cells: its wells {wells} hold no tracked cell inside "
                        "the images"
                        if wells
                        else f"condition '{condition}' lists no well",
                        experiment=exp.name,
                        file=self.file,
                        key=f"condition_wells.{condition}",
                    )
            if exp.name not in self.tracks_ok:
                continue
            orphans = sorted(w for w, n in found.cells_per_well.items() if n and w not in assigned)
            if orphans:
                n_cells = sum(found.cells_per_well[w] for w in orphans)
                self.report.warning(
                    f"{n_cells} observations in wells {_listed(orphans)} are in no condition of condition_wells and "
                    "get condition 'unknown'",
                    experiment=exp.name,
                    file=self.file,
                    key="condition_wells",
                )
            if sum(found.cells_per_well.values()) == 0 and found.n_fovs:
                self.report.error(
                    "no tracked cell inside the images in any used FOV",
                    experiment=exp.name,
                    file=exp.tracks_path,
                    key="tracks_path",
                )
        self.check_filters()
        ratio = self.dm.condition_ratio
        if ratio and "condition_ratio" not in self.bad and all_conditions and self.stage != "predict":
            unknown = sorted(set(ratio) - all_conditions)
            if unknown:
                self.config_error(
                    f"{unknown} are not conditions of any experiment (conditions: {sorted(all_conditions)})",
                    "condition_ratio",
                )

    def check_filters(self) -> None:
        """Warn about include_wells/exclude_fovs entries that match no plate (a typo selects or drops nothing)."""
        if len(self.found) < len(self.used_names()):
            return  # some plates were not read: their wells are unknown
        for key, values, attribute, noun in (
            ("include_wells", self.dm.include_wells, "plate_wells", "well"),
            ("exclude_fovs", self.dm.exclude_fovs, "plate_fovs", "FOV"),
        ):
            if key in self.bad or not values:
                continue
            known = sorted(set().union(*(getattr(f, attribute) for f in self.found.values())))
            absent = sorted(set(values) - set(known))
            if absent:
                self.report.warning(
                    f"{absent} match no {noun} of the used plates ({noun}s: {_listed(known)})",
                    file=self.config_file,
                    key=_PREFIX + key,
                )

    # ------------------------------------------------------------------ tau and the index
