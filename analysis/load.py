"""Read a collected results dataset into pandas, checking it has the documented schema."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from analysis import schema
from analysis.storage import filesystem


def _types(t: pa.DataType) -> object | None:
    if pa.types.is_integer(t):
        return pd.Int64Dtype()
    if pa.types.is_boolean(t):
        return pd.BooleanDtype()
    return None


def read_part(fs: pafs.FileSystem, path: str) -> pd.DataFrame:
    """One parquet file as pandas (int64 -> Int64, bool -> boolean, nullable)."""
    return pq.read_table(path, filesystem=fs).to_pandas(types_mapper=_types)


def parts(location: str) -> tuple[pafs.FileSystem, list[str]]:
    """The parquet files of a dataset directory (or the one file given)."""
    fs, root = filesystem(location)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        return fs, [root]
    if info.type != pafs.FileType.Directory:
        raise FileNotFoundError(f"load: no results dataset at {location}")
    files = [
        i.path
        for i in fs.get_file_info(pafs.FileSelector(root))
        if i.type == pafs.FileType.File
        and i.base_name.endswith(".parquet")
        and not i.base_name.startswith((".", "_"))
    ]
    return fs, sorted(files)


def load(location: str) -> pd.DataFrame:
    """All rows of a collected dataset (local path or URI), one per (trial, report).

    Fixed columns (``analysis.schema.COLUMNS``) come with their documented dtypes: strings as
    pandas strings, float64, ``Int64`` and ``boolean`` (nullable), ``timestamp`` as
    ``datetime64[ms, UTC]``; metric columns a trial does not report are NaN/null. Raises
    ``SchemaError`` for a file that lacks a fixed column or has one of another type.
    """
    fs, files = parts(str(location))
    if not files:
        raise FileNotFoundError(f"load: {location} holds no parquet files (run analysis.collect)")
    tables = []
    for path in files:
        table = pq.read_table(path, filesystem=fs)
        schema.check(table.schema, path)
        tables.append(table)
    table = pa.concat_tables(tables, promote_options="permissive")
    frame = table.to_pandas(types_mapper=_types)
    key = list(schema.KEY)
    return frame.sort_values(key, kind="stable").reset_index(drop=True)
