"""Row-chunked zarr v3 arrays on local folders and fsspec URLs: what the activation store is built on.

- :func:`open_location` opens a store by local path or URL (``memory://``, ``file://``, ``s3://`` with
  ``s3fs``, ``gs://`` with ``gcsfs``); a local path or ``file://`` URL is zarr's ``LocalStore``, anything else
  its ``FsspecStore``.
- :func:`create_rows_array` makes an array [n_rows, *row_shape] chunked by rows only, every chunk followed by
  a CRC32C checksum (a flipped byte is an error when read, never a silently wrong number), uncompressed
  (float16 activations barely compress, and an uncompressed chunk has one exact size to check), and with
  every chunk written even when it equals the fill value (a missing chunk always means missing data).
- :func:`check_chunks` lists an array's chunk objects and checks each one's size and which ones exist.
- :class:`ChunkedRows` reads rows of such an array as numpy (slices, index arrays, masks) through a small
  cache of decoded chunks, so reading a store sentence by sentence costs one chunk read per chunk.

A chunk is only ever written whole by one process: the store's writers give each chunk to one rank.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CHECKSUM_BYTES = 4  # the CRC32C codec appends 4 bytes to every chunk


class StoreError(ValueError):
    """An activation store that cannot be used as asked: damaged or truncated files, a manifest that does
    not check, or a folder that holds another extraction. The message names the file or the difference,
    and the fix."""


@dataclass(frozen=True)
class Location:
    """A store's place: ``url`` as given, the fsspec filesystem and root path, and the zarr store on it."""

    url: str
    fs: Any
    root: str
    store: Any

    @property
    def is_local(self) -> bool:
        return "file" in _protocols(self.fs)

    def path(self, key: str) -> str:
        """The filesystem path of ``key`` (e.g. ``layer_3/c/0/0``) under the root."""
        return f"{self.root.rstrip('/')}/{key}"

    def describe(self, key: str) -> str:
        """``key`` as the user can find it: a local path, or the URL followed by the key."""
        if self.is_local:
            return str(Path(self.root) / key)
        return f"{self.url.rstrip('/')}/{key}"


def _protocols(fs) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def require_zarr():
    """The ``zarr`` module, version 3 or later (the v3 format and its async stores).

    Raises:
        ModuleNotFoundError: zarr is not installed, or is a 2.x version (names the fix).
    """
    try:
        import zarr
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "the activation store needs zarr >= 3: pip install 'zarr>=3' fsspec (a dependency of workbench)"
        ) from None
    if int(zarr.__version__.split(".")[0]) < 3:
        raise ModuleNotFoundError(
            f"the activation store needs zarr >= 3, found zarr {zarr.__version__}: pip install -U 'zarr>=3'"
        )
    return zarr


def open_location(location: str | Path, read_only: bool) -> Location:
    """The zarr store at ``location`` (a local path or an fsspec URL); nothing is created here.

    Raises:
        ValueError: a URL whose protocol fsspec does not know (it names the package that provides it).
    """
    import fsspec

    require_zarr()
    from zarr.storage import FsspecStore, LocalStore

    url = str(location)
    try:
        fs, root = fsspec.core.url_to_fs(url)
    except (ValueError, ImportError) as err:
        raise ValueError(f"cannot open the store location {url!r}: {err}") from None
    if "file" in _protocols(fs):
        return Location(url, fs, root, LocalStore(root, read_only=read_only))
    return Location(url, fs, root, FsspecStore.from_url(url, read_only=read_only))


def exists(location: Location, key: str) -> bool:
    return location.fs.exists(location.path(key))


def remove(location: Location, key: str) -> None:
    """Delete ``key`` (a file or a whole array's folder) if it exists."""
    path = location.path(key)
    if location.fs.exists(path):
        location.fs.rm(path, recursive=True)


def create_rows_array(group, name: str, n_rows: int, row_shape: tuple[int, ...], dtype: str, chunk_rows: int):
    """A new array ``name`` [n_rows, *row_shape] in ``group``, chunked by ``chunk_rows`` rows, each chunk
    checksummed (CRC32C) and uncompressed; replaces an existing array of that name."""
    from zarr.codecs import BytesCodec, Crc32cCodec

    return group.create_array(
        name,
        shape=(n_rows, *row_shape),
        chunks=(chunk_rows, *row_shape),
        dtype=dtype,
        fill_value=0,
        serializer=BytesCodec(),
        compressors=[Crc32cCodec()],
        config={"write_empty_chunks": True},
        overwrite=True,
    )


def n_chunks(n_rows: int, chunk_rows: int) -> int:
    return math.ceil(n_rows / chunk_rows)


def chunk_nbytes(chunk_rows: int, row_shape: tuple[int, ...], dtype: str) -> int:
    """The size of one stored chunk object: its (full-size, also at the edge) data and the checksum."""
    return chunk_rows * int(np.prod(row_shape, dtype=np.int64)) * np.dtype(dtype).itemsize + CHECKSUM_BYTES


def stored_chunks(location: Location, name: str) -> dict[int, int]:
    """{chunk index: size in bytes} of the chunk objects of row-chunked array ``name`` (keys ``c/i/0...``).

    Raises:
        StoreError: an object under the array's ``c/`` prefix that is not a chunk key of a row-chunked array.
    """
    prefix = location.path(f"{name}/c").rstrip("/")
    if not location.fs.exists(prefix):
        return {}
    found = {}
    for path, info in location.fs.find(prefix, detail=True).items():
        parts = path[len(prefix) :].strip("/").split("/")
        if not parts[0].isdigit() or any(part != "0" for part in parts[1:]):
            raise StoreError(
                f"{location.describe(path[len(location.root.rstrip('/')) + 1 :])} is not a chunk of {name}: "
                f"the store holds an object it did not write"
            )
        found[int(parts[0])] = int(info["size"])
    return found


