"""llamafactory_minor_core: what the training plugin (``llamafactory_minor``) and the evaluation suite
(``llamafactory_minor_eval``) both compute, written once.

* :mod:`.io` -- atomic file writes (temporary file, fsync, rename) and JSONL appends / readers that survive
  a torn last line (a crash while appending);
* :mod:`.logprobs` -- per-token and per-sequence label log-probs of a causal LM's logits (LF's shift and
  ``-100`` mask; chunked, memory-lean, differentiable);
* :mod:`.metrics` -- the length-normalised rewards and the deviation metric m_theta (MinorSFT Eq. 8);
* :mod:`.vllm_scoring` -- vLLM prompt log-prob sums, vLLM's CPU engine settings, and the scoring worker
  (a script that needs only the standard library and vLLM).

The base layer: it imports neither LLaMA-Factory nor ``llamafactory_minor`` nor ``llamafactory_minor_eval``
(torch only inside :mod:`.logprobs` and :mod:`.metrics`), so it is installed with the package and linked
into the separate vLLM environment beside the evaluation suite (``evaluation/setup_vllm_cpu.sh``).
"""
