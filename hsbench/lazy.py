"""Package exports that load on first use, so that ``import hsbench.cli`` stays torch-free.

A package lists ``name -> module`` and installs the two module-level hooks of
PEP 562::

    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose ``exports`` load on first access.

    Args:
        package: the package's ``__name__``.
        exports: exported name -> its module, relative to ``package`` (``"hyperseg"``) or
            absolute (``"hsbench.store.db"``).
        namespace: the package's ``globals()``; a loaded name is cached there.

    The returned ``__getattr__`` raises AttributeError for names not in ``exports``.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        path = module if module.startswith("hsbench.") else f"{package}.{module}"
        value = getattr(importlib.import_module(path), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
