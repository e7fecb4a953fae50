"""The pass@k `evaluate` module: `pass_at_k.py` and the sandbox it runs programs in (`execution.py`),
with no import of the rest of codesift, so the folder loads by itself."""
