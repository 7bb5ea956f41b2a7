"""Typed registries that plugins fill through the ``iasf_register_*`` hooks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from iasf_search.errors import BadInput, allowed, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Named components of one kind (``"op"``, ``"fusion"``, ...), each remembered with its plugin.

    Registering a name twice is an error naming both plugins; looking up an unknown name is an
    error listing the registered names and the closest one.
    """

    def __init__(self, kind: str, base: type) -> None:
        self.kind = kind
        self._base = base
        self._items: dict[str, T] = {}
        self._owners: dict[str, str] = {}
        self._plugin = "<unknown>"

    def register(self, item: T) -> T:
        """Add ``item`` under ``item.name``; called by plugins inside their registration hook."""
        if not isinstance(item, self._base):
            raise BadInput(f"plugin '{self._plugin}' registered {item!r} as a {self.kind}, which must be a {self._base.__name__} instance")
        name = getattr(item, "name", None)
        if not isinstance(name, str) or not name:
            raise BadInput(f"plugin '{self._plugin}' registered a {self.kind} without a name")
        if name in self._items:
            raise BadInput(
                f"{self.kind} '{name}' is registered by two plugins: '{self._owners[name]}' and '{self._plugin}'; "
                f"uninstall or disable one of them"
            )
        self._items[name] = item
        self._owners[name] = self._plugin
        return item

    def get(self, name: str) -> T:
        """The component called ``name``; raises BadInput naming the registered ones."""
        try:
            return self._items[name]
        except KeyError:
            raise BadInput(f"unknown {self.kind} '{name}'{did_you_mean(name, self._items)}; {allowed(self._items)}") from None

    def owner(self, name: str) -> str:
        """The plugin that registered ``name``."""
        return self._owners[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return list(self._items)

    def _as_plugin(self, plugin: str) -> Registry[T]:
        self._plugin = plugin
        return self
