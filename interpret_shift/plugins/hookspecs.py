"""The plugin contract: every hook a plugin may implement, as a documented signature.

A plugin is a module or object with functions decorated by ``hookimpl`` and named as
below, registered under the ``interpret_shift`` entry-point group::

    [project.entry-points.interpret_shift]
    my_plugin = "my_package.plugin"

Each hook returns a list; the registry merges the lists of all plugins. Names must be
unique across plugins: a clash is reported and the later one dropped. A hook name that is
not below (a typo) makes the plugin fail to load, with the name in the message.
"""

from __future__ import annotations

import pluggy

from interpret_shift.core.method import PROJECT, hookimpl

__all__ = ["PROJECT", "hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker(PROJECT)


@hookspec
def interpret_shift_explainers() -> list[type]:
    """Explainer classes (subclasses of ``interpret_shift.Explainer``)."""


@hookspec
def interpret_shift_diff_metrics() -> list:
    """``DiffMetric`` objects: comparisons of two record sets, for one explainer
    (``explainer=``) or for every explainer of a data kind (``data_kind=``)."""


@hookspec
def interpret_shift_claims() -> list:
    """``Claims`` objects: turn an explainer's diff into headline findings for the summary."""


@hookspec
def interpret_shift_report_sections() -> list:
    """``ReportSection`` objects: sections of ``report.html`` drawn from an explainer's diff.
    An explainer without sections of its own gets the generic ones of its data kind."""


@hookspec
def interpret_shift_adapters() -> list:
    """Architecture adapters (``interpret_shift.core.adapters.Adapter`` tables)."""


@hookspec
def interpret_shift_similarity_backends() -> list:
    """Word-similarity backends for the head-pattern explainer's context filter."""


@hookspec
def interpret_shift_annotators() -> list:
    """Concept annotators that label an FFN component's word list."""


@hookspec
def interpret_shift_word_lists() -> list:
    """Word-list providers (vocabulary words, frequency lists, verb lists)."""
