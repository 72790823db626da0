"""The engine pool: the backend that answers for one model.

transformers loads each model on its own. vLLM keeps one engine per base model (LoRA enabled when some unit on
that base is an adapter, rank from the adapters unless ``--max-lora-rank``) and serves every adapter of that
base from it; a new base closes the previous engine. vLLM's CPU settings are the shared core's
(``llamafactory_minor_core.vllm_scoring``, used by backends/vllm_backend.py).
"""

from .config import RunConfig
from .plan import Unit


def lmeval_dtype(cfg: RunConfig) -> str:
    """The dtype lm-eval's own model classes get: ``--dtype``, else float32 on CPU and the model's on GPU (the
    core's rule, :func:`llamafactory_minor_core.vllm_scoring.engine_dtype`)."""
    from llamafactory_minor_core.vllm_scoring import engine_dtype

    return engine_dtype(cfg.dtype)


def transformers_backend(cfg: RunConfig, unit: Unit):
    from .backends.hf import TransformersBackend

    return TransformersBackend(
        unit.ckpt.model_path,
        adapter=unit.ckpt.adapter,
        dtype=cfg.dtype,
        device=cfg.device,
        batch_size=cfg.batch_size,
        trust_remote_code=cfg.trust_remote_code,
    )


class EnginePool:
    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self._engines: dict[str, object] = {}

    def backend_for(self, unit: Unit, units: list[Unit]):
        """The backend of ``unit`` (``units``: every unit of the run, for the LoRA settings of a vLLM engine)."""
        cfg = self.cfg
        ckpt = unit.ckpt
        if cfg.backend == "transformers":
            return transformers_backend(cfg, unit)
        from .backends.vllm_backend import VLLMBackend, VLLMEngine
        from .models import adapter_rank

        key = ckpt.identity()["model"]
        if key not in self._engines:
            self.close()
            same_base = [u for u in units if u.ckpt.identity()["model"] == key and u.ckpt.adapter]
            rank = cfg.max_lora_rank or max([adapter_rank(u.ckpt.adapter) for u in same_base] or [16])
            self._engines[key] = VLLMEngine(
                ckpt.model_path,
                dtype=cfg.dtype,
                tensor_parallel_size=cfg.tensor_parallel_size,
                enable_lora=bool(same_base),
                max_lora_rank=rank,
                max_model_len=cfg.vllm_max_model_len,
                gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
                kv_cache_gb=cfg.vllm_kv_cache_gb,
                enforce_eager=cfg.vllm_enforce_eager,
                seed=cfg.seed,
                trust_remote_code=cfg.trust_remote_code,
            )
        return VLLMBackend(self._engines[key], adapter=ckpt.adapter)

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()


def lmeval_vllm_kwargs(pretrained: str, dtype: str = "auto", cpu: bool | None = None) -> dict:
    """The arguments of lm-eval's ``VLLM`` model class (lmeval_suite.py, lmeval_bridge.py) with the core's CPU
    settings: dtype by :func:`~llamafactory_minor_core.vllm_scoring.engine_dtype`, eager, and on CPU the KV cache
    of :data:`~llamafactory_minor_core.vllm_scoring.CPU_KV_CACHE_GB` (``set_cpu_env``; lm-eval also takes it
    as ``kv_cache_memory_bytes``)."""
    from llamafactory_minor_core import vllm_scoring

    cpu = vllm_scoring.on_cpu() if cpu is None else cpu
    kwargs = dict(
        pretrained=pretrained, dtype=vllm_scoring.engine_dtype(dtype, cpu), batch_size="auto", enforce_eager=True
    )
    if cpu:
        vllm_scoring.set_cpu_env()
        kwargs["kv_cache_memory_bytes"] = vllm_scoring.CPU_KV_CACHE_GB << 30
    return kwargs
