"""Classes of costly modules, for `isinstance` and `except`, without importing them.

psycopg takes a sixth of a second to import and the ORM a tenth, and a
command on SQLite needs neither; yet the SQLAlchemy adapter tests objects
against their classes (`except psycopg.Error`, `isinstance(bind, Session)`)
on every path. A class's instances exist only once its module is imported,
so until then the answer to such a test is known: no. `IfImported` and
`if_imported` give that answer without importing anything, and the module's
own classes once it is imported.

Only for tests of objects: code that calls, or reads the attributes of, one
of these names must run where the module is known to be imported (a
PostgreSQL engine's code: creating the engine imported psycopg). Under
`TYPE_CHECKING` the modules import the real names, for mypy.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__all__ = ["IfImported", "if_imported"]


class NotImported(Exception):  # noqa: N818 - not an error: a class nothing is an instance of
    """What an attribute of a module that is not imported stands for: never
    raised nor made, so `except` and `isinstance` never match it."""


class IfImported:
    """Module `name`'s attributes, looked up when used: the module's own if it
    is imported, else `NotImported`. Once found, an attribute is kept, and
    later look-ups cost what a module attribute's does."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:  # noqa: ANN401 - whatever the module holds
        module = sys.modules.get(self._name)
        if module is None:
            return NotImported
        value = getattr(module, attribute)
        setattr(self, attribute, value)
        return value

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name!r}>"


class _IfImportedClass(type):
    """The type of `if_imported`'s classes: `isinstance` asks the real class,
    once its module is imported."""

    _attribute: str

    def __instancecheck__(cls, instance: object) -> bool:
        module = sys.modules.get(cls.__module__)
        return module is not None and isinstance(instance, getattr(module, cls._attribute))

    def __getitem__(cls, parameters: object) -> Any:  # noqa: ANN401 - a generic alias
        # Only an annotation being evaluated (pdoc, `typing.get_type_hints`)
        # subscripts a class here: it gets the real one's, which imports it.
        real = getattr(importlib.import_module(cls.__module__), cls._attribute)
        return real[parameters]


def if_imported(module: str, attribute: str) -> type[Any]:
    """A stand-in for the class `module.attribute`, for `isinstance` only
    (`except` does not consult it: use `IfImported` there): an object is an
    instance of it if the module is imported and the object is an instance of
    the real class. It bears the real one's name, for annotations shown."""
    return _IfImportedClass(
        attribute, (), {"_attribute": attribute, "__module__": module, "__qualname__": attribute}
    )
