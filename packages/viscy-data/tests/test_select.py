import pytest
from iohub.ngff import open_ome_zarr

from viscy_data.select import SelectWell, _fov_name


class _Selector(SelectWell):
    def __init__(self, include_wells=None, exclude_fovs=None):
        self._include_wells = include_wells
        self._exclude_fovs = exclude_fovs


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        (None, None, ["A/1/0", "A/1/1", "A/2/0", "A/2/1", "B/1/0", "B/1/1", "B/2/0", "B/2/1"]),
        (["A/2", "B/1"], None, ["A/2/0", "A/2/1", "B/1/0", "B/1/1"]),
        (None, ["A/1/0", "B/2/1"], ["A/1/1", "A/2/0", "A/2/1", "B/1/0", "B/1/1", "B/2/0"]),
        (["B/1"], ["B/1/0", "A/1/1"], None),
        (["B/2", "A/1"], ["A/1/1"], ["A/1/0", "B/2/0", "B/2/1"]),
    ],
)
def test_filter_fit_fovs(plate_v04, include, exclude, expected):
    with open_ome_zarr(plate_v04.store_path, mode="r") as plate:
        selector = _Selector(include, exclude)
        if expected is None:
            with pytest.raises(ValueError, match="At least 2 FOVs"):
                selector._filter_fit_fovs(plate)
        else:
            assert [_fov_name(p) for p in selector._filter_fit_fovs(plate)] == expected


def test_unknown_well_and_empty_selection(plate_v04):
    with open_ome_zarr(plate_v04.store_path, mode="r") as plate:
        with pytest.raises(ValueError, match=r"\['C/7'\] are not in the plate.*A/1"):
            _Selector(["C/7"])._filter_fit_fovs(plate)
        with pytest.raises(ValueError, match="no FOV left"):
            _Selector(["A/1"], ["A/1/0", "A/1/1"])._filter_fit_fovs(plate)
