"""codesift: influence-based pretraining data selection for code LLMs, on the Hugging Face stack."""

__version__ = "0.1.0"
