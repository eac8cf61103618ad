"""Read a collected results dataset into pandas, checking it has the documented schema."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from analysis import dataset, schema
from analysis.storage import filesystem


def pandas_types(t: pa.DataType) -> object | None:
    """The pandas dtype of an arrow type in a loaded frame (``types_mapper`` of ``to_pandas``)."""
    if pa.types.is_integer(t):
        return pd.Int64Dtype()
    if pa.types.is_boolean(t):
        return pd.BooleanDtype()
    return None


def read_part(fs: pafs.FileSystem, path: str) -> pd.DataFrame:
    """One parquet file as pandas (int64 -> Int64, bool -> boolean, nullable)."""
    return pq.read_table(path, filesystem=fs).to_pandas(types_mapper=pandas_types)


def parts(location: str) -> tuple[pafs.FileSystem, list[str]]:
    """The parquet files of a dataset: those its manifest names (``analysis.dataset``), every
    ``*.parquet`` file of a directory without one, or the one file given."""
    fs, files = _files(location)
    return fs, list(files)


def _files(location: str) -> tuple[pafs.FileSystem, dict[str, list[str]]]:
    """``parts``, each with the trials whose rows in it are superseded (see ``dataset.take``)."""
    fs, root = filesystem(location)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        return fs, {root: []}
    if info.type != pafs.FileType.Directory:
        raise FileNotFoundError(f"load: no results dataset at {location}")
    named = dataset.live_files(fs, root)
    if named is not None:
        return fs, named
    files = [
        i.path
        for i in fs.get_file_info(pafs.FileSelector(root))
        if i.type == pafs.FileType.File
        and i.base_name.endswith(".parquet")
        and not i.base_name.startswith((".", "_"))
    ]
    return fs, {f: [] for f in sorted(files)}


def _cast(column: pa.ChunkedArray, type_: pa.DataType) -> pa.ChunkedArray | pa.Array:
    """``column`` as ``type_``: numbers and bools become text as ``collect`` writes text."""
    if column.type.equals(type_):
        return column
    if pa.types.is_null(column.type):
        return pa.nulls(len(column), type_)
    if pa.types.is_string(type_):
        return pa.array(
            [None if v is None else schema.as_text(v) for v in column.to_pylist()], type_
        )
    return column.cast(type_)


def _target(name: str, types: list[pa.DataType], keep_null: bool) -> pa.DataType:
    if name in schema.FIXED:
        return schema.FIXED[name].type
    merged = schema.merged_type(types)
    return pa.float64() if pa.types.is_null(merged) and not keep_null else merged


def unify(tables: list[pa.Table], keep_null: bool = False) -> list[pa.Table]:
    """The parts with one type per column (``schema.merged_type``), so that they concatenate:
    a non-fixed column without a value in a part counts as null there (older parts wrote such a
    column as string), and one that is numeric in one part and text in another becomes text.
    A non-fixed column no part has a value of is float64 (NaN), or with ``keep_null`` stays
    arrow's null type (what ``collect`` writes, so that a later file's type merges with it); a
    fixed one has its type."""
    empty = [
        {f.name for f in t.schema if f.name not in schema.FIXED and t[f.name].null_count == len(t)}
        for t in tables
    ]
    types: dict[str, list[pa.DataType]] = {}
    for t, nulls in zip(tables, empty, strict=True):
        for f in t.schema:
            types.setdefault(f.name, []).append(pa.null() if f.name in nulls else f.type)
    target = {n: _target(n, ts, keep_null) for n, ts in types.items()}
    out = []
    for t in tables:
        cols = [_cast(t[n], target[n]) for n in t.schema.names]
        out.append(pa.Table.from_arrays(cols, names=t.schema.names))
    return out


def load(location: str) -> pd.DataFrame:
    """All rows of a collected dataset (local path or URI), one per (trial, report).

    Fixed columns (``analysis.schema.COLUMNS``) come with their documented dtypes: strings as
    pandas strings, float64, ``Int64`` and ``boolean`` (nullable), ``timestamp`` as
    ``datetime64[ms, UTC]``; metric columns a trial does not report are NaN/null. Other columns
    are merged across parts (``unify``): numeric in every part with a value -> float64, text in
    any -> string (numbers as text), no value anywhere -> float64 NaN. Raises ``SchemaError``
    for a file that lacks a fixed column or has one of another type.
    """
    for attempt in range(3):  # a collect may replace the files between the listing and the read
        fs, files = _files(str(location))
        if not files:
            raise FileNotFoundError(
                f"load: {location} holds no parquet files (run analysis.collect)"
            )
        try:
            tables = [pq.read_table(path, filesystem=fs) for path in files]
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
    for path, table in zip(files, tables, strict=True):
        schema.check(table.schema, path)
    tables = [dataset.live_rows(t, files[p]) for p, t in zip(files, tables, strict=True)]
    table = pa.concat_tables(unify(tables), promote_options="permissive")
    frame = table.to_pandas(types_mapper=pandas_types)
    key = list(schema.KEY)
    return frame.sort_values(key, kind="stable").reset_index(drop=True)
