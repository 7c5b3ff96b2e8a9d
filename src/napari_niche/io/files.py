"""Safe writing: a lock per output folder, atomic files and folder swaps.

Never a half-written result, whatever stops the run.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_niche.core.errors import NicheError

if TYPE_CHECKING:
    import pandas as pd

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None

# --------------------------------------------------------------------------- safe writing
#
# What a killed, interrupted, concurrent or full-disk run leaves behind (README): every file
# is written to a hidden temporary file in its own folder and renamed over its name once
# complete; a result folder is written whole in a hidden staging folder and swapped in; a
# folder being written is locked. Hidden names carry the writer's process id, so the next
# run removes what a dead process left (and only that).

#: Number format of every CSV written: 9 significant digits round-trip the float32
#: distances exactly, so statistics recomputed from the CSVs match the reported ones.
CSV_FLOAT_FORMAT = "%.9g"
#: The lock file of an output folder being written (removed when the writer ends).
LOCK_NAME = ".napari-niche.lock"
_LEFTOVER = re.compile(
    r"^\.(?:(?P<name>.+?)\.)?(?P<kind>staging|old|tmp)-(?P<pid>\d+)-[0-9a-f]{8}(?:\..*)?$"
)

#: errno values of a folder that cannot be renamed or is on another file system: the
#: result is then swapped file by file inside the folder.
_NO_FOLDER_SWAP = {errno.EXDEV, errno.EBUSY, errno.EPERM, errno.EACCES, errno.EINVAL}
_held: dict[tuple[int, str], list] = {}  # (thread, folder) -> [count, [(fd, lock path)]]
_held_guard = threading.Lock()


class OutputFolderError(NicheError, OSError):
    """The output folder cannot be used: it is a file, read-only, or not allowed.

    Also an ``OSError``, so code written for the file system's own errors still catches it.
    """


class OutputBusyError(OutputFolderError):
    """Another napari-niche process is writing the same output folder."""


def _hidden(kind: str, name: str = "", suffix: str = "") -> str:
    """``.<name>.<kind>-<pid>-<random><suffix>``: hidden, and telling who wrote it."""
    prefix = f".{name}." if name else "."
    return f"{prefix}{kind}-{os.getpid()}-{os.urandom(4).hex()}{suffix}"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # Windows' os.kill would end the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process, or unknown: leave its files alone
    try:  # a zombie (dead, not yet reaped) writes nothing any more
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM for the few renames that must happen together.

    Only in the main thread (where Python runs signal handlers); a signal that arrives
    meanwhile is acted on as soon as the block ends.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if handler is None:  # set outside Python: cannot be restored
            continue
        previous[sig] = handler
        signal.signal(sig, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in caught:
            handler = previous[sig]
            if callable(handler):
                handler(sig, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), sig)


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a directory
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``path``, renamed to it when the block succeeds.

    Write the file to the yielded path (it keeps ``path``'s suffix, for writers that choose
    the format by it). On any error or interruption it is removed and ``path`` is left as it
    was, so no truncated table, figure or report is ever found under a real name.

    Parameters
    ----------
    path : str or Path
        The file to write.

    Yields
    ------
    Path
        The temporary file to write instead.
    """
    path = Path(path)
    tmp = path.with_name(_hidden("tmp", path.name, path.suffix))
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        with suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError) and err.errno is not None and not err.filename:
            err.filename = str(path)  # name the file a write failed on (a full disk)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file (:func:`atomic_path`).

    Parameters
    ----------
    path : str or Path
        The file to write.
    text : str
        Its whole content.

    Returns
    -------
    Path
        ``path``.
    """
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def os_error_text(err: OSError) -> str:
    """Say an ``OSError`` as a sentence: what went wrong, with which file, and what to do.

    Parameters
    ----------
    err : OSError
        The error, e.g. of a full disk.

    Returns
    -------
    str
        One line for the terminal or a notification.
    """
    where = f" ({err.filename})" if err.filename else ""
    text = f"{err.strerror or err}{where}"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        text += ": the disk is full; free some space and run again"
    return text


def _folder_problem(folder: Path, err: OSError) -> str:
    if isinstance(err, FileExistsError | NotADirectoryError):
        paths = [folder, *folder.parents]
        blocker = next(
            (p for p in paths if (p.exists() or p.is_symlink()) and not p.is_dir()), folder
        )
        if blocker.is_symlink() and not blocker.exists():
            return (
                f"cannot write in {folder}: {blocker} is a link to {os.readlink(blocker)}, "
                "which does not exist; make that folder or give another."
            )
        what = "a file" if blocker.is_file() or not blocker.exists() else "a special file"
        if blocker == folder:
            return f"cannot write in {folder}: it is {what}, not a folder; give a folder."
        return f"cannot write in {folder}: {blocker} is {what}, not a folder."
    reason = {
        errno.EROFS: "it is on a read-only file system",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
    }.get(err.errno, err.strerror or str(err))
    return f"cannot write in {folder}: {reason}; give a folder you can write to."


def _make_folder(folder: Path) -> bool:
    """Create ``folder`` (True) or check it is one (False); raise one clear error if not."""
    try:
        if folder.is_dir():
            return False
        folder.mkdir(parents=True)
        return True
    except FileExistsError as err:
        if folder.is_dir():  # made meanwhile by another process
            return False
        raise OutputFolderError(_folder_problem(folder, err)) from None
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise  # the disk is full: not a bad folder
        raise OutputFolderError(_folder_problem(folder, err)) from None


def _take_lock(folder: Path) -> int:
    """Lock ``folder/LOCK_NAME`` for this process at once, or raise OutputBusyError."""
    path = folder / LOCK_NAME
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise OutputFolderError(_folder_problem(folder, err)) from None
        if fcntl is None:  # no flock (Windows): unlocked, as before
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                owner = os.read(fd, 32).decode(errors="replace").strip()
            finally:
                os.close(fd)
            who = f" (process {owner})" if owner.isdigit() else ""
            raise OutputBusyError(
                f"{folder} is being written by another napari-niche run{who}: wait until it "
                "has finished, or give another output folder."
            ) from None
        try:
            same = _same_file(os.fstat(fd), os.stat(path))
        except OSError:
            same = False
        if same:  # not a lock file its owner removed just before we locked it
            with suppress(OSError):  # who holds it, for the refusal message (a full disk?)
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _release_lock(fd: int, path: Path) -> None:
    with suppress(OSError):
        if _same_file(os.fstat(fd), os.stat(path)):
            path.unlink()
    os.close(fd)


@contextmanager
def output_lock(folder: str | Path) -> Iterator[Path]:
    """Hold ``folder`` (created if needed) for this process; refuse at once if another has it.

    An exclusive ``flock`` on ``folder/.napari-niche.lock`` (the file holds the owner's
    process id): the system releases it when the process ends however it ends, so a killed
    run never leaves a stale lock. Re-entrant within one thread. A folder this call created
    and left empty is removed again, so a refused or failed command leaves nothing behind.

    Parameters
    ----------
    folder : str or Path
        The output folder.

    Yields
    ------
    Path
        ``folder``, held until the block ends.

    Raises
    ------
    OutputFolderError
        ``folder`` is a file, on a read-only file system or not writable.
    OutputBusyError
        Another process holds the folder.
    """
    folder = Path(folder)
    _refuse_inside_a_busy_folder(folder)
    created = _make_folder(folder)
    key = (threading.get_ident(), os.path.realpath(folder))
    with _held_guard:
        entry = _held.get(key)
        if entry is not None:
            entry[0] += 1
    if entry is None:
        entry = [1, [(_take_lock(folder), folder / LOCK_NAME)]]
        with _held_guard:
            _held[key] = entry
    try:
        yield folder
    finally:
        with _held_guard:
            entry[0] -= 1
            last = entry[0] == 0
            if last:
                del _held[key]
        if last:
            for fd, path in reversed(entry[1]):
                _release_lock(fd, path)
            if created:
                with suppress(OSError):
                    folder.rmdir()  # only if empty


#: Folders whose lock this process may write inside although another process holds it:
#: the output folder of the run whose images a worker process writes.
_INSIDE_ALLOWED: set[str] = set()


@contextmanager
def writing_inside(folder: str | Path) -> Iterator[None]:
    """Let this process write below ``folder`` while its run (another process) holds it.

    Parameters
    ----------
    folder : str or Path
        The run's output folder, locked by the process that started this one.

    Yields
    ------
    None
    """
    key = os.path.realpath(folder)
    _INSIDE_ALLOWED.add(key)
    try:
        yield
    finally:
        _INSIDE_ALLOWED.discard(key)


def _refuse_inside_a_busy_folder(folder: Path) -> None:
    """Raise OutputBusyError if a folder above ``folder`` is locked by another process.

    ``analyze --out results/images/m1`` while ``run`` writes ``results`` would swap its
    tables in under the run's record of that image, and the run would pool them.
    """
    if fcntl is None:
        return
    with _held_guard:
        mine = {real for _thread, real in _held} | _INSIDE_ALLOWED
    for parent in Path(os.path.realpath(folder)).parents:
        if str(parent) in mine:
            continue
        try:
            fd = os.open(parent / LOCK_NAME, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            owner = os.read(fd, 32).decode(errors="replace").strip()
            who = f" (process {owner})" if owner.isdigit() else ""
            raise OutputBusyError(
                f"{folder} is inside {parent}, which is being written by another "
                f"napari-niche run{who}: wait until it has finished, or give a folder "
                "outside it."
            ) from None
        finally:
            os.close(fd)


def _lock_also(folder: Path, new: Path) -> None:
    """Lock ``new`` (a staging folder about to become ``folder``) with ``folder``'s lock."""
    entry = _held.get((threading.get_ident(), os.path.realpath(folder)))
    if entry is not None:
        entry[1].append((_take_lock(new), folder / LOCK_NAME))


