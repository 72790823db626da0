"""The papers' experiments as pipelines: one grid definition read by both the training sweep and the evaluation.

Nothing here imports LLaMA-Factory or torch at import time (the evaluation venv reads grid files too).
"""
