"""What every backend provides, and the prompt encoding they share."""

import math
from collections.abc import Sequence

from ..errors import EvalError
from ..parsing import LETTERS
from ..prompts import build_messages, render_plain


class PromptEncoder:
    """Turns a prompt (plus few-shot turns) into token ids with the model's tokenizer.

    chat_template: "auto" (use the tokenizer's chat template when it has one), "on" (required) or
    "off" (plain text: few-shot examples, then the prompt). The text is tokenized without extra special
    tokens when a chat template is applied (the template carries them), with them otherwise.
    """

    def __init__(self, tokenizer, chat_template: str = "auto", system_prompt: str | None = None):
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt or None
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if chat_template not in ("auto", "on", "off"):
            raise EvalError(f"chat_template must be auto, on or off, got {chat_template!r}")
        if chat_template == "on" and not has_template:
            raise EvalError("the tokenizer has no chat template; use --chat-template off (or auto)")
        self.use_chat = has_template and chat_template != "off"
        self._letter_ids: list[list[int]] | None = None

    def render(self, prompt: str, shots: Sequence[tuple[str, str]] = ()) -> str:
        if self.use_chat:
            messages = build_messages(prompt, shots, self.system_prompt)
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return render_plain(prompt, shots, self.system_prompt)

    def encode_text(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=not self.use_chat)["input_ids"])

    def encode(self, prompt: str, shots: Sequence[tuple[str, str]] = ()) -> tuple[str, list[int]]:
        text = self.render(prompt, shots)
        return text, self.encode_text(text)

    def encode_pair(self, prompt: str, answer: str, system: str | None = None) -> tuple[list[int], list[int]]:
        """(x, y) ids for log pi(y|x): x = the prompt as the model sees it before answering (chat template
        with the generation prompt), y = the answer's tokens followed by the end-of-turn (eos) token."""
        if self.use_chat:
            messages = build_messages(prompt, (), system if system is not None else self.system_prompt)
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            x_ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        else:
            x_ids = list(self.tokenizer(render_plain(prompt, (), system), add_special_tokens=True)["input_ids"])
        y_ids = list(self.tokenizer(answer, add_special_tokens=False)["input_ids"])
        if self.tokenizer.eos_token_id is not None:
            y_ids.append(self.tokenizer.eos_token_id)
        return x_ids, y_ids

    def letter_token_ids(self) -> list[list[int]]:
        """For each of A-D, the token ids that spell it as the next token ("A" and " A" where they differ
        and are single tokens). A letter's score is the log of the summed probability of its ids."""
        if self._letter_ids is None:
            ids: list[list[int]] = []
            for letter in LETTERS:
                cands: list[int] = []
                for text in (letter, " " + letter):
                    toks = self.tokenizer(text, add_special_tokens=False)["input_ids"]
                    if len(toks) == 1 and toks[0] not in cands:
                        cands.append(toks[0])
                if not cands:  # a tokenizer that splits a bare letter: use its first piece
                    cands.append(self.tokenizer(letter, add_special_tokens=False)["input_ids"][0])
                ids.append(cands)
            flat = [i for c in ids for i in c]
            if len(flat) != len(set(flat)):
                raise EvalError("the tokenizer maps two of the letters A-D to the same token")
            self._letter_ids = ids
        return self._letter_ids


def cut_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """The text before the earliest occurrence of any stop string."""
    if not stop:
        return text
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return text if cut < 0 else text[:cut]


def logsumexp(values: Sequence[float]) -> float:
    finite = [v for v in values if v != -math.inf]
    if not finite:
        return -math.inf
    top = max(finite)
    return top + math.log(sum(math.exp(v - top) for v in finite))


class Backend:
    """Interface. ``prompts`` are lists of token ids."""

    name = "base"
    tokenizer = None
    supports_sequence_logprobs = True

    def generate(
        self, prompts: list[list[int]], max_new_tokens: int, progress=None, stop: Sequence[str] | None = None
    ) -> list[str]:
        """Greedy continuations; with ``stop``, generation of a prompt ends at the first of these strings
        and the text is cut before it."""
        raise NotImplementedError

    def choice_logprobs(
        self, prompts: list[list[int]], candidates: list[list[int]], progress=None
    ) -> list[list[float]]:
        """Per prompt, per candidate group: log of the next-token probability mass of the group."""
        raise NotImplementedError

    def sequence_logprobs(self, pairs: list[tuple[list[int], list[int]]], progress=None) -> list[float]:
        """Per (x, y): sum over y's tokens of log pi(y_t | x, y_<t)."""
        raise NotImplementedError

    def describe(self) -> dict[str, object]:
        return {"backend": self.name}

    def close(self) -> None:
        pass
