"""Where the servers keep their data, private to them: no other local user lists, reads or traverses it.

Every server's directory under the run dir is 0700 and belongs to the user the server runs as (root, or
the package's own ``postgres`` / ``mosquitto``); the run dir itself is 0711 — not listable, and only
traversable so that those users reach their own directory inside it. Servers start under umask 077
(:data:`SERVER_UMASK`, :func:`apt_energy.stack.process.spawn`), and what an older apt-energy left wider
(Kafka's 0644 segments and metadata log, logs, PIDs) is narrowed at each start by :func:`narrow_tree`.
"""

from __future__ import annotations

import logging
import os
import pwd
import stat
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["SERVER_UMASK", "narrow_tree", "private_dir", "reachable_by", "unix_user"]

SERVER_UMASK = 0o077


def unix_user(name: str) -> pwd.struct_passwd | None:
    """The local user ``name``, or None when it does not exist."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def private_dir(path: Path, *, owner: str | None = None, traversable: bool = False) -> Path:
    """Create ``path`` (and parents) and make it 0700 (0711 with ``traversable``: others may pass
    through to a directory of their own inside, never list it), owned by ``owner`` when root."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o711 if traversable else 0o700)
    if owner is not None and os.geteuid() == 0:
        user = unix_user(owner)
        if user is not None:
            os.chown(path, user.pw_uid, user.pw_gid)
    return path


def narrow_tree(root: Path, *, owner: str | None = None, keep: tuple[Path, ...] = ()) -> int:
    """Take group and other bits off everything under ``root`` (not following symlinks); with ``owner``
    (as root) hand it over to that user too, except the paths in ``keep``. Returns how many entries
    changed."""
    user = unix_user(owner) if owner is not None and os.geteuid() == 0 else None
    changed = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            if path in keep:
                continue
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                continue
            if st.st_mode & 0o077:
                path.chmod(stat.S_IMODE(st.st_mode) & 0o700)
                changed += 1
            if user is not None and (st.st_uid, st.st_gid) != (user.pw_uid, user.pw_gid):
                os.chown(path, user.pw_uid, user.pw_gid)
    if changed:
        logger.info("narrowed entries=%d under %s to their owner only", changed, root)
    return changed


def reachable_by(user: pwd.struct_passwd, path: Path) -> bool:
    """Whether ``user`` may traverse every directory from ``/`` down to ``path`` (others' or its group's
    x bit, or its own directory)."""
    for part in [path, *path.parents]:
        try:
            st = part.stat()
        except OSError:
            continue  # not made yet: made by us, traversable where it must be
        if st.st_uid == user.pw_uid:
            continue
        if not (st.st_mode & 0o001 or (st.st_gid == user.pw_gid and st.st_mode & 0o010)):
            return False
    return True
