"""Small files written whole or not at all: a temporary file in the same directory, renamed.

A run killed (or a disk filling up) while a workdir's `config.json` or rewritten
`metrics.jsonl`, an export's manifest or a report is being written leaves the previous file (or
none), never half of the new one: `os.replace` within one directory is atomic on POSIX file
systems.
"""

import os
import uuid


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically (temporary file, fsync, rename).

    The file gets the mode any new file of the process gets (0644 under umask 022), so that
    colleagues on a shared cluster can read reports and configs: the temporary file is created
    with `open(..., "x")`, not `tempfile.mkstemp`, whose 0600 the rename would keep.
    """
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "x") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
