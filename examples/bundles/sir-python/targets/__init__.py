"""Target evaluators of the SIR bundle (see incidence.py)."""
