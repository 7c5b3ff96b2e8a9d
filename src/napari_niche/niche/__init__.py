"""The headless niche pipeline (`napari-niche analyze`), its cost estimate and its plots."""
