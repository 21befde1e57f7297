"""Data files people edit (alert rules, the responsibility list): YAML validated once by
a pydantic model, every problem listed with its place."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
Loc = tuple[int | str, ...]


def validate_yaml(
    text: str,
    model: type[M],
    *,
    source: str,
    what: str,
    error: type[ValueError],
    label: Callable[[Any, Loc], str] = lambda _data, _loc: "",
) -> M:
    """``text`` as ``model``; raises ``error`` naming ``source`` and each problem's place
    (``label(data, loc)`` may add to a place, e.g. the id of the rule it is in)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise error(f"{source}: not valid YAML: {err}") from err
    try:
        return model.model_validate(data)
    except ValidationError as err:
        problems = [
            f"  {'.'.join(str(p) for p in e['loc'])}{label(data, e['loc'])}: {e['msg']}"
            for e in err.errors()
        ]
        raise error(f"{source}: invalid {what}:\n" + "\n".join(problems)) from err
