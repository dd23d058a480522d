"""Hooks: how a lower layer calls code that a higher layer provides.

Imports point down only. Where a lower layer needs behaviour that belongs
above it (``Task.objects.enqueue`` needs the registry; eager mode needs the
worker), it declares a :class:`Hook` and calls through it, and the higher
layer registers its implementation when it is imported. The app's
``ready()`` imports every provider, so in a configured project each hook is
filled before any request, task or command runs.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from django.core.exceptions import ImproperlyConfigured

T = TypeVar("T")


class Hook(Generic[T]):
    """One implementation that a higher layer plugs into a lower one."""

    def __init__(self, purpose: str, provider: str, default: T | None = None) -> None:
        #: What the hook does, for the error when nothing was registered.
        self.purpose = purpose
        #: The module that registers the implementation.
        self.provider = provider
        #: What :meth:`get` returns while nothing is registered (None: an error).
        self.default = default
        self._implementation: T | None = None

    def register(self, implementation: T) -> T:
        """Plug ``implementation`` in (a later registration replaces it); return it."""
        self._implementation = implementation
        return implementation

    def get(self) -> T:
        """The registered implementation, else the default; ImproperlyConfigured
        when there is neither."""
        implementation = self._implementation or self.default
        if implementation is None:
            raise ImproperlyConfigured(
                f"Nothing provides {self.purpose}: {self.provider} registers it when it is "
                f"imported, which happens when Django sets up the apps. Is 'background_task' "
                f"in INSTALLED_APPS, and was django.setup() called?"
            )
        return implementation

    def __repr__(self) -> str:
        state = "registered" if self._implementation is not None else "empty"
        return f"<Hook {self.purpose} ({state})>"
