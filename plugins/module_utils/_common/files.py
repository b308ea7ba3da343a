# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# NOTE: THIS IS PRIVATE TO THE virtops.migration COLLECTION. It may change or
# disappear without notice; do not import it from other collections.

"""Files the modules write for operators (reports, progress, plans): whole or not at all, and kept per run."""

from __future__ import annotations

import os
import tempfile
import time

FILE_MODE = 0o640
DIR_MODE = 0o750


def write_atomic(path: str, text: str, mode: int = FILE_MODE) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (readers never see half a file)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def run_file_path(path: str, run_id: str, default_stem: str, extension: str) -> str:
    """Where one run's copy of a kept file goes (never a path an earlier run wrote).

    ``path`` a directory (existing, or ending with ``/``): ``DIR/<default_stem>-<run_id><extension>``;
    else the run id inserted before the extension: ``/var/log/virtops/evacuate-hv1.txt`` becomes
    ``/var/log/virtops/evacuate-hv1-<run_id>.txt``.
    """
    if path.endswith(os.sep) or os.path.isdir(path):
        return os.path.join(path, f"{default_stem}-{run_id}{extension}")
    stem, suffix = os.path.splitext(path)
    return f"{stem}-{run_id}{suffix}"


def point_link_at(link: str, target: str) -> None:
    """Make ``link`` a symbolic link to ``target`` (relative, atomically replaced).

    A regular file already at ``link`` (written before runs were kept apart) is kept: it is renamed
    with its modification time inserted, like a run's own file.
    """
    if os.path.isfile(link) and not os.path.islink(link):
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(os.path.getmtime(link)))
        os.replace(link, run_file_path(link, f"before-{stamp}", "", ""))
    temporary = f"{link}.{os.getpid()}.link"
    os.symlink(os.path.relpath(target, os.path.dirname(os.path.abspath(link))), temporary)
    try:
        os.replace(temporary, link)
    except OSError:
        os.unlink(temporary)
        raise


def write_kept(path: str, text: str, run_id: str, default_stem: str, extension: str,
               mode: int = FILE_MODE) -> str:
    """Write one run's file (``run_file_path``) and return its path; a file ``path`` then links to it (the latest)."""
    own = run_file_path(path, run_id, default_stem, extension)
    write_atomic(own, text, mode)
    if own != os.path.join(path, os.path.basename(own)):
        point_link_at(path, own)
    return own
