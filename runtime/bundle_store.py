"""Writing bundles to disk: never delete what we did not create, replace atomically, survive a kill at any point.

    <parent>/.<name>.partial-XXXX   being built; its builder holds a flock on it until it is installed or removed
    <parent>/.<name>.old-XXXX       the previous bundle, renamed aside during the swap, removed right after
    <parent>/<name>                 the installed bundle

A directory counts as one of our bundles only when it holds nothing but BUNDLE_FILES and its bundle.json decodes:
anything else at the target (a project folder, the folder of the source GGUF, a file, a symlink) is refused, never
deleted. The swap is two renames under a flock on the parent directory; a kill between them leaves a complete
partial and the old bundle, and `recover` (run before every install and on every lookup) puts the newest complete
one back in place. A partial whose flock nobody holds was left by a dead process and is removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from .bundle import read_meta
from .errors import ModelError

BUNDLE_FILES = frozenset({"bundle.json", "model.onnx", "model.onnx.data", "tokenizer.json"})


def is_our_bundle(path: Path) -> bool:
    """True for a directory we wrote: only bundle files in it, and a bundle.json that decodes."""
    try:
        if path.is_symlink() or not path.is_dir() or not set(os.listdir(path)) <= BUNDLE_FILES:
            return False
        read_meta(path)
        return True
    except (OSError, ModelError):
        return False


def check_target(out_dir: Path) -> None:
    """Refuse, with one line, any target whose replacement could lose something that is not ours."""
    if out_dir.is_symlink():
        raise ModelError(f"{out_dir} is a symbolic link: give a plain directory for the bundle")
    if out_dir.exists() and not out_dir.is_dir():
        raise ModelError(f"{out_dir} is a file, not a directory: give a new or empty directory for the bundle")
    try:
        empty = out_dir.is_dir() and not os.listdir(out_dir)
    except OSError as exc:
        raise ModelError(f"cannot read {out_dir}: {exc.strerror}") from None
    if out_dir.is_dir() and not empty and not is_our_bundle(out_dir):
        raise ModelError(f"{out_dir} is not empty and is not a waferline bundle: refusing to replace it "
                         "(give a new or empty directory)")


def _remove_ours(path: Path) -> None:
    """Delete a partial/old directory we created: only bundle files, then the directory (anything else stays)."""
    for name in BUNDLE_FILES:
        with contextlib.suppress(FileNotFoundError):
            (path / name).unlink()
    with contextlib.suppress(OSError):
        path.rmdir()


@contextlib.contextmanager
def _flock(path: Path, blocking: bool = True) -> Iterator[bool]:
    """flock on a directory's own descriptor: no lock files left in the user's folders; released by the kernel
    when the holder dies, which is how a stale partial is told from one still being built."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _leftovers(out_dir: Path, kind: str) -> list[Path]:
    """Our partial/old directories for out_dir, newest first."""
    prefix = f".{out_dir.name}.{kind}-"
    found = []
    for name in os.listdir(out_dir.parent):
        with contextlib.suppress(OSError):
            if name.startswith(prefix):
                found.append((os.stat(out_dir.parent / name).st_mtime, out_dir.parent / name))
    return [path for _, path in sorted(found, reverse=True)]


def _complete(path: Path) -> bool:
    return is_our_bundle(path) and all((path / name).is_file() for name in ("model.onnx", "tokenizer.json"))


def _recover_locked(out_dir: Path) -> None:
    """With the parent locked: finish an interrupted swap, then drop what dead builders left behind."""
    stale = []
    for partial in _leftovers(out_dir, "partial"):
        with _flock(partial, blocking=False) as free:
            if free:
                stale.append(partial)
    olds = _leftovers(out_dir, "old")
    if not out_dir.exists():
        complete = [p for p in stale + olds if _complete(p)]
        if complete:
            os.rename(complete[0], out_dir)
    for leftover in stale + olds:
        if leftover.exists():
            _remove_ours(leftover)


def recover(out_dir: str | os.PathLike) -> None:
    """Repair the state a kill during install may have left at out_dir (cheap when there is nothing to do)."""
    out_dir = Path(os.path.abspath(out_dir))
    if not out_dir.parent.is_dir() or not (_leftovers(out_dir, "partial") or _leftovers(out_dir, "old")):
        return
    with _flock(out_dir.parent):
        _recover_locked(out_dir)


def install(out_dir: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Build a bundle with write(tmp_dir) beside out_dir, then swap it in atomically. Returns out_dir."""
    out_dir = Path(os.path.abspath(out_dir))
    check_target(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"cannot create {out_dir.parent}: {exc.strerror}") from None
    with contextlib.ExitStack() as building:
        # The partial is created and locked under the parent's lock, where every recover runs: a concurrent install
        # never sees it unlocked (as a dead builder's) between mkdtemp and its flock, and removes it.
        with _flock(out_dir.parent):
            _recover_locked(out_dir)
            try:
                tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
            except OSError as exc:
                raise ModelError(f"cannot write in {out_dir.parent}: {exc.strerror}") from None
            building.enter_context(_flock(tmp))
        try:
            write(tmp)
            with _flock(out_dir.parent):
                check_target(out_dir)  # again: another process may have put something there meanwhile
                if out_dir.exists():
                    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
                    os.rename(out_dir, old)  # replaces the empty placeholder mkdtemp made
                    os.rename(tmp, out_dir)
                    _remove_ours(old)
                else:
                    os.rename(tmp, out_dir)
        except BaseException:
            if tmp.exists():
                _remove_ours(tmp)
            raise
    return out_dir
