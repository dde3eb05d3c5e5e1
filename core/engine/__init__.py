"""Engine floor: the measurements — dissection and its streaming statistics, interventions,
causal effects, FID, MS-SWD and repair. Imports only ``core.base``: it works on any model that
meets the protocols and never knows where a model came from."""
from core.engine import causal, dissection, fid, intervention, repair, swd, tally  # noqa: F401

__all__ = ["causal", "dissection", "fid", "intervention", "repair", "swd", "tally"]
