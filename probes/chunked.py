"""Row-chunked zarr v3 arrays on local folders and fsspec URLs: what the activation store is built on.

- :func:`open_location` opens a store by local path or URL (``memory://``, ``file://``, ``s3://`` with
  ``s3fs``, ``gs://`` with ``gcsfs``); a local path or ``file://`` URL is zarr's ``LocalStore``, anything else
  its ``FsspecStore``.
- :func:`create_rows_array` makes an array [n_rows, *row_shape] chunked by rows only, every chunk followed by
  a CRC32C checksum (a flipped byte is an error when read, never a silently wrong number), uncompressed
  (float16 activations barely compress, and an uncompressed chunk has one exact size to check), and with
  every chunk written even when it equals the fill value (a missing chunk always means missing data).
- :func:`check_chunks` lists an array's chunk objects and checks each one's size and which ones exist.
- :class:`ChunkedRows` reads rows of such an array as numpy (slices, index arrays, masks), and
  :func:`read_rows` the same rows of several arrays (a store's layers) as one float32 tensor: whole chunk
  objects are read by a few threads, each checked (size, CRC32C) before use and kept in a byte-bounded
  cache (:class:`ChunkCache`), and the rows are converted straight into the output.

A chunk is only ever written whole by one process: the store's writers give each chunk to one rank.
"""

from __future__ import annotations

import math
import mmap
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

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
        if path.endswith(".partial"):  # zarr's temporary file of a write that was interrupted: not a chunk
            continue
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


# Reading ------------------------------------------------------------------------------------------------
#
# A read goes around zarr's array machinery (its per-call overhead is large next to a chunk's memcpy): it
# reads whole chunk objects itself, checks each one's size and CRC32C exactly as zarr's codec does, views the
# bytes as rows, and copies the rows asked for straight into the caller's output, converting dtypes there
# (float16 -> float32 with torch, several times faster than numpy's cast). Chunks are read by a small pool of
# threads while the calling thread copies the ones already read: file reads, the ``crc32c`` package and
# socket reads release the GIL.

DEFAULT_CACHE_BYTES = 256 * 2**20  # verified chunks kept per store: 32 chunks of the default 8 MiB


MAP_BYTES = 2**20  # chunk files this large or larger are mapped, smaller ones read
# Python < 3.13 keeps a duplicate file descriptor per mapping (so the cache holds at most cache_bytes /
# MAP_BYTES descriptors); 3.13 can leave it out.
_NO_FD = {"trackfd": False} if sys.version_info >= (3, 13) else {}


def _crc32c_function():
    """The fastest CRC32C at hand: the ``crc32c`` package (SSE4.2/ARMv8, releases the GIL; a dependency of
    workbench) or else ``google_crc32c`` (zarr's own, a few times slower and holding the GIL): the same
    checksum either way."""
    try:
        from crc32c import crc32c

        return crc32c
    except ModuleNotFoundError:  # an install without the dependency: correct, only slower
        import google_crc32c

        return google_crc32c.value


_crc32c = _crc32c_function()


