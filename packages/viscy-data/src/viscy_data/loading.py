"""Data loaders shared by the DataModules of this package and of applications.

:func:`thread_worker_loader` builds the MONAI ``ThreadDataLoader`` that the patch DataModules
(``TripletDataModule``, ``dynaclr``'s ``MultiExperimentDataModule``) use: worker *threads* share the
process's open arrays (:mod:`viscy_data.patch_reader`) and leave the torch thread count alone.
"""

from viscy_data._utils import thread_worker_loader

__all__ = ["thread_worker_loader"]
