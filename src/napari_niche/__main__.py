import sys

from napari_niche.cli import main

sys.exit(main())
