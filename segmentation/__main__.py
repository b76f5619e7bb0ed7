"""`python -m segmentation ...` and `spark-submit segmentation/__main__.py ...`."""

import sys

if __package__ in (None, ""):  # run as a file by spark-submit: make the package importable
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from segmentation.cli import main
from segmentation.session import stop_spark

try:
    code = main()
finally:
    # Stop the session before the interpreter exits: an open Spark Connect client can hang at
    # exit, when finalizers of fitted models call the server to release them.
    stop_spark()
sys.exit(code)
