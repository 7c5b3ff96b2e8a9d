"""Dock widgets: thin Qt front-ends that read layers, call :mod:`napari_niche.core` and write
layers and tables back. No science lives here."""
