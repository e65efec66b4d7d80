"""Files from and for users: regular files only, bounded reads, locked and atomic writes.

Reading: a path that is a FIFO would block ``open()`` forever and a device
(``/dev/zero``) never ends, so inputs are opened non-blocking, checked with
``fstat`` to be regular files (what a symlink points at counts), and read
only up to a size the caller bounds. Writing: a target that exists must be a
regular file (else ``os.replace`` would swap a device node for a file), a
target is written by one process at a time (an exclusive ``flock`` on a
lock file beside it), and the temporary files a killed writer left beside
the same target are removed before the next write.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import stat
from pathlib import Path

from fastmlp.errors import error_at


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def kind(mode: int) -> str:
    """'a directory', 'a FIFO (named pipe)', ... for a non-regular ``st_mode``."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def os_problem(exc: OSError, verb: str = "read") -> str:
    """The words for an OSError from opening or reading a user's path."""
    if exc.errno == errno.ENOENT:
        return "no such file (not found)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ELOOP:
        return "too many levels of symbolic links (a symlink loop?)"
    return f"cannot {verb} ({exc.strerror or exc})"


def open_regular(path, what: str = "file"):
    """(binary file, size in bytes) for a regular file at ``path``, never blocking.

    O_NONBLOCK makes opening a FIFO return at once (fstat then refuses it);
    it is cleared again before reading, which it does not affect for regular
    files anyway.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise error_at(path, os_problem(exc)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error_at(path, f"is {kind(info.st_mode)}, not a {what}")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb"), info.st_size
    except BaseException:
        os.close(fd)
        raise


def read_regular(path, limit: int, what: str = "file") -> bytes:
    """The bytes of the regular file ``path``, refused if it holds more than ``limit``."""
    f, size = open_regular(path, what)
    with f:
        if size > limit:
            raise error_at(path, f"is {size} bytes, larger than the {limit} bytes a {what} may have")
        try:
            # size + 1, not limit + 1: read() allocates what it is asked for
            # up front. The +1 catches a file that grew since fstat.
            data = f.read(size + 1)
        except OSError as exc:
            raise error_at(path, os_problem(exc)) from None
    if len(data) > size:
        raise error_at(path, f"grew while being read (from {size} bytes); read it again when it is complete")
    return data


def read_into_buffer(stream, nbytes: int) -> bytearray:
    """Up to ``nbytes`` of ``stream`` in one writable buffer, fewer only if it
    ends first; memory is the buffer alone (no joined chunks). Exceptions of
    the stream (gzip, zip) are the caller's to word."""
    buffer = bytearray(nbytes)
    with memoryview(buffer) as view:
        got = 0
        while got < nbytes:
            n = stream.readinto(view[got:])
            if not n:
                break
            got += n
    del buffer[got:]
    return buffer


def check_output(path, flag: str) -> None:
    """Refuse an output ``path`` that exists and is not a regular file (a device,
    FIFO, directory, socket): writing there would replace or block on it."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise error_at(f"{flag} {path}", os_problem(exc, "check it")) from None
    if not stat.S_ISREG(info.st_mode):
        raise error_at(f"{flag} {path}", f"is {kind(info.st_mode)}; fastmlp only writes regular files")


def temp_name(path: Path) -> Path:
    """A fresh temporary name beside ``path``: ``.NAME.<16 hex>.tmp``."""
    return path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")


def stale_temps(path: Path) -> list:
    """The temporary files ``temp_name`` made for ``path`` (exactly that
    target: ``.m.npz.*`` never matches a target named ``m``)."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{16}}\.tmp")
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    return [path.with_name(name) for name in names if pattern.fullmatch(name)]


def _lock_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


_held: dict = {}  # resolved target -> (lock file descriptor, depth) held by this process


@contextlib.contextmanager
def target_lock(path, flag: str = "output"):
    """Hold an exclusive lock on writing ``path`` (re-entrant in a process).

    A second process that asks for the same target fails at once with a
    one-line error instead of both writing and the last silently winning.
    Under the lock, temporary files a killed writer left for ``path`` are
    removed: no other writer can be using them. The lock file
    ``.NAME.lock`` is removed on release.
    """
    # One name per target however it is reached (a symlinked directory, "./"):
    # the lock and the temporary files live beside the real file.
    path = Path(os.path.realpath(Path(path).parent)) / Path(path).name
    key = str(path)
    if key in _held:
        fd, depth = _held[key]
        _held[key] = (fd, depth + 1)
        try:
            yield
        finally:
            _held[key] = (fd, _held[key][1] - 1)
        return
    fd = _acquire(path, flag)
    _held[key] = (fd, 1)
    try:
        for stale in stale_temps(path):
            stale.unlink(missing_ok=True)
        yield
    finally:
        del _held[key]
        _lock_name(path).unlink(missing_ok=True)  # while still locked: no one else holds it
        os.close(fd)


def _acquire(path: Path, flag: str) -> int:
    lock = _lock_name(path)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise error_at(f"{flag} {path}", f"cannot lock for writing ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise error_at(f"{flag} {path}", "another fastmlp process is writing this file; "
                               "wait for it to finish or choose another path") from None
            raise error_at(f"{flag} {path}", f"cannot lock for writing ({exc.strerror or exc})") from None
        # The holder we waited for may have removed the lock file after we
        # opened it; a lock on a removed file guards nothing, so try again.
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
