"""`python -m segmentation ...` and `spark-submit segmentation/__main__.py ...` (with the package
installed: `pip install -e .`)."""

from segmentation.cli import console

if __name__ == "__main__":
    console()
