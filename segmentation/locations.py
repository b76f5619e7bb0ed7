"""Dataset locations typed by a user: accepted only under the roots an administrator configured.

Big tables do not go through the browser: an analyst names a file or folder that the Spark
cluster can read (a local path, `file://`, `hdfs://`, `s3a://`, ...). So that nobody can read
server files such as /etc/passwd through the app, a location must lie under one of the roots in
`SEGMENTATION_DATA_ROOTS` (separated by commas); without that setting the feature is off.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from segmentation.errors import InputError

ROOTS_SETTING = "SEGMENTATION_DATA_ROOTS"
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def data_roots(env: Mapping[str, str] | None = None) -> list[str]:
    """The configured roots: local folders (resolved) and URL prefixes such as s3a://bucket/data/."""
    env = os.environ if env is None else env
    roots = []
    for item in env.get(ROOTS_SETTING, "").split(","):
        item = item.strip()
        if not item:
            continue
        if _SCHEME.match(item) and not item.startswith("file://"):
            roots.append(item.rstrip("/") + "/")
        else:
            roots.append(str(Path(item.removeprefix("file://")).expanduser().resolve()))
    return roots


def resolve_location(text: str, roots: list[str]) -> str:
    """The location to read, if it is under an allowed root; else an InputError saying why."""
    text = text.strip()
    if not roots:
        raise InputError(
            "Reading data from a location is turned off on this server.",
            hint=f"An administrator can allow folders with the {ROOTS_SETTING} setting.",
        )
    if not text:
        raise InputError("Type the location of a file or folder.")
    allowed = ", ".join(roots)
    scheme = _SCHEME.match(text)
    if scheme and scheme.group(1).lower() != "file":
        parts = PurePosixPath(text[scheme.end() :]).parts
        if ".." in parts or any(part.startswith("~") for part in parts):
            raise InputError(f"The location '{text}' may not contain '..' or '~'.")
        if not any(text.rstrip("/") + "/" == root or text.startswith(root) for root in roots):
            raise InputError(f"'{text}' is outside the locations this app may read: {allowed}.")
        return text
    path = Path(text.removeprefix("file://")).expanduser().resolve()  # follows links and '..'
    for root in roots:
        if not _SCHEME.match(root) and (path == Path(root) or Path(root) in path.parents):
            if not path.exists():
                raise InputError(f"Nothing exists at '{text}'.", hint="Check the path.")
            return str(path)
    raise InputError(f"'{text}' is outside the folders this app may read: {allowed}.")
