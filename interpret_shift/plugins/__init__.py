"""Plugins: the hookspecs, the registry and the built-in registrations."""

from interpret_shift.plugins.hookspecs import hookimpl
from interpret_shift.plugins.registry import Registry, load_registry, register

__all__ = ["Registry", "hookimpl", "load_registry", "register"]
