"""Turning resolver results (pydantic models) into Strawberry types, and GraphQL inputs into dicts."""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

from pydantic import BaseModel
from strawberry import UNSET

T = TypeVar("T")


_init_params: dict[type, frozenset[str]] = {}


def build(cls: type[T], model: BaseModel) -> T:
    params = _init_params.get(cls)
    if params is None:
        params = _init_params[cls] = frozenset(inspect.signature(cls).parameters)
    return cls(**{k: getattr(model, k) for k in model.__class__.model_fields if k in params})


def input_dict(value: object) -> dict[str, Any]:
    """Only the fields the client sent: UNSET means 'leave alone', None means 'clear'."""
    return {k: v for k, v in vars(value).items() if v is not UNSET}
