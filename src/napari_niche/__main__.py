"""``python -m napari_niche``: the ``napari-niche`` command."""

import sys

from napari_niche.cli import main

sys.exit(main())
