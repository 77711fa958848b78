import subprocess
import sys

import pytest

import viscy_data

TYPE_NAMES = [
    "AnnotationColumns",
    "ChannelMap",
    "ChannelNormStats",
    "DictTransform",
    "HCSStackIndex",
    "INDEX_COLUMNS",
    "LABEL_CELL_CYCLE_STATE",
    "LABEL_CELL_DIVISION_STATE",
    "LABEL_CELL_REMODELING_STATE",
    "LABEL_INFECTION_STATE",
    "LevelNormStats",
    "NormMeta",
    "OneOrSeq",
    "Sample",
    "SegmentationSample",
    "TrackingIndex",
    "TripletSample",
]


def test_all_has_spec_names_and_version():
    assert len(viscy_data.__all__) == 48
    assert "__version__" in viscy_data.__all__
    assert set(viscy_data.__all__) <= set(dir(viscy_data))


@pytest.mark.parametrize("name", sorted(set(viscy_data.__all__) - {"__version__"}))
def test_every_public_name_resolves(name):
    value = getattr(viscy_data, name)
    assert value is not None
    if name not in TYPE_NAMES:  # classes live in the module the export map names
        assert value.__module__.startswith("viscy_data.")


def test_unknown_attribute():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        viscy_data.Nope


def test_import_is_lazy():
    code = "import sys, viscy_data; print(any(m.startswith('viscy_data.') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_index_columns_and_labels():
    expected = ["fov_name", "track_id", "t", "id", "parent_track_id", "parent_id", "z", "y", "x"]
    assert viscy_data.INDEX_COLUMNS == expected
    assert viscy_data.LABEL_INFECTION_STATE == {"uninfected": 0, "infected": 1, "unknown": -1}
    assert viscy_data.LABEL_CELL_CYCLE_STATE["telophase"] == 6
