"""transformers backend: batched, left-padded greedy generation; one forward per batch for option
log-probs and answer log-probs; LoRA adapters through peft."""

import os
from collections.abc import Sequence

from ..errors import EvalError
from .base import Backend, cut_at_stop, logsumexp

IGNORE_INDEX = -100


def _pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EvalError(f"--device {device}: no CUDA device is available")
    return device


def _pick_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype not in table:
        raise EvalError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    return table[dtype]


def load_tokenizer(model_path: str, adapter: str | None = None):
    from transformers import AutoTokenizer

    source = model_path
    if adapter and any(
        os.path.isfile(os.path.join(os.path.expanduser(adapter), f))
        for f in ("tokenizer.json", "tokenizer_config.json")
    ):
        source = adapter
    try:
        tok = AutoTokenizer.from_pretrained(os.path.expanduser(source))
    except Exception as exc:  # noqa: BLE001
        raise EvalError(f"cannot load the tokenizer of {source} ({type(exc).__name__}: {_first_line(exc)})") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.convert_ids_to_tokens(0)
    return tok


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(
        self,
        model_path: str,
        adapter: str | None = None,
        dtype: str = "auto",
        device: str = "auto",
        batch_size: int = 8,
        trust_remote_code: bool = False,
    ):
        from transformers import AutoModelForCausalLM

        self.device = _pick_device(device)
        self.torch_dtype = _pick_dtype(dtype, self.device)
        self.batch_size = max(1, int(batch_size))
        self.model_path = model_path
        self.adapter = adapter
        self.tokenizer = load_tokenizer(model_path, adapter)
        try:
            model = AutoModelForCausalLM.from_pretrained(
                os.path.expanduser(model_path), dtype=self.torch_dtype, trust_remote_code=trust_remote_code
            )
        except OSError as exc:
            raise EvalError(f"cannot load model {model_path} ({_first_line(exc)})") from None
        except ValueError as exc:
            raise EvalError(f"cannot load model {model_path} ({_first_line(exc)})") from None
        if adapter:
            try:
                from peft import PeftModel
            except ImportError:
                raise EvalError("LoRA adapters with the transformers backend need peft: pip install peft") from None
            try:
                model = PeftModel.from_pretrained(model, os.path.expanduser(adapter), is_trainable=False)
            except (RuntimeError, ValueError, KeyError) as exc:
                raise EvalError(
                    f"adapter {adapter} does not fit base model {model_path} ({type(exc).__name__}: {_first_line(exc)})"
                ) from None
        model.to(self.device)
        model.eval()
        self.model = model
        self.eos_ids = self._eos_ids()

    def _eos_ids(self) -> list[int]:
        ids = []
        gen_cfg = getattr(self.model, "generation_config", None)
        eos = getattr(gen_cfg, "eos_token_id", None) if gen_cfg is not None else None
        if isinstance(eos, int):
            ids.append(eos)
        elif isinstance(eos, (list, tuple)):
            ids.extend(int(e) for e in eos)
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ids:
            ids.append(self.tokenizer.eos_token_id)
        return ids

    def describe(self) -> dict[str, object]:
        return {"backend": self.name, "device": self.device, "dtype": str(self.torch_dtype).replace("torch.", "")}

    # ------------------------------------------------------------------------------------------------
    def _batches(self, lengths: list[int]):
        """Index batches, longest first (similar lengths together: little padding; memory errors early)."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        for start in range(0, len(order), self.batch_size):
            yield order[start : start + self.batch_size]

    def _left_pad(self, seqs: list[list[int]]):
        import torch

        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            if seq:
                ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
                mask[row, width - len(seq) :] = 1
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        return ids.to(self.device), mask.to(self.device), position_ids.to(self.device)

    def generate(
        self, prompts: list[list[int]], max_new_tokens: int, progress=None, stop: Sequence[str] | None = None
    ) -> list[str]:
        import torch
        from transformers import GenerationConfig

        stop = [s for s in (stop or ()) if s]
        config = GenerationConfig(
            max_new_tokens=int(max_new_tokens),
            do_sample=False,
            num_beams=1,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.eos_ids or None,
            stop_strings=stop or None,
        )
        extra = {"tokenizer": self.tokenizer} if stop else {}  # transformers needs it to match stop strings
        outputs: list[str | None] = [None] * len(prompts)
        for batch in self._batches([len(p) for p in prompts]):
            ids, mask, _ = self._left_pad([prompts[i] for i in batch])
            with torch.inference_mode():
                out = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=config, **extra)
            new = out[:, ids.shape[1] :].tolist()
            for row, i in enumerate(batch):
                tokens = new[row]
                for cut, tok in enumerate(tokens):  # stop at the first end token (the rest is padding)
                    if tok in self.eos_ids:
                        tokens = tokens[:cut]
                        break
                outputs[i] = cut_at_stop(self.tokenizer.decode(tokens, skip_special_tokens=True), stop)
            if progress is not None:
                progress(len(batch))
        return outputs  # type: ignore[return-value]

    def choice_logprobs(
        self, prompts: list[list[int]], candidates: list[list[int]], progress=None
    ) -> list[list[float]]:
        import torch

        result: list[list[float] | None] = [None] * len(prompts)
        for batch in self._batches([len(p) for p in prompts]):
            ids, mask, pos = self._left_pad([prompts[i] for i in batch])
            with torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1).logits
            logp = torch.log_softmax(logits[:, -1, :].float(), dim=-1).cpu()
            for row, i in enumerate(batch):
                result[i] = [logsumexp([float(logp[row, t]) for t in group]) for group in candidates]
            if progress is not None:
                progress(len(batch))
        return result  # type: ignore[return-value]

    def sequence_logprobs(self, pairs: list[tuple[list[int], list[int]]], progress=None) -> list[float]:
        import torch

        from llamafactory_minor_core.logprobs import sequence_log_probs  # training's own implementation

        result: list[float | None] = [None] * len(pairs)
        for batch in self._batches([len(x) + len(y) for x, y in pairs]):
            seqs = [pairs[i][0] + pairs[i][1] for i in batch]
            ids, mask, pos = self._left_pad(seqs)
            keep = max(len(pairs[i][1]) for i in batch) + 1
            with torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=keep).logits
            # the kept logits are positions width-keep .. width-1 (left padding: every answer ends at width-1);
            # labels over the same window score only each answer (LF's shift and -100 mask, training's code)
            labels = torch.full((len(batch), keep), IGNORE_INDEX, dtype=torch.long, device=logits.device)
            for row, i in enumerate(batch):
                y = pairs[i][1]
                labels[row, keep - len(y) :] = torch.tensor(y, dtype=torch.long)
            sums, _ = sequence_log_probs(logits, labels, ignore_index=IGNORE_INDEX)
            for row, i in enumerate(batch):
                result[i] = float(sums[row])
            if progress is not None:
                progress(len(batch))
        return result  # type: ignore[return-value]

    def close(self) -> None:
        import gc

        self.model = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001
            pass
