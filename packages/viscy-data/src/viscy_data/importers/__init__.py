"""Import tracks and images from the tools biologists use into the layouts VisCy reads.

Tracks (one FOV per file) become ``<tracks_root>/<row>/<col>/<fov>/tracks.csv`` with the columns
``track_id, t, y, x, id, parent_track_id, parent_id`` (see :mod:`viscy_data.importers.tracks`):

- :func:`read_trackmate_xml`: TrackMate XML, splits become daughters with ``parent_track_id``;
- :func:`read_ctc_tracks`: Cell Tracking Challenge ``res_track.txt`` with its label images;
- :func:`read_tracks_table`: a CSV/TSV with ``track_id, t, y, x[, parent_track_id]`` (ultrack, napari);
- :func:`read_tracks` / :func:`import_tracks`: any of them, and writing with :func:`write_tracks_csv`.

Images: :func:`import_tiff` writes a TIFF / OME-TIFF time-lapse as a position of an HCS OME-Zarr plate,
keeping channel names and pixel size (needs ``pip install 'viscy-data[tiff]'``).

The same is on the command line as ``viscy import-tracks`` and ``viscy import-images``.
"""

from viscy_data.importers.ctc import find_ctc_label_images, read_ctc_tracks, read_res_track
from viscy_data.importers.formats import TRACK_FORMATS, detect_track_format, import_tracks, read_tracks
from viscy_data.importers.images import ImportedImage, TiffImage, import_tiff, read_tiff_image
from viscy_data.importers.table import read_tracks_table
from viscy_data.importers.trackmate import TrackMateImage, read_trackmate_image, read_trackmate_xml
from viscy_data.importers.tracks import (
    TRACKS_COLUMNS,
    TrackImportError,
    detections_outside,
    finalize_tracks,
    tracks_csv_path,
    write_tracks_csv,
)

__all__ = [
    "TRACK_FORMATS",
    "TRACKS_COLUMNS",
    "ImportedImage",
    "TiffImage",
    "TrackImportError",
    "TrackMateImage",
    "detect_track_format",
    "detections_outside",
    "finalize_tracks",
    "find_ctc_label_images",
    "import_tiff",
    "import_tracks",
    "read_ctc_tracks",
    "read_res_track",
    "read_tiff_image",
    "read_trackmate_image",
    "read_trackmate_xml",
    "read_tracks",
    "read_tracks_table",
    "tracks_csv_path",
    "write_tracks_csv",
]
