"""`python -m segmentation ...` and `spark-submit segmentation/__main__.py ...`."""

import sys

if __package__ in (None, ""):  # run as a file by spark-submit: make the package importable
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from segmentation.cli import main

sys.exit(main())
