"""The registry: finds plugins (built-ins, then entry points) and merges what they provide.

Built once at the entry point (the CLI, or your code: ``load_registry()``) and passed down;
nothing below this layer imports it. A plugin that fails to import, implements a hook that
does not exist (pluggy's ``check_pending``) or returns an invalid item is reported by name
and skipped; in strict mode it is fatal.

Environment variables:
- ``INTERPRET_SHIFT_NO_PLUGINS=1``: load only the built-ins (no entry-point autoload).
- ``INTERPRET_SHIFT_STRICT_PLUGINS=1``: a plugin that fails to load is fatal.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from interpret_shift.core.explainer import Explainer
from interpret_shift.core.method import Claims, DiffMetric, ReportSection
from interpret_shift.core.options import check_value
from interpret_shift.core.resources import Resources
from interpret_shift.errors import InputError, PluginError
from interpret_shift.plugins import hookspecs
from interpret_shift.plugins.builtin import BUILTIN_PLUGINS

ENTRY_POINT_GROUP = "interpret_shift"
DISABLE_ENV = "INTERPRET_SHIFT_NO_PLUGINS"
STRICT_ENV = "INTERPRET_SHIFT_STRICT_PLUGINS"
HOOKS = tuple(name for name in dir(hookspecs) if name.startswith("interpret_shift_"))
#: The hooks whose items are named resources that lower layers look up by name.
RESOURCE_HOOKS = ("word_lists", "similarity_backends", "annotators")


@dataclass
class Registry:
    """Everything the loaded plugins provide, by hook and name; built by ``load_registry``."""

    pm: pluggy.PluginManager
    strict: bool = False
    failures: dict[str, str] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    _cache: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    # -- collecting ----------------------------------------------------------------------
    def collect(self, hook: str) -> dict[str, Any]:
        """A hook's items of every plugin by name; the first registered wins, invalid ones
        are reported by plugin and skipped (fatal in strict mode)."""
        if hook in self._cache:
            return self._cache[hook]
        merged: dict[str, Any] = {}
        for impl in getattr(self.pm.hook, f"interpret_shift_{hook}").get_hookimpls():
            try:
                items = list(impl.function() or [])
                for item in items:
                    _validate(hook, item)
            except Exception as error:
                self._fail(impl.plugin_name, f"{hook}: {type(error).__name__}: {error}", error)
                continue
            for item in items:
                name = item.name
                if name in merged:
                    self.conflicts.append(f"{hook}: {name!r} from {impl.plugin_name} ignored")
                    continue
                merged[name] = item
        self._cache[hook] = merged
        return merged

    def _fail(self, plugin: str, message: str, error: Exception | None = None) -> None:
        if self.strict:
            raise PluginError(
                f"Plugin {plugin!r} is broken: {message}",
                f"Fix or uninstall it, or unset {STRICT_ENV} to skip broken plugins.",
            ) from error
        earlier = self.failures.get(plugin)
        self.failures[plugin] = f"{earlier}; {message}" if earlier else message

    # -- what the pipeline asks for --------------------------------------------------------
    def explainers(self) -> dict[str, type[Explainer]]:
        return self.collect("explainers")

    def builtin_explainers(self) -> list[str]:
        """The explainers of the built-in plugins: what runs when none are named."""
        builtin = {self.pm.get_plugin(name) for name in BUILTIN_PLUGINS}
        return [name for impl in self.pm.hook.interpret_shift_explainers.get_hookimpls()
                if impl.plugin in builtin for name in
                (cls.name for cls in impl.function() or [])]  # fmt: skip

    def adapters(self) -> list:
        return list(self.collect("adapters").values())

    def resources(self) -> Resources:
        return Resources({hook: self.collect(hook) for hook in RESOURCE_HOOKS})

    def diff_metrics_for(self, name: str, data_kind: str | None) -> list[DiffMetric]:
        """The explainer's own metrics and the generic ones of its data kind."""
        return [m for m in self.collect("diff_metrics").values() if _applies(m, name, data_kind)]

    def claims_for(self, name: str, data_kind: str | None) -> list[Claims]:
        """The explainer's own claims, or else the generic ones of its data kind."""
        pieces = list(self.collect("claims").values())
        own = [p for p in pieces if p.explainer == name]
        return own or [p for p in pieces if p.explainer is None and p.data_kind == data_kind]

    def sections(self) -> list[ReportSection]:
        return list(self.collect("report_sections").values())

    def make_explainer(self, name: str, options: dict[str, Any] | None = None) -> Explainer:
        """An explainer with its options; options of its diff metrics are left out here."""
        return self.prepare(name, options)[0]

    def prepare(
        self, name: str, options: dict[str, Any] | None = None
    ) -> tuple[Explainer, dict[str, Any]]:
        """The explainer ``name`` built with its options, and its diff metrics' options
        (defaults filled in), all checked."""
        explainers = self.explainers()
        if name not in explainers:
            raise PluginError(
                f"Unknown explainer {name!r}.",
                f"Available: {', '.join(sorted(explainers))} (see `interpret-shift plugins`).",
            )
        cls = explainers[name]
        config, diff = self.split_options(cls, options or {})
        return cls(self.resources(), **config), diff

    def split_options(
        self, explainer: type[Explainer], options: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Options of the explainer's config, and those of its diff metrics (with defaults)."""
        fields = {f.name for f in dataclasses.fields(explainer.Config)}
        defaults: dict[str, Any] = {}
        minimums: dict[str, float] = {}
        for metric in self.diff_metrics_for(explainer.name, explainer.data_kind):
            defaults.update(metric.options)
            minimums.update(metric.minimums)
        unknown = sorted(set(options) - fields - set(defaults))
        if unknown:
            raise InputError(
                f"Explainer {explainer.name!r} has no option {unknown[0]!r}.",
                f"Its options are: {', '.join(sorted(fields | set(defaults))) or '(none)'}.",
            )
        config = {k: v for k, v in options.items() if k in fields}
        diff = {**defaults, **{k: v for k, v in options.items() if k not in fields}}
        for key, value in diff.items():
            check_value(f"{explainer.name}.{key}", value, type(defaults[key]),
                        {"min": minimums.get(key)})  # fmt: skip
        for metric in self.diff_metrics_for(explainer.name, explainer.data_kind):
            if metric.check is not None:
                metric.check(diff, self.resources())
        return config, diff

    def provided(self) -> dict[str, dict[str, list[str]]]:
        """Per plugin, per hook, the names it provides (for ``interpret-shift plugins``)."""
        for hook_name in HOOKS:  # validates every item, so broken plugins show as failed
            self.collect(hook_name.removeprefix("interpret_shift_"))
        table: dict[str, dict[str, list[str]]] = {}
        for hook_name in HOOKS:
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin_name in self.failures:
                    continue
                names = [getattr(item, "name", repr(item)) for item in impl.function() or []]
                if names:
                    hook = hook_name.removeprefix("interpret_shift_")
                    table.setdefault(impl.plugin_name, {})[hook] = names
        return table


def _applies(piece, name: str, data_kind: str | None) -> bool:
    return piece.explainer == name or (piece.explainer is None and piece.data_kind == data_kind)


def _validate(hook: str, item: Any) -> None:
    """Raise on an item that would break later use (checked when the registry loads)."""
    if not isinstance(getattr(item, "name", None), str) or not item.name:
        raise PluginError(f"an item of {hook} has no name: {item!r}")
    if hook == "explainers" and not (isinstance(item, type) and issubclass(item, Explainer)):
        raise PluginError(f"{item!r} is not an Explainer subclass")
    expected = {"diff_metrics": DiffMetric, "claims": Claims, "report_sections": ReportSection}
    if hook in expected and not isinstance(item, expected[hook]):
        raise PluginError(f"{item!r} is not a {expected[hook].__name__}")
    if hasattr(item, "validate") and not isinstance(item, type):
        item.validate()


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def load_registry(autoload: bool | None = None, strict: bool | None = None) -> Registry:
    """A registry of the built-ins, then every plugin of the entry-point group.

    A plugin that fails to import or names an unknown hook is recorded by name with its
    error and skipped, unless ``strict`` (or ``INTERPRET_SHIFT_STRICT_PLUGINS``) makes it
    fatal.
    """
    autoload = not _flag(DISABLE_ENV) if autoload is None else autoload
    strict = _flag(STRICT_ENV) if strict is None else strict
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name, plugin in BUILTIN_PLUGINS.items():
        pm.register(plugin, name=name)
    registry = Registry(pm, strict)
    if autoload:
        for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if not pm.has_plugin(entry_point.name):
                register(registry, entry_point.name, entry_point.load, entry_point.value)
    return registry


def register(registry: Registry, name: str, load, where: str = "") -> None:
    """Load and register one plugin, reporting (not raising) what goes wrong unless strict."""
    try:
        plugin = load()
        registry.pm.register(plugin, name=name)
        registry.pm.check_pending()  # a hook implementation with no hookspec: a typo
    except Exception as error:  # a broken plugin must not take the tool down
        plugin = registry.pm.get_plugin(name)
        if plugin is not None:
            registry.pm.unregister(plugin)
        registry._fail(name, f"{type(error).__name__}: {error}" + (f" ({where})" if where else ""),
                       error)  # fmt: skip
    registry._cache.clear()
