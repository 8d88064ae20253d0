"""Database images and dumps for the embedded store.

An *image* is a tgz of an Oxigraph store directory (one top-level folder); a
*dump* is gzip N-Quads of every data quad. The fleet's base-image builder calls
`pack_image` / `write_dump` on a store the agent has just rebuilt; the embedded
backend installs both with `unpack_image` / `load_dump` and `swap_in`.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pyoxigraph as ox

# The agent's bookkeeping lives in this graph of the embedded store (see
# dmsupdate.agent.embedded); it is agent state, not data, so dumps leave it out.
LEDGER_GRAPH = ox.NamedNode("urn:x-dms-update:ledger")
IMAGE_TOP = "store"
# Bounds of an image's content when unpacked (see unpack_limit): a store is a few thousand files.
IMAGE_MAX_MEMBERS = 100_000
IMAGE_MAX_RATIO = 20
IMAGE_MIN_UNPACKED = 1 << 30


class ImageError(Exception):
    """An image or dump cannot be packed or installed; the message says why."""


def pack_image(store_dir: str | os.PathLike[str], fileobj: BinaryIO) -> None:
    """Write a tgz of a closed Oxigraph store directory, the form the embedded backend installs.

    The store must not be open in any process while it is packed (RocksDB
    files change under an open store).
    """
    source = Path(store_dir)
    if not (source / "CURRENT").is_file():
        raise ImageError(f"{source} is not an Oxigraph store directory (no CURRENT file)")
    with tarfile.open(fileobj=fileobj, mode="w:gz", compresslevel=6) as tar:
        tar.add(str(source), arcname=IMAGE_TOP, recursive=True)


def write_dump(store: ox.Store | str | os.PathLike[str], fileobj: BinaryIO) -> int:
    """Write gzip N-Quads of all data quads (the agent's ledger graph excluded); return the count."""
    opened = store if isinstance(store, ox.Store) else ox.Store.read_only(str(store))
    count = 0

    def data_quads() -> Iterator[ox.Quad]:
        nonlocal count
        for quad in opened.quads_for_pattern(None, None, None, None):
            if quad.graph_name != LEDGER_GRAPH:
                count += 1
                yield quad

    with gzip.GzipFile(fileobj=fileobj, mode="wb", compresslevel=6) as out:
        ox.serialize(data_quads(), out, ox.RdfFormat.N_QUADS)  # type: ignore[arg-type]
    return count


def unpack_limit(compressed_size: int) -> int:
    """The most an image of `compressed_size` bytes may unpack to.

    RocksDB files compress a few times with gzip; a bomb compresses a
    thousandfold (3 MB of tgz held 3 GiB). Small images get a fixed floor.
    """
    return max(IMAGE_MIN_UNPACKED, IMAGE_MAX_RATIO * compressed_size)


def _member_parts(name: str) -> list[str]:
    """The path of a member below the target, as parts; ImageError for absolute names and `..`."""
    if name.startswith("/") or "\\" in name or "\x00" in name:
        raise ImageError(f"member {name!r}: absolute or unusual names are refused")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ImageError(f"member {name!r}: names with '..' are refused")
    return parts


def unpack_image(stream: BinaryIO, target: Path, max_bytes: int, max_members: int | None = None) -> Path:
    """Extract a streamed tgz into `target` (a new folder); return the directory holding the store.

    An Oxigraph store is regular files in folders, so nothing else is
    unpacked: links (hard or symbolic), devices and FIFOs are refused, as are
    absolute names and `..`, more than `max_members` members or more than
    `max_bytes` of content (counted as it is written). tarfile's own
    extraction is not used (its `data` filter can be bypassed, CVE-2025-4517);
    files are created new (O_EXCL, O_NOFOLLOW) in folders this function made.
    On any refusal or error, `target` is removed.
    """
    target.mkdir(parents=True)
    try:
        _extract(stream, target, max_bytes, IMAGE_MAX_MEMBERS if max_members is None else max_members)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    if (target / "CURRENT").is_file():
        return target
    children = [p for p in target.iterdir()]
    if len(children) == 1 and (children[0] / "CURRENT").is_file():
        return children[0]
    shutil.rmtree(target, ignore_errors=True)
    raise ImageError("the image holds no Oxigraph store (no CURRENT file at its top or in its one folder)")


def _extract(stream: BinaryIO, target: Path, max_bytes: int, max_members: int) -> None:
    written = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|gz") as tar:
            for n, member in enumerate(tar, 1):
                if n > max_members:
                    raise ImageError(f"the image holds more than {max_members} members; refused")
                parts = _member_parts(member.name)
                if member.isdir():
                    if parts:
                        target.joinpath(*parts).mkdir(mode=0o755, parents=True, exist_ok=True)
                    continue
                if not member.isreg() or not parts:
                    kind = "link" if member.islnk() or member.issym() else "special file"
                    raise ImageError(
                        f"member {member.name!r} is a {kind}; an image may hold only files and folders"
                    )
                path = target.joinpath(*parts)
                path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None  # a regular member always has content
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
                with os.fdopen(fd, "wb") as out:
                    while chunk := source.read(1 << 20):
                        written += len(chunk)
                        if written > max_bytes:
                            raise ImageError(f"the image unpacks to more than {max_bytes} bytes; refused")
                        out.write(chunk)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise ImageError(f"cannot unpack image: {exc}") from exc


def sibling(db_dir: Path, tag: str) -> Path:
    """A hidden working directory beside the database (same file system, so renames are atomic)."""
    return db_dir.with_name(f".{db_dir.name}.{tag}")


def recover_swap(db_dir: Path) -> None:
    """Finish or undo a swap that a crash interrupted, and remove leftovers.

    `swap_in` renames the database to `.old` and then the new one into place; a
    crash between the two leaves no database and an `.old`: put it back (the
    interrupted install will simply be redone).
    """
    old = sibling(db_dir, "old")
    if not db_dir.exists() and old.exists():
        os.rename(old, db_dir)
    for tag in ("old", "incoming"):
        shutil.rmtree(sibling(db_dir, tag), ignore_errors=True)


def swap_in(new_dir: Path, db_dir: Path) -> None:
    """Put a fully prepared store directory in place of the database."""
    old = sibling(db_dir, "old")
    shutil.rmtree(old, ignore_errors=True)
    db_dir.parent.mkdir(parents=True, exist_ok=True)
    if db_dir.exists():
        os.rename(db_dir, old)
    os.rename(new_dir, db_dir)
    _fsync_dir(db_dir.parent)
    shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
