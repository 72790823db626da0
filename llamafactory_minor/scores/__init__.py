"""Scores from other models, computed once and cached: reference log-probs and aligned-LLM scores."""
