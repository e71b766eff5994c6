"""The plugin contract: every hook a plugin may implement, as a documented signature.

A plugin is a module or object with functions decorated by ``hookimpl`` and named
as below, registered under the ``interpret_shift`` entry-point group::

    [project.entry-points.interpret_shift]
    my_plugin = "my_package.plugin"

Each hook returns a list; the plugin manager merges the lists of all plugins.
Names must be unique across plugins: a clash is reported and the later one dropped.
"""

from __future__ import annotations

import pluggy

PROJECT = "interpret_shift"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def interpret_shift_explainers() -> list[type]:
    """Explainer classes (subclasses of ``interpret_shift.explainers.Explainer``)."""


@hookspec
def interpret_shift_adapters() -> list:
    """Architecture adapters (``interpret_shift.adapters.Adapter`` tables)."""


@hookspec
def interpret_shift_diff_metrics() -> list:
    """Comparisons of two explanation records of one data kind (``DiffMetric`` objects)."""


@hookspec
def interpret_shift_similarity_backends() -> list:
    """Word-similarity backends for the head-pattern explainer's context filter."""


@hookspec
def interpret_shift_annotators() -> list:
    """Concept annotators that label an FFN component's word list."""


@hookspec
def interpret_shift_word_lists() -> list:
    """Word-list providers (vocabulary words, frequency lists, verb lists)."""
