"""Causal measurements (paper §3.2, §4.3–4.4, S-6.4–6.5), one module each:

- :mod:`~core.engine.causal.effect` — the average causal effect (eq. 4) and its optimisation (eq. 5–6);
- :mod:`~core.engine.causal.locations` — where ACE intervenes (the paper's sampling, the whole-image one);
- :mod:`~core.engine.causal.curves` — ablation curves and removal fractions;
- :mod:`~core.engine.causal.context` — where a concept can be inserted, by context (Fig. 11);
- :mod:`~core.engine.causal.tracing` — how an edit changes the later layers.

Every edit goes through :class:`core.engine.intervention.Edit` (per call, thread-local): the model
is shared and never mutated. Aggregations over seeds and generators, and "which units for this
concept", are studies (:mod:`core.studies.over_seeds`, :mod:`core.studies.units`).
"""
from core.engine.causal.context import context_study, context_summary, majority_context
from core.engine.causal.curves import COUNTS, CURVE_VERSION, ablation_curve, removal_fraction
from core.engine.causal.effect import ACE_VERSION, SAMPLINGS, AceOptions, AceResult, ace, causal_effect
from core.engine.causal.locations import LOCATIONS
from core.engine.causal.tracing import channel_scales, trace_effect

__all__ = ["causal_effect", "ace", "AceResult", "AceOptions", "ablation_curve", "removal_fraction", "context_study",
           "context_summary", "majority_context", "channel_scales", "trace_effect", "SAMPLINGS", "LOCATIONS",
           "ACE_VERSION", "CURVE_VERSION", "COUNTS"]
