"""Write small synthetic HCS OME-Zarr plates with moving, dividing, tracked cells.

The plate is meant for tests, demos and benchmarks: it is deterministic from a seed, writes in about a
second at the default size, and carries everything the loaders read:

- images ``(T, C, Z, Y, X)`` in array ``"0"`` of every FOV: a phase-like channel (textured blobs,
  darker rim, in focus at the middle slice) and a fluorescence reporter that is dim and diffuse over
  the cell before infection and bright and nucleus-sized after the well's infection onset (optionally:
  onsets drawn per cell lineage, bystander cells that stay uninfected, a phenotype that develops over
  several frames, transient reporter puncta, per-acquisition gain, background and blur);
- per-FOV tracks CSVs (``track_id, t, y, x, id, parent_track_id, parent_id``) with divisions and
  cells close to the borders (or kept ``border_margin`` pixels inside);
- normalisation statistics (:mod:`viscy_data.norm_meta` format) on every FOV and on the plate;
- ground truth in :attr:`SyntheticPlate.annotations`: infection state, infection onset and division.

Lineage conventions (those of ultrack): ``id`` is unique per detection within a FOV; ``parent_id`` is
the id of the previous detection of the same lineage (the mother's last detection for a daughter's
first row, -1 for roots); ``parent_track_id`` is the mother's track id for daughters, -1 for roots.

The parts live in modules named for their concern: :mod:`~viscy_data.synthetic.cells` (cell tracks,
lineages, infection onsets, division labels), :mod:`~viscy_data.synthetic.render` (the images of one
FOV), :mod:`~viscy_data.synthetic.plate` (the plate writer) and :mod:`~viscy_data.synthetic.corrupt`
(damaged chunks for tests of error handling).
"""

from viscy_data.importers.tracks import TRACKS_COLUMNS
from viscy_data.synthetic.cells import CELL_RADIUS as CELL_RADIUS
from viscy_data.synthetic.cells import MIN_CYCLE_FRAMES as MIN_CYCLE_FRAMES
from viscy_data.synthetic.corrupt import corrupt_timepoint
from viscy_data.synthetic.plate import SyntheticPlate, write_synthetic_plate
from viscy_data.synthetic.render import INFECTION_PHENOTYPES

__all__ = ["INFECTION_PHENOTYPES", "TRACKS_COLUMNS", "SyntheticPlate", "corrupt_timepoint", "write_synthetic_plate"]
