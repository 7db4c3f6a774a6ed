"""One run per workdir: `<workdir>/run.lock`, a file that names the run holding it.

Two runs writing one workdir overwrite each other's checkpoints and interleave `metrics.jsonl`,
so a run takes the lock before it compiles or writes anything, and a second run refuses within
seconds, naming the holder (host, pid, start time). The lock is a complete file moved into place
with `os.link`, which fails when the name exists: of two runs starting at once exactly one gets
it, on any POSIX file system (NFS included).

A run that dies without releasing it (SIGKILL, a lost host) leaves a stale lock. On the host
that wrote it, a lock whose process is gone is taken over with a warning; the process start
time recorded beside the pid tells a reused pid from the holder. A lock of another host cannot
be checked from here: the run refuses and says which file to remove once that run is gone.
"""

import contextlib
import dataclasses
import datetime
import json
import os
import socket
import tempfile
from collections.abc import Iterator

import jax
from absl import logging

from stica_jax import distributed
from stica_jax.errors import WorkdirError

LOCK_FILE = "run.lock"


@dataclasses.dataclass(frozen=True)
class Holder:
    """Who holds a lock: enough to find the process, and to tell it from a reused pid."""

    host: str
    pid: int
    started: str  # local time the run started, ISO 8601 to the second
    process_start: int | None  # /proc/<pid>/stat start time (clock ticks after boot); Linux

    @classmethod
    def this_process(cls) -> "Holder":
        return cls(
            host=socket.gethostname(),
            pid=os.getpid(),
            started=datetime.datetime.now().isoformat(sep=" ", timespec="seconds"),
            process_start=_process_start(os.getpid()),
        )

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}, started {self.started}"

    def is_gone(self) -> bool:
        """True when this host wrote the lock and its process no longer runs."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # a process of another user holds the pid: it runs
        start = _process_start(self.pid)
        return None not in (start, self.process_start) and start != self.process_start


def _process_start(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as file:
            # Field 22; the command name (field 2) may hold spaces, so count after its ")".
            return int(file.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _read(path: str) -> Holder | None:
    """The holder named by the lock at `path`; None when there is no lock (any more)."""
    try:
        with open(path) as file:
            return Holder(**json.load(file))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as error:
        raise WorkdirError(
            f"{path} is not a lock file of stica_jax ({error}); if no run uses this workdir, "
            "remove it"
        ) from None


class WorkdirLock:
    """The lock of one workdir held by this process; `release()` (or `with`) gives it back."""

    def __init__(self, path: str, holder: Holder):
        self.path = path
        self.holder = holder

    def release(self) -> None:
        """Remove the lock file, if it still names this process."""
        try:
            if _read(self.path) == self.holder:
                os.remove(self.path)
        except (OSError, WorkdirError):
            pass  # someone else's now, or already gone

    def __enter__(self) -> "WorkdirLock":
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


@contextlib.contextmanager
def held(workdir: str) -> Iterator[WorkdirLock | None]:
    """The lock of `workdir` for the whole job, held by process 0 while the block runs.

    Every process raises `WorkdirError` when process 0 could not take it, so that no host of a
    refused job goes on alone. Yields the lock on process 0, None on the others.
    """
    lock, refusal = None, None
    if jax.process_index() == 0:
        try:
            lock = acquire(workdir)
        except WorkdirError as error:
            refusal = error
    if not distributed.all_processes_agree(refusal is None):
        raise refusal or WorkdirError(f"{workdir} is in use by another run (see process 0)")
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()


def acquire(workdir: str) -> WorkdirLock:
    """Lock `workdir` for this process (the directory is created if needed).

    Raises:
      WorkdirError: another run holds the lock; the message names it (host, pid, start time).
    """
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, LOCK_FILE)
    me = Holder.this_process()
    for _ in range(10):  # each pass ends with the lock, a refusal, or a lost race to retry
        if _link_new_lock(path, me):
            return WorkdirLock(path, me)
        holder = _read(path)
        if holder is None:
            continue  # released between our attempt and the read
        if not holder.is_gone():
            hint = (
                "wait for it to finish, or use another --workdir"
                if holder.host == me.host
                else f"if that run is gone, remove {path}"
            )
            raise WorkdirError(f"{workdir} is in use by another run ({holder.describe()}); {hint}")
        if _set_aside(path, holder):
            logging.warning(
                "taking over the lock of %s: that run (%s) is gone", workdir, holder.describe()
            )
    raise WorkdirError(f"could not lock {workdir}: other runs keep taking it ({path})")


def _link_new_lock(path: str, holder: Holder) -> bool:
    """Create the lock naming `holder`, complete, if none exists; False when one does."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{LOCK_FILE}.")
    try:
        with os.fdopen(fd, "w") as file:
            json.dump(dataclasses.asdict(holder), file)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.remove(tmp)


def _set_aside(path: str, stale: Holder) -> bool:
    """Remove the stale lock of `stale`; False when another run changed the lock meanwhile.

    The rename to a name of our own succeeds for exactly one of several runs that found the
    same stale lock; what was renamed is checked, and restored if it was another run's new lock.
    """
    aside = f"{path}.stale-{os.getpid()}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    if _read(aside) == stale:
        os.remove(aside)
        return True
    try:
        os.link(aside, path)  # a live lock taken meanwhile: put it back
    except FileExistsError:
        pass
    os.remove(aside)
    return False
