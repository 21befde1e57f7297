"""Keyset pagination shared by every list: newest first by id, ``next_cursor`` → ``cursor``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field

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


def from_row(model: type[M], row: Sequence[Any]) -> M:
    """``model`` from a query row whose columns are in the order of its fields."""
    return model(**dict(zip(model.model_fields, row, strict=True)))
