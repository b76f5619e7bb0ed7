"""Uploaded files, kept under generated names in the workspace's upload folder."""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import BinaryIO

from segmentation.errors import InputError
from segmentation.jobs import new_id
from segmentation.reading import storage_suffix

log = logging.getLogger(__name__)

_SUFFIX = re.compile(r"^(\.[A-Za-z0-9]{1,10}){1,2}$")


def save_upload(folder: Path, data: bytes | BinaryIO, original_name: str, suffix: str = "") -> Path:
    """Keep an uploaded file under a generated name (the analyst's name is never a path)."""
    suffix = (suffix or "".join(Path(original_name).suffixes[-2:])).lower()
    if suffix and not suffix.startswith("."):
        suffix = f".{suffix}"
    if suffix and not _SUFFIX.match(suffix):
        raise InputError(f"'{suffix}' is not a file type the app can read.")
    # A fixed first letter: Spark skips input files whose names start with '_' or '.'.
    target = folder / f"u{new_id()}{suffix}"
    partial = folder / f".{target.name}.partial"
    try:
        with open(partial, "wb") as out:
            if isinstance(data, (bytes, bytearray, memoryview)):
                out.write(data)
            else:
                if data.seekable():
                    data.seek(0)
                shutil.copyfileobj(data, out, length=1024 * 1024)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    log.info("saved upload %r as %s", original_name, target.name)
    return target


def save_table(folder: Path, data: bytes | BinaryIO, original_name: str) -> Path:
    """Keep an uploaded table under the suffix its content needs (Spark picks gzip by suffix).

    A file that is not a table (empty, binary, a spreadsheet) is refused and not kept.
    """
    path = save_upload(folder, data, original_name, suffix=".upload")
    try:
        fixed = path.with_suffix(storage_suffix(str(path)))
    except InputError:
        path.unlink(missing_ok=True)
        raise
    path.rename(fixed)
    return fixed