def remove_leftovers(folder: str | Path, *, name: str | None = None) -> None:
    """Remove the staging folders and temporary files dead processes left in ``folder``.

    Only hidden entries named by :func:`_hidden` whose process has ended are touched (``name``
    limits it to those of one target). An old result set aside by a process killed before
    it put the new one in place is put back when nothing took its place: an earlier result
    is never lost.

    Parameters
    ----------
    folder : str or Path
        The folder to tidy (a missing one is left alone).
    name : str, optional
        Only leftovers of the target ``folder / name``.
    """
    folder = Path(folder)
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        match = _LEFTOVER.match(entry.name)
        is_dir = entry.is_dir(follow_symlinks=False)
        if match is None:
            continue
        if (name is not None and match["name"] != name) or _pid_alive(int(match["pid"])):
            continue
        path = Path(entry.path)
        target = folder / match["name"] if match["name"] else None
        if match["kind"] == "old" and target is not None and not os.path.lexists(target):
            with suppress(OSError):
                os.rename(path, target)
            continue  # put back, or kept: never removed while it is the only copy
        if is_dir:
            shutil.rmtree(path, ignore_errors=True)
        else:
            with suppress(OSError):
                path.unlink()


def _staging_folder(out_dir: Path) -> Path:
    """Make a hidden staging folder on ``out_dir``'s own file system.

    Beside ``out_dir`` when it can be swapped in there, else inside it (a mount point, a
    symbolic link, a parent on another file system or not writable).
    """
    parent = out_dir.parent
    beside = False
    with suppress(OSError):
        beside = (
            not out_dir.is_symlink()
            and not os.path.ismount(out_dir)
            and os.stat(parent).st_dev == os.stat(out_dir).st_dev
            and os.access(parent, os.W_OK)
        )
    where = parent / _hidden("staging", out_dir.name) if beside else out_dir / _hidden("staging")
    try:
        where.mkdir()
    except OSError:
        if not beside:
            raise
        where = out_dir / _hidden("staging")
        where.mkdir()
    return where


