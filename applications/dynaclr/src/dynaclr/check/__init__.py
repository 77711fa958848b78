"""Check a configuration and every experiment it names before anything runs: ``dynaclr check -c config.yml``.

The same checks run at the start of ``dynaclr fit``/``validate``/``predict`` (through
:meth:`~dynaclr.datamodule.MultiExperimentDataModule.preflight_check`), before logs, checkpoints or
``config.yaml`` are written. Every problem is collected, not only the first, and each names the experiment,
the file and the configuration key concerned:

- argument ranges: batch size, worker count, patch sizes, ``z_range``, probabilities, ``tau_range``, weights;
- the experiments file: missing/unknown keys, types, duplicate names, wells in ``row/col`` form, channels;
- every plate: ``z_range`` and patch size against every FOV's image, channels, normalisation metadata (with
  the ``dynaclr preprocess`` command to run) when a transform needs it;
- every tracking CSV: unreadable or empty files, missing columns, missing or non-integer ``track_id``/``t``
  (with line numbers), timepoints outside the image; rows with NaN or out-of-image centroids are counted per
  FOV (a warning: the index leaves them out);
- conditions: wells missing from the plate, conditions without cells, cells in no condition;
- the index: a ``tau_range`` no experiment can satisfy, no training anchors, fewer anchors than one batch per
  process.

Errors stop a run; warnings are reported and the run goes on.
"""

from dynaclr.check.arguments import argument_problems, model_input_problems
from dynaclr.check.command import check_command
from dynaclr.check.config import check_config
from dynaclr.check.datamodule import check_datamodule
from dynaclr.check.plates import preprocess_command

__all__ = [
    "argument_problems",
    "check_command",
    "check_config",
    "check_datamodule",
    "model_input_problems",
    "preprocess_command",
]
