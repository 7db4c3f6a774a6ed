"""Small files written whole or not at all: a temporary file in the same directory, renamed.

A run killed (or a disk filling up) while a workdir's `config.json` or rewritten
`metrics.jsonl`, an export's manifest or a report is being written leaves the previous file (or
none), never half of the new one: `os.replace` within one directory is atomic on POSIX file
systems.
"""

import os
import tempfile


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically (temporary file, fsync, rename)."""
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
