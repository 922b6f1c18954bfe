"""Collections of chunks in LanceDB, one table per collection under LANCEDB_URI.

Each table records in its schema metadata the model and dimension its vectors
came from; opening it with another model raises `ModelMismatch`, so vectors of
two models are never mixed. A full-text index on `text` serves hybrid search.
When a table grows past the threshold an ANN vector index is built; rows added
later are searched flat until `optimize` folds them into the index.
All methods are blocking: callers run them in a thread.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:  # lancedb loads with the first table (its import took seconds of the function's start)
    from lancedb.index import IvfFlat, IvfHnswSq, IvfPq

MODEL_KEY = b"victor.model"
DIMENSION_KEY = b"victor.dimension"
COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
VECTOR_INDEX = "vector_idx"
TEXT_INDEX = "text_idx"


class ModelMismatch(Exception):
    """The collection was built with another model (answered 409)."""


class UnknownCollection(Exception):
    """Searching a collection that was never indexed (answered 404)."""


def check_collection_name(name: str) -> str:
    if not COLLECTION_NAME.match(name):
        raise ValueError(
            f"collection {name!r} is not a valid name: use 1-64 letters, digits, '_' or '-',"
            " starting with a letter or digit"
        )
    return name


def quote(value: str) -> str:
    """A SQL string literal for LanceDB filters."""
    return "'" + value.replace("'", "''") + "'"


def schema(model: str, dimension: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("id", pa.string()),
            pa.field("path", pa.string()),
            pa.field("start_line", pa.int32()),
            pa.field("end_line", pa.int32()),
            pa.field("language", pa.string()),
            pa.field("text", pa.string()),
            pa.field("metadata", pa.string()),
            pa.field("content_hash", pa.string()),
            # "file" (from the workspace) or "document" (given inline): only files vanish with a directory.
            pa.field("kind", pa.string()),
            pa.field("vector", pa.list_(pa.float32(), dimension)),
        ],
        metadata={MODEL_KEY: model.encode(), DIMENSION_KEY: str(dimension).encode()},
    )


@dataclass
class IndexPlan:
    threshold: int
    index_type: str


class VectorStore:
    def __init__(self, connect: Callable[[], Any], model: str, dimension: int, plan: IndexPlan) -> None:
        # LanceDB is connected on first use: importing it takes about a second, off the start path.
        self._connect = connect
        self.model = model
        self.dimension = dimension
        self.plan = plan
        self._tables: dict[str, Any] = {}
        self._write_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._indexed: set[str] = set()

    @property
    def db(self) -> Any:
        return self._connect()

    def write_lock(self, collection: str) -> threading.Lock:
        with self._guard:
            return self._write_locks.setdefault(collection, threading.Lock())

    def _check(self, collection: str, table: Any) -> Any:
        metadata = table.schema.metadata or {}
        model = metadata.get(MODEL_KEY, b"").decode()
        dimension = int(metadata.get(DIMENSION_KEY, b"0") or 0)
        if model != self.model or dimension != self.dimension:
            raise ModelMismatch(
                f"collection {collection!r} holds vectors of model {model!r} ({dimension} dimensions),"
                f" but this function embeds with {self.model!r} ({self.dimension} dimensions);"
                " use another collection or re-index it under the same model"
            )
        return table

    def table(self, collection: str, *, create: bool) -> Any:
        """The collection's table (checked against the model); created empty when `create`."""
        check_collection_name(collection)
        with self._guard:
            cached = self._tables.get(collection)
        if cached is not None:
            return cached
        try:
            table = self.db.open_table(collection)
        except (ValueError, FileNotFoundError):
            if not create:
                raise UnknownCollection(
                    f"collection {collection!r} does not exist; index something into it first"
                ) from None
            try:
                table = self.db.create_table(collection, schema=schema(self.model, self.dimension))
            except ValueError:  # created meanwhile by another request or replica
                table = self.db.open_table(collection)
        self._check(collection, table)
        with self._guard:
            self._tables[collection] = table
        return table

    def file_paths_under(self, table: Any, directory: str) -> set[str]:
        """Paths of the workspace files stored from `directory` ("" for the whole workspace)."""
        where = "kind = 'file'"
        if directory:
            where += f" AND starts_with(path, {quote(directory.rstrip('/') + '/')})"
        rows = table.search().where(where).select(["path"]).limit(None).to_arrow()
        return set(rows["path"].to_pylist())

    def stored_hashes(self, table: Any, paths: Sequence[str]) -> dict[str, str]:
        """The content hash of each of `paths` already stored."""
        found: dict[str, str] = {}
        for start in range(0, len(paths), 200):
            part = paths[start : start + 200]
            where = "path IN (" + ", ".join(quote(p) for p in part) + ")"
            rows = table.search().where(where).select(["path", "content_hash"]).limit(None).to_arrow()
            for path, digest in zip(rows["path"].to_pylist(), rows["content_hash"].to_pylist(), strict=True):
                found[path] = digest
        return found

    def replace(self, table: Any, paths: Sequence[str], rows: list[dict[str, Any]]) -> int:
        """Put `rows` in place of every chunk of `paths`, in one commit; returns how many chunks went.

        One merge (update the ids kept, insert the new, delete the rest of those paths) is one
        table version, so a search reads every file either wholly old or wholly new.
        """
        where = "path IN (" + ", ".join(quote(p) for p in paths) + ")"
        removed = int(table.count_rows(where))
        (
            table.merge_insert("id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .when_not_matched_by_source_delete(where)
            .execute(pa.Table.from_pylist(rows, schema=table.schema))
        )
        return removed

    def maintain(self, table: Any) -> None:
        """Keep the FTS index and, past the threshold, the vector index current."""
        from lancedb.index import FTS

        names = {index.name for index in table.list_indices()}
        rows = table.count_rows()
        if TEXT_INDEX not in names and rows:
            table.create_index("text", config=FTS(), replace=True, name=TEXT_INDEX)
        if VECTOR_INDEX not in names and rows >= self.plan.threshold:
            self.build_vector_index(table, rows)
            return
        stale = 0
        for name in names & {TEXT_INDEX, VECTOR_INDEX}:
            stale = max(stale, table.index_stats(name).num_unindexed_rows)
        # Unindexed rows are searched flat: fold them in once there are enough to slow search.
        if stale >= max(1000, self.plan.threshold // 10):
            table.optimize()

    def build_vector_index(self, table: Any, rows: int) -> None:
        from lancedb.index import IvfFlat, IvfHnswSq, IvfPq

        partitions = max(1, int(np.sqrt(rows)))
        config: IvfHnswSq | IvfPq | IvfFlat
        if self.plan.index_type == "IVF_PQ":
            subvectors = max(1, self.dimension // 8)
            config = IvfPq(distance_type="cosine", num_partitions=partitions, num_sub_vectors=subvectors)
        elif self.plan.index_type == "IVF_FLAT":
            config = IvfFlat(distance_type="cosine", num_partitions=partitions)
        else:
            config = IvfHnswSq(distance_type="cosine", num_partitions=partitions)
        table.create_index("vector", config=config, replace=True, name=VECTOR_INDEX)

    def has_vector_index(self, table: Any) -> bool:
        """Whether the table has its ANN index; remembered once seen, as indexes are never dropped here."""
        if table.name in self._indexed:
            return True
        if any(index.name == VECTOR_INDEX for index in table.list_indices()):
            with self._guard:
                self._indexed.add(table.name)
            return True
        return False
