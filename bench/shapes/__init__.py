"""Load shapes, one module each (see base.py). Every module in this package is imported here, so a new
shape is one new module: its model, schedule, pacer and overrides, registered with `@register`."""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Annotated, Union

from pydantic import Field

from bench.shapes.base import LoadShape, Pacer, RunContext, register

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

if TYPE_CHECKING:
    Shape = LoadShape
else:  # pydantic picks the model by `kind`, and its errors name the shape's own fields
    Shape = Annotated[Union[tuple(LoadShape.REGISTRY.values())], Field(discriminator="kind")]  # noqa: UP007

__all__ = ["LoadShape", "Pacer", "RunContext", "Shape", "register"]