def check_chunks(
    location: Location, name: str, n_total: int, nbytes: int, required: set[int] | range, damaged, ndim: int
) -> set[int]:
    """Check the chunk objects of ``name``: every index in ``required`` (the chunks recorded as written)
    exists with exactly ``nbytes`` bytes, and none has an index >= n_total. A chunk not yet recorded may be
    absent or half written (a process stopped while writing it): it is written again whole. Returns the
    indices present.

    Args:
        damaged: ``damaged(key, problem) -> StoreError`` (the store's message, naming the key and the fix).
    """
    found = stored_chunks(location, name)
    for index, size in sorted(found.items()):
        key = f"{name}/c/{index}" + "/0" * (ndim - 1)
        if index >= n_total:
            raise damaged(key, f"chunk {index} is beyond the array's {n_total} chunks")
        if size != nbytes and index in required:
            kind = "truncated" if size < nbytes else "too long"
            raise damaged(key, f"{size} bytes, but a chunk of this array has {nbytes} ({kind})")
    missing = sorted(set(required) - set(found))
    if missing:
        shown = ", ".join(str(i) for i in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise damaged(f"{name}/c", f"chunk(s) {shown} of {name} are missing although recorded as written")
    return set(found)


class ChunkedRows:
    """Numpy-like read access to a row-chunked zarr array [n_rows, *row_shape].

    Indexing with an int, a slice, an index array or a boolean mask over rows (optionally followed by more
    indices for the other axes) returns a numpy array; ``np.asarray`` reads it all. Decoded chunks are kept
    in a small LRU cache (``cache_chunks``), so consecutive small reads do not decode a chunk again.
    A read that fails (a checksum mismatch, a damaged chunk) is a :class:`StoreError` naming the chunk.
    """

    def __init__(self, array, chunk_rows: int, describe, cache_chunks: int = 4) -> None:
        self._array = array
        self.chunk_rows = chunk_rows
        self.shape: tuple[int, ...] = tuple(array.shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)
        self._describe = describe  # chunk index -> the chunk's name for messages
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_chunks = cache_chunks

    def __len__(self) -> int:
        return self.shape[0]

    def _chunk(self, index: int) -> np.ndarray:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        start = index * self.chunk_rows
        values = self._read(start, min(start + self.chunk_rows, self.shape[0]), self._describe(index))
        self._cache[index] = values
        if len(self._cache) > self._cache_chunks:
            self._cache.popitem(last=False)
        return values

    def _read(self, start: int, stop: int, what: str) -> np.ndarray:
        try:
            return np.asarray(self._array[start:stop])
        except Exception as err:  # zarr raises codec errors (checksum) and store errors of many types
            raise StoreError(
                f"{what} is damaged: {type(err).__name__}: {err}. The activation store cannot be trusted; "
                f"extract again with overwrite=True."
            ) from None

    def _rows_range(self, start: int, stop: int) -> np.ndarray:
        if stop <= start:
            return np.empty((0, *self.shape[1:]), dtype=self.dtype)
        first, last = start // self.chunk_rows, (stop - 1) // self.chunk_rows
        if last - first >= self._cache_chunks:  # a long read: zarr fetches its chunks concurrently
            try:
                return np.asarray(self._array[start:stop])
            except Exception:
                for index in range(first, last + 1):  # find the damaged chunk, to name it
                    self._chunk(index)
                raise
        parts = []
        for index in range(first, last + 1):
            base = index * self.chunk_rows
            parts.append(self._chunk(index)[max(start - base, 0) : stop - base])
        return parts[0].copy() if len(parts) == 1 else np.concatenate(parts)

    def _rows_taken(self, rows: np.ndarray) -> np.ndarray:
        rows = np.where(rows < 0, rows + self.shape[0], rows)
        if rows.size and (rows.min() < 0 or rows.max() >= self.shape[0]):
            raise IndexError(f"row index out of range for {self.shape[0]} rows")
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        chunk_of = rows // self.chunk_rows
        for index in np.unique(chunk_of):
            where = np.flatnonzero(chunk_of == index)
            out[where] = self._chunk(int(index))[rows[where] - index * self.chunk_rows]
        return out

    def __getitem__(self, key) -> np.ndarray:
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, (int, np.integer)):
            index = int(key) + (self.shape[0] if key < 0 else 0)
            if not 0 <= index < self.shape[0]:
                raise IndexError(f"row {key} out of range for {self.shape[0]} rows")
            values = self._rows_range(index, index + 1)[0]
        elif isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            values = (
                self._rows_range(start, stop) if step == 1 else self._rows_taken(np.arange(start, stop, step))
            )
        else:
            rows = np.asarray(key)
            if rows.dtype == bool:
                if rows.shape != (self.shape[0],):
                    raise IndexError(f"boolean mask of shape {rows.shape} for {self.shape[0]} rows")
                rows = np.flatnonzero(rows)
            values = self._rows_taken(rows.astype(np.int64).reshape(-1))
        if not rest:
            return values
        return values[rest] if isinstance(key, (int, np.integer)) else values[(slice(None), *rest)]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        values = self[:]
        return values if dtype is None else values.astype(dtype)

    def astype(self, dtype) -> np.ndarray:
        return self[:].astype(dtype)

    def __repr__(self) -> str:
        return f"ChunkedRows(shape={self.shape}, dtype={self.dtype}, chunk_rows={self.chunk_rows})"
