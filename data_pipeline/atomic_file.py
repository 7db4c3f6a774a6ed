"""Files written whole or not at all: a temporary file in the same directory, renamed.

A run killed (or a disk filling up) while a workdir's `config.json` or rewritten
`metrics.jsonl`, an export's weights or manifest, or a report is being written leaves the
previous file (or none), never half of the new one: `os.replace` within one directory is atomic
on POSIX file systems.
"""

import os
import uuid


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically (temporary file, fsync, rename): `write_bytes`."""
    write_bytes(path, text.encode())


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (temporary file, fsync, rename).

    The file gets the mode any new file of the process gets (0644 under umask 022), so that
    colleagues on a shared cluster can read reports, configs and exported weights: the temporary
    file is created with `open(..., "x")`, not `tempfile.mkstemp`, whose 0600 the rename would
    keep (as safetensors' own `save_file` does).
    """
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
