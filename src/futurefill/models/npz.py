"""Reading ``.npz`` archives that come from elsewhere, sizes first.

An archive's central directory names its entries and declares their sizes; an ``.npy``
entry's header declares its dtype and shape. :class:`NpzArchive` lets a reader check all of
that, which costs a few hundred bytes per entry, before any entry's data is decompressed: an
entry the reader did not ask for, or one whose declared size is not what its header implies,
is refused without being read (a 2 MB file may hold a deflated entry of gigabytes). Pickled
(object) arrays are never read.
"""

from __future__ import annotations

import math
import os
import zipfile
from types import TracebackType
from typing import NamedTuple

import numpy as np

__all__ = ["EntryHeader", "NpzArchive"]

_SUFFIX = ".npy"


class EntryHeader(NamedTuple):
    """What an ``.npy`` entry declares: dtype, shape and the bytes its data must take."""

    dtype: np.dtype
    shape: tuple[int, ...]
    data_bytes: int


class NpzArchive:
    """An ``.npz`` file opened for checked reading (a context manager).

    Parameters
    ----------
    path : str or path-like
        The archive.

    Raises
    ------
    ValueError
        An entry that is not an ``.npy`` file, or a name given twice.
    OSError, zipfile.BadZipFile
        A file that cannot be read as a zip archive.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._zip = zipfile.ZipFile(path)
        try:
            self.entries: dict[str, zipfile.ZipInfo] = {}
            for info in self._zip.infolist():
                name = info.filename
                if not name.endswith(_SUFFIX) or info.is_dir():
                    raise ValueError(f"entry {name!r} is not an .npy array")
                key = name[: -len(_SUFFIX)]
                if key in self.entries:
                    raise ValueError(f"entry {name!r} appears twice")
                self.entries[key] = info
        except BaseException:
            self._zip.close()
            raise

    def __enter__(self) -> NpzArchive:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._zip.close()

    def declared_size(self, name: str) -> int:
        """Uncompressed bytes the directory declares for entry ``name``."""
        return int(self.entries[name].file_size)

    def header(self, name: str) -> EntryHeader:
        """The dtype and shape entry ``name`` declares (its header alone is read), checked
        against the entry's declared size.

        Raises
        ------
        ValueError
            An object (pickled) dtype, or a declared size other than the header plus the
            data its dtype and shape take.
        """
        with self._zip.open(self.entries[name]) as f:
            version = np.lib.format.read_magic(f)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read(f)
            offset = f.tell()
        if dtype.hasobject:
            raise ValueError(f"entry {name!r} holds Python objects (pickle), which are not read")
        data = math.prod(shape) * dtype.itemsize
        if self.declared_size(name) != offset + data:
            raise ValueError(
                f"entry {name!r} declares {self.declared_size(name)} bytes, but a "
                f"{dtype} array of shape {tuple(shape)} takes {offset + data}"
            )
        return EntryHeader(dtype=dtype, shape=tuple(shape), data_bytes=data)

    def read(self, name: str) -> np.ndarray:
        """Entry ``name`` as an array, after :meth:`header` checked what it declares."""
        self.header(name)
        with self._zip.open(self.entries[name]) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