def _fsync_tree(folder: Path) -> None:
    for root, _dirs, files in os.walk(folder):
        for name in files:
            _fsync(Path(root) / name)
        _fsync(Path(root))


def _swap_whole(staging: Path, out_dir: Path) -> bool:
    """Replace ``out_dir`` by ``staging`` with two renames; False if it cannot be renamed."""
    aside = out_dir.parent / _hidden("old", out_dir.name)
    with signals_deferred():
        try:
            os.rename(out_dir, aside)
        except OSError as err:
            if err.errno in _NO_FOLDER_SWAP:
                return False
            raise
        try:
            os.rename(staging, out_dir)
        except BaseException:
            os.rename(aside, out_dir)
            raise
    _fsync(out_dir.parent)
    shutil.rmtree(aside, ignore_errors=True)
    return True


def _swap_contents(staging: Path, out_dir: Path, commit: str) -> None:
    """Move the staged files over their namesakes in ``out_dir``, ``commit`` out first.

    ``commit`` is taken out first and put in last: the folder holds a ``commit`` file only
    beside a whole result.
    """
    if staging.parent != out_dir:
        inner = out_dir / _hidden("staging")
        try:
            os.rename(staging, inner)
        except OSError as err:
            if err.errno != errno.EXDEV:
                raise
            shutil.copytree(staging, inner)
            _fsync_tree(inner)
        staging = inner
    try:
        names = sorted(p.name for p in staging.iterdir() if p.name != LOCK_NAME)
        order = [n for n in names if n != commit] + ([commit] if commit in names else [])
        aside = out_dir / _hidden("old")
        aside.mkdir()
        with signals_deferred():
            if commit in names and (out_dir / commit).exists():
                os.replace(out_dir / commit, aside / commit)
            for name in order:
                target = out_dir / name
                if target.is_dir() and not target.is_symlink():
                    os.rename(target, aside / name)
                os.replace(staging / name, target)
        _fsync(out_dir)
        shutil.rmtree(aside, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _remove_if_empty(folder: Path) -> None:
    with suppress(OSError):
        folder.rmdir()  # fails, as it should, unless the folder is empty


def write_atomically(
    out_dir: str | Path,
    write: Callable[[Path], None],
    *,
    commit: str = "params.json",
    lock: bool = False,
) -> Path:
    """Call ``write(folder)`` on a staging folder, then put the result in ``out_dir`` whole.

    When ``out_dir`` is new or holds only an earlier result of the same files, it is
    replaced as a whole (renamed aside, the staging folder renamed in, the old one
    removed), so a reader or a killed process never sees new files beside old ones. When
    it holds other files too (a run's masks beside an image's tables) or cannot be renamed
    (a mount point), the staged files replace their namesakes one by one, ``commit``
    (``params.json``) removed first and put back last. Staging is on ``out_dir``'s own file
    system; a failure or interruption before the swap leaves ``out_dir`` as it was. With
    ``lock`` the folder is held (:func:`output_lock`) while it is written.

    Parameters
    ----------
    out_dir : str or Path
        The result folder (created if needed).
    write : callable
        ``write(staging)`` writes every file of the result into the folder it is given.
    commit : str
        The file that marks a whole result; default ``params.json``.
    lock : bool
        Hold ``out_dir`` against other processes while it is written.

    Returns
    -------
    Path
        The absolute path of ``out_dir``.

    Raises
    ------
    OutputFolderError
        ``out_dir`` cannot be written (a file, read-only).
    OutputBusyError
        With ``lock``, another process is writing ``out_dir``.
    """
    out_dir = Path(os.path.abspath(out_dir))
    remove_leftovers(out_dir.parent, name=out_dir.name)  # and put back a lost old result
    with ExitStack() as stack:
        if lock:
            stack.enter_context(output_lock(out_dir))
        elif _make_folder(out_dir):  # made here: a failed write leaves no empty folder
            stack.callback(_remove_if_empty, out_dir)
        remove_leftovers(out_dir)
        staging = _staging_folder(out_dir)
        try:
            if lock:
                _lock_also(out_dir, staging)
            write(staging)
            _fsync_tree(staging)
            new = {p.name for p in staging.iterdir()}
            present = {
                p.name
                for p in out_dir.iterdir()
                if p.name != LOCK_NAME and not _LEFTOVER.match(p.name)
            }
            whole = staging.parent == out_dir.parent and present <= new
            if not (whole and _swap_whole(staging, out_dir)):
                _swap_contents(staging, out_dir, commit)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return out_dir


# --------------------------------------------------------------------------- result folders


def write_json(
    path: str | Path, value: Any, *, default: Callable[[Any], Any] | None = None
) -> Path:
    """Write ``value`` as the project's JSON files are written: indented by 2, a final newline.

    Parameters
    ----------
    path : str or Path
        The file to write (as is: no temporary file; stage it, e.g. in :func:`write_tables`).
    value : object
        Plain JSON types (see ``default``).
    default : callable, optional
        Turns what JSON cannot hold into what it can (``json.dumps``' ``default``).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    path.write_text(json.dumps(value, indent=2, default=default) + "\n")
    return path


def write_tables(
    folder: str | Path,
    tables: Mapping[str, pd.DataFrame],
    *,
    record: Any = None,
    record_name: str = "params.json",
    json_default: Callable[[Any], Any] | None = None,
    also: Callable[[Path], None] | None = None,
    lock: bool = False,
) -> Path:
    """Write a result folder: tables as CSV, other files, and the record last, all at once.

    The one writer of "tables + ``params.json``": every table without its index and with
    :data:`CSV_FLOAT_FORMAT`, the record with :func:`write_json`, all into a staging folder
    swapped in whole by :func:`write_atomically` (the record is the ``commit`` file), so a
    reader never finds new tables beside an old record, nor half a result.

    Parameters
    ----------
    folder : str or Path
        The result folder (created if needed).
    tables : mapping of file name -> DataFrame
        E.g. ``{"cells.csv": cells}``; may be empty.
    record : object, optional
        What produced the tables (parameters, versions, warnings), written as JSON to
        ``record_name``; None writes no record.
    record_name : str
        File name of the record; default ``params.json``.
    json_default : callable, optional
        ``json.dumps``' ``default`` for the record (e.g. ``str``).
    also : callable, optional
        ``also(staging)`` writes any other file (figures, images, arrays) into the staging
        folder, after the tables and before the record.
    lock : bool
        Hold ``folder`` against other processes while it is written (:func:`output_lock`).

    Returns
    -------
    Path
        The absolute path of ``folder``.

    Raises
    ------
    OutputFolderError
        ``folder`` cannot be written (a file, read-only).
    OutputBusyError
        With ``lock``, another process is writing ``folder``.
    """

    def write(staging: Path) -> None:
        for name, table in tables.items():
            table.to_csv(staging / name, index=False, float_format=CSV_FLOAT_FORMAT)
        if also is not None:
            also(staging)
        if record is not None:
            write_json(staging / record_name, record, default=json_default)

    return write_atomically(folder, write, commit=record_name, lock=lock)
