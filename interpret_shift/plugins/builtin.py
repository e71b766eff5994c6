"""The built-in plugins, registered exactly like external ones, through the hookspecs:
the architecture tables, the lexicon's word lists and similarity backends, the generic
diff metrics, claims and report sections, and one plugin module per built-in method."""

from __future__ import annotations

from interpret_shift.core.adapters import BUILTIN_ADAPTERS
from interpret_shift.core.method import Bundle
from interpret_shift.diff.generic import GENERIC_CLAIMS, GENERIC_DIFF_METRICS
from interpret_shift.diff.model import MODEL_CLAIMS
from interpret_shift.lexicon.similarity import BUILTIN_BACKENDS
from interpret_shift.lexicon.words import BUILTIN_WORD_LISTS
from interpret_shift.methods.diff_lens import plugin as diff_lens
from interpret_shift.methods.ffn import plugin as ffn
from interpret_shift.methods.heads import plugin as heads
from interpret_shift.methods.patching import plugin as patching
from interpret_shift.methods.saliency import plugin as saliency
from interpret_shift.methods.token_shift import plugin as token_shift
from interpret_shift.methods.weight_spectrum import plugin as weight_spectrum
from interpret_shift.report.generic import GENERIC_SECTIONS

#: What the layers below the methods provide.
CORE = Bundle(
    adapters=BUILTIN_ADAPTERS,
    word_lists=BUILTIN_WORD_LISTS,
    similarity_backends=BUILTIN_BACKENDS,
    diff_metrics=GENERIC_DIFF_METRICS,
    claims=[*GENERIC_CLAIMS, *MODEL_CLAIMS],
    report_sections=GENERIC_SECTIONS,
)

#: Registered first, in this order, under these names.
BUILTIN_PLUGINS = {
    "builtin": CORE,
    "saliency": saliency.PLUGIN,
    "heads": heads.PLUGIN,
    "ffn": ffn.PLUGIN,
    "token_shift": token_shift.PLUGIN,
    "diff_lens": diff_lens.PLUGIN,
    "patching": patching.PLUGIN,
    "weight_spectrum": weight_spectrum.PLUGIN,
}
