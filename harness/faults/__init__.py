"""Faults on a timeline during the measured window (injector.py) and the cascade numbers
taken at the edge while and after they last (cascade.py)."""
