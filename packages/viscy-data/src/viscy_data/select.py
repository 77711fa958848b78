"""Select wells and FOVs of an HCS plate (include wells, exclude FOVs)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from iohub.ngff import Plate, Position
from iohub.ngff.nodes import Well

from viscy_data._io import fov_name as _fov_name

__all__ = ["SelectWell"]


def _filter_wells(plate: Plate, include_wells: Sequence[str] | None) -> Iterator[tuple[str, Well]]:
    """Yield ``(name, well)`` in plate order, only the ``include_wells`` if given.

    Raises
    ------
    ValueError
        If ``include_wells`` names a well that is not in the plate (the available ones are listed).
    """
    wells = list(plate.wells())
    if include_wells is not None:
        names = [name for name, _ in wells]
        unknown = [w for w in include_wells if w not in names]
        if unknown:
            raise ValueError(f"wells {unknown} are not in the plate; available wells: {names}")
        wells = [(name, well) for name, well in wells if name in set(include_wells)]
    yield from wells


def _filter_fovs(well: Well, exclude_fovs: Sequence[str] | None) -> Iterator[Position]:
    """Yield the well's positions whose FOV name (``"A/1/0"``) is not in ``exclude_fovs``."""
    excluded = set(exclude_fovs or ())
    for _, position in well.positions():
        if _fov_name(position) not in excluded:
            yield position


def _select_fovs(plate: Plate, include_wells: Sequence[str] | None, exclude_fovs: Sequence[str] | None) -> list:
    """Positions of the included wells minus the excluded FOVs; ``ValueError`` if nothing is left."""
    positions = [pos for _, well in _filter_wells(plate, include_wells) for pos in _filter_fovs(well, exclude_fovs)]
    if not positions:
        raise ValueError(
            f"no FOV left after selecting wells {include_wells} and excluding FOVs {exclude_fovs} "
            f"in the plate at {plate.zgroup.store}"
        )
    return positions


class SelectWell:
    """Mixin selecting the FOVs used for fitting.

    Subclasses set ``_include_wells`` (well names like ``"A/1"``, or None for all) and
    ``_exclude_fovs`` (FOV names like ``"A/1/0"``, or None).
    """

    _include_wells: list[str] | None = None
    _exclude_fovs: list[str] | None = None

    def _filter_fit_fovs(self, plate: Plate) -> list[Position]:
        """Return the selected positions in plate order.

        Raises
        ------
        ValueError
            If an included well is not in the plate, or fewer than 2 FOVs remain.
        """
        positions = _select_fovs(plate, self._include_wells, self._exclude_fovs)
        if len(positions) < 2:
            raise ValueError("At least 2 FOVs are required for training and validation.")
        return positions
