"""Loggers that cost nothing until something is logged: ``logging`` is imported on first real use.

``import logging`` costs several milliseconds of every cold ``credential-process`` (it pulls in
threading, traceback, string, weakref…), which usually logs nothing at all. ``get_logger`` returns
a proxy: while ``logging`` has not been imported by anyone, nobody can have configured it, so a
debug or info record could only reach ``logging.lastResort``, which drops it; those calls return
at once. A warning or error imports ``logging`` and goes to the real logger.

``configure`` (called by ``cli.setup_logging``) installs the CLI's handler the moment ``logging``
is imported, by this proxy or by any other module (backends that import ``logging`` themselves),
so every record is formatted the same way whichever path imported it.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not `from typing import ...`: see __init__.py
if TYPE_CHECKING:
    import logging
    from collections.abc import Callable
    from types import ModuleType
    from typing import Any


class LazyLogger:
    """The subset of ``logging.Logger`` this package uses, resolved on first use."""

    __slots__ = ("_logger", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._logger: logging.Logger | None = None

    def _real(self) -> logging.Logger:
        if self._logger is None:
            import logging

            self._logger = logging.getLogger(self.name)
        return self._logger

    def __repr__(self) -> str:
        return f"LazyLogger({self.name!r})"

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        if "logging" in sys.modules:
            self._real().debug(msg, *args, **kwargs)

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        if "logging" in sys.modules:
            self._real().info(msg, *args, **kwargs)

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._real().warning(msg, *args, **kwargs)

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._real().error(msg, *args, **kwargs)

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._real().exception(msg, *args, **kwargs)

    def isEnabledFor(self, level: int) -> bool:
        return "logging" in sys.modules and self._real().isEnabledFor(level)


def get_logger(name: str) -> LazyLogger:
    return LazyLogger(name)


def configure(install: Callable[[ModuleType], None]) -> None:
    """Run ``install(logging)`` now if ``logging`` is loaded, else right after it is first imported."""
    module = sys.modules.get("logging")
    if module is not None:
        install(module)
        return
    for finder in sys.meta_path:
        if isinstance(finder, _OnImport):
            finder.install = install
            return
    sys.meta_path.insert(0, _OnImport(install))


class _OnImport:
    """A meta-path finder that only watches for ``logging`` and runs a hook after it is executed."""

    def __init__(self, install: Callable[[ModuleType], None]) -> None:
        self.install = install

    def find_spec(self, name: str, path: object = None, target: object = None) -> Any:
        if name != "logging":
            return None
        sys.meta_path.remove(self)  # one shot; the other finders locate the real module
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None and spec.loader is not None:
                spec.loader = _InstallAfter(spec.loader, self.install)
                return spec
        return None


class _InstallAfter:
    """Wraps logging's loader: executes the module, then installs the CLI's handler on it."""

    def __init__(self, loader: Any, install: Callable[[ModuleType], None]) -> None:
        self._loader = loader
        self._install = install

    def create_module(self, spec: Any) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        self._install(module)

    def __getattr__(self, name: str) -> Any:  # get_source, is_package, … for tools that ask
        return getattr(self._loader, name)
