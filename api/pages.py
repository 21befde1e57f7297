"""Keyset pagination shared by every list: newest first by id, ``next_cursor`` → ``cursor``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from psycopg import sql
from psycopg.abc import Params
from psycopg.rows import class_row
from pydantic import BaseModel, Field

from estate.db import Conn

SqlQuery = str | sql.SQL | sql.Composed
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

Limit = Annotated[int, Query(ge=1, le=500, description="items per page")]
Cursor = Annotated[
    str | None, Query(pattern=r"^\d{1,18}$", description="`next_cursor` of the page before")
]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null on the last page"
    )


def cursor_id(cursor: str | None) -> int | None:
    return int(cursor) if cursor else None


def page(items: Sequence[T], limit: int, key: Callable[[T], int]) -> Page[T]:
    """A page of ``items`` (at most ``limit``); a full page may have a next one."""
    more = len(items) == limit
    return Page[T](items=list(items), next_cursor=str(key(items[-1])) if more else None)


def fetch_all(c: Conn, model: type[M], query: SqlQuery, params: Params | None = None) -> list[M]:
    """The rows of ``query`` as ``model``s, by column name (psycopg's ``class_row``): a
    field the query does not name is a validation error, never a shifted column."""
    with c.cursor(row_factory=class_row(model)) as cur:
        return cur.execute(query, params).fetchall()


def fetch_one(c: Conn, model: type[M], query: SqlQuery, params: Params | None = None) -> M | None:
    """The first row of ``query`` as a ``model`` (by column name), or None."""
    with c.cursor(row_factory=class_row(model)) as cur:
        return cur.execute(query, params).fetchone()
