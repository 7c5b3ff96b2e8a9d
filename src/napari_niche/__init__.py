"""napari-niche: where cells sit in 3D bone marrow relative to niche structures.

The science lives in :mod:`napari_niche.core` (numpy/pandas only); the headless pipeline in
:mod:`napari_niche.niche.pipeline` and the ``napari-niche`` command in :mod:`napari_niche.cli`.
"""

__version__ = "0.1.0"
