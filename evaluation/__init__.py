"""llamafactory_minor_eval: the evaluation suite of llamafactory-minor (installed from ``evaluation/``).

Benchmarks (C-Eval, FinanceIQ, FinEval, GSM8K) with the MinorSFT / MinorDPO papers' prompts, answer
parsing, transformers and vLLM backends, batch runs over checkpoints, tables, charts and the deviation
metric m_theta. It never imports llamafactory, so it also runs in a separate vLLM environment.
"""

__version__ = "0.1.0"