class ChunkCache:
    """Verified, decoded chunks kept in memory, least recently used dropped first, ``max_bytes`` in all (0:
    nothing kept). Shared by the arrays of a store and safe to use from several threads.

    >>> cache = ChunkCache(max_bytes=100)
    >>> cache.put(("layer_0", 0), np.zeros(10, np.float32)); cache.put(("layer_0", 1), np.zeros(20, np.float32))
    >>> (cache.get(("layer_0", 0)), cache.get(("layer_0", 1)).shape, cache.nbytes)
    (None, (20,), 80)
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._items: OrderedDict[Any, np.ndarray] = OrderedDict()
        self._spares: list[np.ndarray] = []  # read buffers no cached chunk uses: reused, not faulted in anew
        self._lock = threading.Lock()

    def get(self, key) -> np.ndarray | None:
        with self._lock:
            values = self._items.get(key)
            if values is not None:
                self._items.move_to_end(key)
            return values

    def put(self, key, values: np.ndarray) -> None:
        size = _owned_nbytes(values)
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                self.nbytes -= _owned_nbytes(self._items.pop(key))
            self._items[key] = values
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                self.nbytes -= _owned_nbytes(self._items.popitem(last=False)[1])

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._spares.clear()
            self.nbytes = 0

    def buffer(self, nbytes: int) -> np.ndarray:
        """A uint8 buffer [nbytes] to read a chunk into: a spare one when there is one of that size."""
        with self._lock:
            for i, spare in enumerate(self._spares):
                if spare.size == nbytes:
                    return self._spares.pop(i)
        return np.empty(nbytes, dtype=np.uint8)

    def recycle(self, values: np.ndarray) -> None:
        """Take back the buffer of chunk ``values`` (read, not cached, and no longer used) for later reads."""
        buffer = _root(values)
        with self._lock:
            if len(self._spares) < SPARE_BUFFERS and buffer.base is None:  # a buffer of ours, not a mapping
                self._spares.append(buffer)


SPARE_BUFFERS = 8  # per cache: enough for the chunks in flight of a read


def _root(values: np.ndarray) -> np.ndarray:
    """The array that owns the memory a view of it uses (a chunk's whole read buffer)."""
    while isinstance(values.base, np.ndarray):
        values = values.base
    return values


def _owned_nbytes(values: np.ndarray) -> int:
    """The bytes a cached view keeps alive: its whole read buffer (the checksum and edge padding too)."""
    return int(_root(values).nbytes)


_POOLS: dict[int, tuple[int, ThreadPoolExecutor]] = {}
_POOLS_LOCK = threading.Lock()


def _thread_pool(workers: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``workers`` reader threads (made anew in a forked child, e.g. a DataLoader
    worker, whose copy of the parent's threads does not run)."""
    with _POOLS_LOCK:
        pid, pool = _POOLS.get(workers, (None, None))
        if pool is None or pid != os.getpid():
            pool = ThreadPoolExecutor(workers, thread_name_prefix="chunk-reader")
            _POOLS[workers] = (os.getpid(), pool)
        return pool


def _forget_pools() -> None:
    """In a forked child: the parent's reader threads do not run there, and a lock a parent thread held is
    held forever."""
    global _POOLS_LOCK
    _POOLS_LOCK = threading.Lock()
    _POOLS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def default_read_threads(location: Location) -> int:
    """Reader threads: a few for a local disk (the cores do the checksums and copies), many for an object
    store (each request waits on the network)."""
    return min(4, os.cpu_count() or 1) if location.is_local else 16


def normalize_rows(rows, n: int) -> slice | np.ndarray:
    """Rows of an array of ``n`` rows (None: all; a slice; an index array, negatives counting from the end;
    a boolean mask [n]) as ``slice(start, stop)`` (step 1) or an int64 index array [k] within range.

    Raises:
        IndexError: an index out of range, a mask of another length, indices that are not integers.
    """
    if rows is None:
        return slice(0, n)
    if isinstance(rows, slice):
        start, stop, step = rows.indices(n)
        return slice(start, max(start, stop)) if step == 1 else np.arange(start, stop, step, dtype=np.int64)
    rows = np.asarray(rows)
    if rows.dtype == bool:
        if rows.shape != (n,):
            raise IndexError(f"boolean mask of shape {rows.shape} for {n} rows")
        return np.flatnonzero(rows)
    if rows.size and not np.issubdtype(rows.dtype, np.integer):
        raise IndexError(f"row indices must be integers or a boolean mask, got {rows.dtype}")
    rows = rows.astype(np.int64, copy=False).reshape(-1)
    rows = np.where(rows < 0, rows + n, rows)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise IndexError(f"row index out of range for {n} rows")
    return rows


class ChunkedRows:
    """Numpy-like read access to a row-chunked array [n_rows, *row_shape] made by :func:`create_rows_array`.

    Indexing with an int, a slice, an index array or a boolean mask over rows (optionally followed by more
    indices for the other axes) returns a numpy array of the stored dtype; ``np.asarray`` reads it all;
    :func:`read_rows` reads rows of several such arrays at once into one float32 tensor. Every chunk read is
    checked (its size and its CRC32C) before any of its rows is used, and kept in ``cache`` (a
    :class:`ChunkCache`, shared by a store's arrays), so reading a store sentence by sentence costs one chunk
    read per chunk. A damaged or missing chunk is a :class:`StoreError` naming it.

    Args:
        location: where the store is (:func:`open_location`).
        name: the array's key in the store (e.g. ``layer_3``).
        array: the opened zarr array: its metadata says the shape, dtype and chunking; its chunk layout is
            checked to be the one this reader decodes (bytes little-endian, then CRC32C; ``c/i/0`` keys).
        cache: where verified chunks are kept (default: a cache of its own, :data:`DEFAULT_CACHE_BYTES`).
        done: bool [n_chunks], the chunks recorded as written (default: all): reading rows of another chunk
            is an error saying the store is incomplete, never the fill value.
        threads: reader threads (default :func:`default_read_threads`).
    """

    def __init__(
        self,
        location: Location,
        name: str,
        array,
        cache: ChunkCache | None = None,
        done: np.ndarray | None = None,
        threads: int | None = None,
    ) -> None:
        self.name = name
        self.shape: tuple[int, ...] = tuple(array.shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)
        self.chunk_rows = int(array.chunks[0])
        self._location = location
        self._check_layout(array)
        self._nbytes = chunk_nbytes(self.chunk_rows, self.shape[1:], str(self.dtype))
        self.cache = cache if cache is not None else ChunkCache()
        self._done = done
        self.threads = threads or default_read_threads(location)

    def _check_layout(self, array) -> None:
        metadata = array.metadata
        codecs = list(metadata.codecs)
        names = [type(codec).__name__ for codec in codecs]
        endian = getattr(getattr(codecs[0], "endian", None), "value", None) if codecs else None
        encoding = metadata.chunk_key_encoding
        problems = []
        if names != ["BytesCodec", "Crc32cCodec"]:
            problems.append(f"codecs {names}, not bytes + crc32c")
        elif self.dtype.itemsize > 1 and endian != "little":
            problems.append(f"{endian}-endian bytes, not little-endian")
        if type(encoding).__name__ != "DefaultChunkKeyEncoding" or encoding.separator != "/":
            problems.append(f"chunk keys {encoding}, not the default c/i/0 keys")
        if tuple(array.chunks) != (self.chunk_rows, *self.shape[1:]):
            problems.append(f"chunks {tuple(array.chunks)} are not whole rows of shape {self.shape}")
        if problems:
            raise self._damaged(f"{self.name}/zarr.json", "; ".join(problems))

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def n_chunks(self) -> int:
        return n_chunks(self.shape[0], self.chunk_rows)

    def key(self, index: int) -> str:
        """The store key of chunk ``index`` (``layer_3/c/12/0``)."""
        return f"{self.name}/c/{index}" + "/0" * (self.ndim - 1)

    def _damaged(self, key: str, problem: str) -> StoreError:
        return StoreError(
            f"{self._location.describe(key)} is damaged: {problem}. The activation store in "
            f"{self._location.url} cannot be trusted; delete it, or call extract(..., overwrite=True) to "
            f"extract again."
        )

    def _cached(self, index: int) -> np.ndarray | None:
        return self.cache.get((self._location.root, self.name, index))

    def _keep(self, index: int, values: np.ndarray) -> None:
        self.cache.put((self._location.root, self.name, index), values)

    def load(self, index: int) -> np.ndarray:
        """Chunk ``index`` read and checked (size, CRC32C): its rows [rows_in_chunk, *row_shape] (the padding of
        the last chunk left out), not cached. Runs in reader threads."""
        key = self.key(index)
        if self._done is not None and not self._done[index]:
            start = index * self.chunk_rows
            raise StoreError(
                f"rows {start}..{min(start + self.chunk_rows, self.shape[0]) - 1} of {self.name} (chunk {index}) "
                f"are not extracted yet: the store at {self._location.url} is incomplete; run extract again "
                f"to finish it"
            )
        try:
            buffer = self._read_object(self._location.path(key))
        except FileNotFoundError:
            raise self._damaged(key, "the chunk is missing although recorded as written") from None
        except StoreError:
            raise
        except Exception as err:  # an object store's errors come in many types
            raise self._damaged(key, f"not readable ({type(err).__name__}: {err})") from None
        if buffer.size != self._nbytes:
            kind = "truncated" if buffer.size < self._nbytes else "too long"
            raise self._damaged(
                key, f"{buffer.size} bytes, but a chunk of this array has {self._nbytes} ({kind})"
            )
        data = buffer[:-CHECKSUM_BYTES]
        stored = int.from_bytes(buffer[-CHECKSUM_BYTES:].tobytes(), "little")
        computed = _crc32c(data)
        if stored != computed:
            raise self._damaged(
                key, f"its CRC32C checksum {stored:#010x} does not match its content's {computed:#010x}"
            )
        rows = min(self.chunk_rows, self.shape[0] - index * self.chunk_rows)
        return data.view(self.dtype.newbyteorder("<")).reshape(self.chunk_rows, *self.shape[1:])[:rows]

    def _read_object(self, path: str) -> np.ndarray:
        """The bytes of one object (uint8): a local file mapped into memory (its page-cache pages, no copy),
        or an fsspec ``cat`` copied into a reusable buffer."""
        if not self._location.is_local:
            content = np.frombuffer(self._location.fs.cat_file(path), dtype=np.uint8)
            buffer = self.cache.buffer(content.size)
            buffer[:] = content
            return buffer
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size < MAP_BYTES or os.name == "nt":  # small: a read is as cheap; Windows maps another way
                buffer = self.cache.buffer(size)
                got = handle.readinto(memoryview(buffer)) if size else 0
                return buffer[:got]
            # A private mapping (copy on write, and nothing here writes: writable only so that torch takes it
            # without a warning). Chunk files are replaced whole (zarr writes a new file and renames it),
            # never changed in place, so the mapped bytes stay the ones checked.
            mapping = mmap.mmap(
                handle.fileno(), size, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_WRITE, **_NO_FD
            )
        mapping.madvise(mmap.MADV_WILLNEED)  # read ahead a chunk not in the page cache
        return np.frombuffer(mapping, dtype=np.uint8)

    def plan(self, rows: slice | np.ndarray) -> list[tuple[int, slice | np.ndarray, slice | np.ndarray]]:
        """For normalized ``rows``: (chunk index, rows within the chunk, positions in the output) per chunk
        touched, in row order. A run of consecutive rows is a slice on both sides (a plain copy)."""
        size = self.chunk_rows
        if isinstance(rows, slice):
            steps = []
            for index in range(
                rows.start // size, (rows.stop - 1) // size + 1 if rows.stop > rows.start else 0
            ):
                base = index * size
                first, last = max(rows.start, base), min(rows.stop, base + size)
                steps.append(
                    (index, slice(first - base, last - base), slice(first - rows.start, last - rows.start))
                )
            return steps
        if rows.size == 0:
            return []
        ascending = rows.size < 2 or bool((rows[1:] >= rows[:-1]).all())
        order = None if ascending else np.argsort(rows, kind="stable")
        ordered = rows if order is None else rows[order]
        chunk_of = ordered // size
        bounds = np.concatenate([[0], np.flatnonzero(chunk_of[1:] != chunk_of[:-1]) + 1, [ordered.size]])
        steps = []
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            index = int(chunk_of[a])
            inside = ordered[a:b] - index * size
            if inside[-1] - inside[0] == b - a - 1 and (b - a == 1 or bool((inside[1:] > inside[:-1]).all())):
                inside = slice(int(inside[0]), int(inside[-1]) + 1)
            steps.append((index, inside, slice(a, b) if order is None else order[a:b]))
        return steps

    def __getitem__(self, key) -> np.ndarray:
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, (int, np.integer)):
            index = int(key) + (self.shape[0] if key < 0 else 0)
            if not 0 <= index < self.shape[0]:
                raise IndexError(f"row {key} out of range for {self.shape[0]} rows")
            rows = slice(index, index + 1)
        else:
            rows = normalize_rows(key, self.shape[0])
        n = rows.stop - rows.start if isinstance(rows, slice) else rows.size
        out = np.empty((n, *self.shape[1:]), dtype=self.dtype)
        read_into([(self, rows, out)])
        if isinstance(key, (int, np.integer)):
            out = out[0]
            return out[rest] if rest else out
        return out[(slice(None), *rest)] if rest else out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        values = self[:]
        return values if dtype is None else values.astype(dtype)

    def astype(self, dtype) -> np.ndarray:
        """All rows as ``dtype`` (float16 -> float32 converted while copying out of the chunks)."""
        if np.dtype(dtype) == np.float32 and self.dtype == np.float16:
            return read_rows([self], slice(None)).numpy()[0]
        return self[:].astype(dtype)

    def __repr__(self) -> str:
        return f"ChunkedRows({self.name!r}, shape={self.shape}, dtype={self.dtype}, chunk_rows={self.chunk_rows})"


def read_rows(arrays: Sequence[ChunkedRows], rows=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The same rows of several arrays of one shape (a store's layers) as one tensor [len(arrays), n, *row_shape]
    of ``dtype``: rows is None (all), a slice, an index array (any order, repeats allowed) or a boolean mask.
    Every chunk is read once, the arrays' chunks concurrently.

    >>> read_rows([store.layer(3), store.layer(6)], rows=np.arange(100, 200)).shape  # doctest: +SKIP
    torch.Size([2, 100, 384])
    """
    if not arrays:
        raise ValueError("read_rows needs at least one array")
    first = arrays[0]
    for array in arrays[1:]:
        if array.shape != first.shape:
            raise ValueError(
                f"arrays of different shapes: {first.name} {first.shape}, {array.name} {array.shape}"
            )
    chosen = normalize_rows(rows, first.shape[0])
    n = chosen.stop - chosen.start if isinstance(chosen, slice) else chosen.size
    out = torch.empty((len(arrays), n, *first.shape[1:]), dtype=dtype)
    if not (isinstance(chosen, slice) and n and _copy_cached_slice(arrays, chosen, out)):
        read_into([(array, chosen, out[i]) for i, array in enumerate(arrays)])
    return out


def _copy_cached_slice(arrays: Sequence[ChunkedRows], rows: slice, out: torch.Tensor) -> bool:
    """Copy ``rows`` when they lie in one chunk of each array and every one of those chunks is cached (a store
    read sentence by sentence), without planning a read; False (nothing copied) otherwise."""
    size = arrays[0].chunk_rows
    index = rows.start // size
    if (rows.stop - 1) // size != index or any(array.chunk_rows != size for array in arrays):
        return False
    chunks = [array._cached(index) for array in arrays]
    if any(chunk is None for chunk in chunks):
        return False
    start, stop = rows.start - index * size, rows.stop - index * size
    for i, chunk in enumerate(chunks):
        out[i].copy_(torch.from_numpy(chunk[start:stop]))
    return True


def read_into(jobs: Sequence[tuple[ChunkedRows, slice | np.ndarray, np.ndarray | torch.Tensor]]) -> None:
    """Fill each ``out`` [k, *row_shape] (numpy, or a float torch tensor) with the normalized ``rows`` of its
    array, converting dtypes.

    Chunks not in the cache are read by reader threads, a few ahead of the copies (memory: the cache plus
    ``2 x threads`` chunk buffers), in chunk-major order (chunk 0 of every array, then chunk 1...). A chunk
    read is kept in the cache when a later read is likely to want it: the first and last chunk of a request
    (the next piece of a store read in consecutive pieces starts there) and chunks the request reads less than
    half of (random rows, sentences); a chunk inside a request that reads most of it (a sequential pass) is
    not kept, and its buffer serves the next read.

    Rows picked by index are gathered in the stored dtype and converted by torch: a few rows from many chunks
    (no more than a chunk's rows: random batches) into one buffer converted at the end in one call, as a
    memmap read does; more rows chunk by chunk through a scratch buffer, so memory stays one chunk's."""
    tasks, staged = [], []
    for array, rows, out in jobs:
        if isinstance(out, torch.Tensor) and isinstance(rows, np.ndarray) and rows.size <= array.chunk_rows:
            staging = np.empty(tuple(out.shape), dtype=array.dtype)
            staged.append((staging, out))
            out = staging
        steps = array.plan(rows)
        last = len(steps) - 1
        for position, (index, inside, where) in enumerate(steps):
            keep = position == 0 or position == last or 2 * _count(inside) < array.chunk_rows
            tasks.append((position, array, index, inside, where, out, keep))
    if len(jobs) > 1:
        tasks.sort(key=_position)
    chunks: list[Any] = [array._cached(index) for _, array, index, *_ in tasks]
    missing = [i for i, chunk in enumerate(chunks) if chunk is None]
    pool = None
    if len(missing) > 1:  # one chunk to read: nothing to overlap
        threads = max(array.threads for array, _, _ in jobs)
        pool, window = _thread_pool(threads), 2 * threads
    futures: dict[int, Future] = {}
    submitted = 0
    try:
        for i, (_, array, index, inside, where, out, keep) in enumerate(tasks):
            while pool is not None and submitted < len(missing) and missing[submitted] < i + window:
                task = tasks[missing[submitted]]
                futures[missing[submitted]] = pool.submit(task[1].load, task[2])
                submitted += 1
            chunk = chunks[i]
            if chunk is not None:
                _copy_rows(out, where, chunk, inside)
                continue
            chunk = futures.pop(i).result() if i in futures else array.load(index)
            _copy_rows(out, where, chunk, inside)
            array._keep(index, chunk) if keep else array.cache.recycle(chunk)
    finally:
        for future in futures.values():  # after an error: no reader left running for nothing
            future.cancel()
    for staging, out in staged:
        out.copy_(torch.from_numpy(staging))


def _position(task: tuple) -> int:
    return task[0]


def _count(inside: slice | np.ndarray) -> int:
    return inside.stop - inside.start if isinstance(inside, slice) else int(inside.size)


def _copy_rows(out: np.ndarray | torch.Tensor, where, chunk: np.ndarray, inside) -> None:
    """out[where] = chunk[inside]: numpy into a numpy ``out``; into a tensor, numpy selects the rows (a view, or
    a gather of float16 rows into a reused scratch buffer) and torch converts them (vectorized: numpy's
    float16 cast is several times slower)."""
    if isinstance(inside, np.ndarray):
        if isinstance(out, np.ndarray) and isinstance(where, slice):
            np.take(chunk, inside, axis=0, out=out[where], mode="clip")  # in place ("raise" would buffer)
            return
        part = np.take(chunk, inside, axis=0, out=_scratch(inside.size, chunk), mode="clip")
    else:
        part = chunk[inside]
    if isinstance(out, np.ndarray):
        out[where] = part
    elif isinstance(where, slice):
        out[where].copy_(torch.from_numpy(part))
    else:
        out.index_copy_(0, torch.from_numpy(where), torch.from_numpy(part).to(out.dtype))


_SCRATCH = threading.local()


def _scratch(rows: int, chunk: np.ndarray) -> np.ndarray:
    """A buffer [rows, *row_shape] of the chunk's dtype for gathered rows, kept by the calling thread for the
    next gather (no new buffer, and no page faults, per chunk)."""
    shape = (rows, *chunk.shape[1:])
    size = int(np.prod(shape))
    buffer = getattr(_SCRATCH, "buffer", None)
    if buffer is None or buffer.dtype != chunk.dtype or buffer.size < size:
        buffer = _SCRATCH.buffer = np.empty(max(size, 1), dtype=chunk.dtype)
    return buffer[:size].reshape(shape)
