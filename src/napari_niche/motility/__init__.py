"""The headless motility pipeline (`napari-niche motility`) and its figures."""
