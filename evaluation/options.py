"""Every option of ``llamafactory-minor-eval``, declared once.

One row per option: its flags, its group in ``--help``, its kind (how the command-line value becomes a
setting), choices, help, smallest value. The argument parser (cli.py), the command-line overrides of a run
file and the checks of the merged settings (whole numbers, choices, minimums: config.py) are derived from this
table; ``key`` is the ``RunConfig`` field and YAML key (``None`` for options of the command itself:
``--config``, ``--report-only`` ...). Defaults are ``RunConfig``'s only: a help text says ``{default}`` where it
names one. Unit tests check that the table and ``RunConfig`` list the same settings and that the help states
RunConfig's defaults.

Kinds: ``str``, ``int``, ``float``, ``choice``; ``flag`` (``store_true``, unset = None so that the run
file decides), ``noflag`` (``--no-x`` / ``store_false``); ``list`` (comma-separated, repeatable);
``keyed`` (``[BENCH=]VALUE``, repeatable; ``*`` = every benchmark), ``keyed_list`` (``[BENCH=]A,B``);
``models`` (``[NAME=]PATH``, repeatable); ``command`` (an option of the command, not a setting).
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llamafactory_minor_core.vllm_scoring import CPU_KV_CACHE_GB

from .benchmarks import BENCHMARKS
from .selection import LIMIT_MODES


@dataclass(frozen=True)
class Option:
    key: str | None  # RunConfig field / YAML key; None for the command's own options
    flags: tuple[str, ...]
    group: str
    kind: str
    help: str
    metavar: str | None = None
    choices: Sequence[str] | None = None
    dest: str | None = None  # argparse dest when it differs from key
    minimum: int | None = None  # whole-number settings: the smallest value accepted (config.py checks it)
    check_choices: bool = True  # a run file's value must be one of ``choices`` (config.py checks it)

    @property
    def argparse_dest(self) -> str:
        return self.dest or self.key or self.flags[0].lstrip("-").replace("-", "_")


WHAT, DATA, ANSWER, BACKEND, LMEVAL, DEV, RUN = (
    "what to evaluate",
    "data",
    "answering",
    "backend",
    "lm-eval-harness tasks beside the benchmarks (PoFT's Open LLM Leaderboard suite)",
    "deviation metric m_theta (MinorSFT Eq. 8)",
    "output and run control",
)

MC_MODES = ("generation", "likelihood")

OPTIONS: list[Option] = [
    Option(
        None,
        ("--config", "-c"),
        WHAT,
        "command",
        "YAML run file (checkpoints, grid, benchmarks, any option below)",
        metavar="YAML",
    ),
    Option(
        "models",
        ("--model", "-m"),
        WHAT,
        "models",
        "a checkpoint (repeatable): model folder, hub model id, or LoRA adapter folder (has adapter_config.json). "
        "NAME labels its row (default: the folder name). Replaces the YAML's checkpoints.",
        metavar="[NAME=]PATH",
    ),
    Option(
        "base",
        ("--base",),
        WHAT,
        "str",
        "base model of LoRA adapters (default: base_model_name_or_path of each adapter_config.json)",
        metavar="PATH",
    ),
    Option(
        "benchmarks",
        ("--benchmarks", "-b"),
        WHAT,
        "list",
        f"comma-separated benchmarks (repeatable): {', '.join(BENCHMARKS)}",
        metavar="LIST",
    ),
    Option(
        None,
        ("--list-benchmarks",),
        WHAT,
        "command",
        "print the benchmarks, their hub datasets, splits and prompts, then exit",
    ),
    Option(
        "data_dir",
        ("--data-dir",),
        DATA,
        "str",
        "folder with one sub-folder per benchmark (ceval/, financeiq/, fineval/, gsm8k/), e.g. ../shared/data",
        metavar="DIR",
    ),
    Option(
        "data",
        ("--data",),
        DATA,
        "keyed",
        "data of one benchmark (repeatable): a local folder or a hub dataset id. Without --data/--data-dir: the hub "
        "dataset (" + ", ".join(f"{b.name}: {b.hub}" for b in BENCHMARKS.values()) + ")",
        metavar="BENCH=SOURCE",
    ),
    Option(
        "split",
        ("--split",),
        DATA,
        "keyed",
        "split to evaluate, for all or one benchmark (repeatable). Default: "
        + ", ".join(f"{b.name} {b.default_split}" for b in BENCHMARKS.values()),
        metavar="[BENCH=]SPLIT",
    ),
    Option(
        "subjects",
        ("--subjects",),
        DATA,
        "keyed_list",
        "only these subjects (file names without _split), for all or one benchmark (repeatable)",
        metavar="[BENCH=]A,B",
    ),
    Option(
        "limit",
        ("--limit",),
        DATA,
        "keyed",
        "at most N questions of each benchmark, or of one (repeatable: --limit 500 --limit gsm8k=200); which ones: "
        "--limit-mode",
        metavar="[BENCH=]N",
    ),
    Option(
        "limit_per_subject",
        ("--limit-per-subject",),
        DATA,
        "int",
        "at most N questions per subject",
        metavar="N",
        minimum=1,
    ),
    Option(
        "limit_mode",
        ("--limit-mode",),
        DATA,
        "choice",
        "how --limit / --limit-per-subject choose: 'random' (default; a uniform sample seeded by --seed) or 'first' "
        "(the first N in file order); the chosen questions keep file order",
        choices=LIMIT_MODES,
    ),
    Option("seed", ("--seed",), DATA, "int", "seed of the down-sampling (default {default})", metavar="S"),
    Option(
        "few_shot",
        ("--few-shot",),
        DATA,
        "int",
        "K solved examples before each question as earlier chat turns (default {default} = zero-shot as in the papers): "
        "from the dev split of the same subject (C-Eval, FinanceIQ, FinEval) or the GSM8K train split",
        metavar="K",
        minimum=0,
    ),
    Option(
        "mc_mode",
        ("--mc-mode",),
        ANSWER,
        "choice",
        "multiple choice by 'generation' (default; as the paper) or 'likelihood' (one forward, most likely letter)",
        choices=MC_MODES,
    ),
    Option(
        "mc_max_new_tokens",
        ("--mc-max-new-tokens",),
        ANSWER,
        "int",
        "token budget of multiple-choice generation (default {default})",
        metavar="N",
        minimum=1,
    ),
    Option(
        "gsm8k_max_new_tokens",
        ("--gsm8k-max-new-tokens",),
        ANSWER,
        "int",
        "token budget of GSM8K generation (default {default})",
        metavar="N",
        minimum=1,
    ),
    Option(
        "chat_template",
        ("--chat-template",),
        ANSWER,
        "choice",
        "apply the tokenizer's chat template: auto (default: when it has one), on (required), off (plain text)",
        choices=("auto", "on", "off"),
    ),
    Option(
        "system_prompt",
        ("--system-prompt",),
        ANSWER,
        "str",
        "system message before the prompt (default none: the template's default applies)",
        metavar="TEXT",
    ),
    Option(
        "backend",
        ("--backend",),
        BACKEND,
        "choice",
        "inference backend (default {default})",
        choices=("transformers", "vllm"),
    ),
    Option(
        "batch_size",
        ("--batch-size",),
        BACKEND,
        "int",
        "questions per forward/generate call, transformers backend (default {default})",
        metavar="N",
        minimum=1,
    ),
    Option(
        "dtype",
        ("--dtype",),
        BACKEND,
        "choice",
        "weights dtype (default {default}: float32 on CPU, bfloat16/float16 on GPU)",
        choices=("auto", "float32", "bfloat16", "float16"),
        check_choices=False,  # a run file may also give the spellings backends/hf.py accepts (fp32 ...)
    ),
    Option(
        "device",
        ("--device",),
        BACKEND,
        "str",
        "transformers backend: auto (default), cpu, cuda, cuda:1 ...",
        metavar="DEV",
    ),
    Option(
        "trust_remote_code", ("--trust-remote-code",), BACKEND, "flag", "allow model code from the checkpoint folder"
    ),
    Option(
        "tensor_parallel_size",
        ("--tensor-parallel-size",),
        BACKEND,
        "int",
        "vLLM: GPUs per model (default {default})",
        metavar="N",
        minimum=1,
    ),
    Option(
        "vllm_max_model_len",
        ("--vllm-max-model-len",),
        BACKEND,
        "int",
        "vLLM: context length (default: the model's)",
        metavar="N",
    ),
    Option(
        "vllm_gpu_memory_utilization",
        ("--vllm-gpu-memory-utilization",),
        BACKEND,
        "float",
        "vLLM: share of GPU memory to use",
        metavar="F",
    ),
    Option(
        "vllm_kv_cache_gb",
        ("--vllm-kv-cache-gb",),
        BACKEND,
        "float",
        f"vLLM: KV cache size (on CPU default {CPU_KV_CACHE_GB} GiB via VLLM_CPU_KVCACHE_SPACE)",
        metavar="GB",
    ),
    Option(
        "vllm_enforce_eager",
        ("--vllm-no-enforce-eager",),
        BACKEND,
        "noflag",
        "vLLM: allow graph compilation / CUDA graphs (slower start-up; default: eager)",
    ),
    Option(
        "max_lora_rank",
        ("--max-lora-rank",),
        BACKEND,
        "int",
        "vLLM: largest LoRA rank (default: read from the adapters)",
        metavar="R",
    ),
    Option(
        "lmeval_tasks",
        ("--lmeval-tasks",),
        LMEVAL,
        "list",
        "comma-separated lm-eval tasks (repeatable) run over the same checkpoints with lm-eval's own HF / vLLM backend "
        "(--backend), in the same tables: arc_challenge (25-shot acc_norm), hellaswag (10, acc_norm), truthfulqa_mc2 "
        "(0, acc = mc2), winogrande (5, acc), gsm8k (5, exact_match flexible-extract), mmlu (5, acc); NAME@K sets K "
        "shots, mmlu:anatomy,virology only those subjects",
        metavar="LIST",
    ),
    Option(
        "lmeval_data_dir",
        ("--lmeval-data-dir",),
        LMEVAL,
        "str",
        "local lm-eval data in the hub datasets' row format: DIR/arc_challenge/{train,validation,test}.jsonl, "
        "hellaswag/, truthfulqa/, winogrande/, gsm8k/, mmlu/<subject>/ (default: lm-eval downloads them)",
        metavar="DIR",
    ),
    Option(
        "lmeval_limit",
        ("--lmeval-limit",),
        LMEVAL,
        "int",
        "the first N documents of each lm-eval task / MMLU subject (lm-eval's --limit; default all)",
        metavar="N",
        minimum=1,
    ),
    Option(
        "lmeval_max_gen_toks",
        ("--lmeval-max-gen-toks",),
        LMEVAL,
        "int",
        "token budget of lm-eval's generation tasks (gsm8k; default the task's own, 256)",
        metavar="N",
        minimum=1,
    ),
    Option(
        "deviation_data",
        ("--deviation-data",),
        DEV,
        "str",
        "JSON/JSONL of (prompt, answer) pairs (alpaca instruction/input/output, messages, or prompt/response); adds an "
        "m_theta column: each checkpoint against its reference",
        metavar="FILE",
    ),
    Option(
        "deviation_limit",
        ("--deviation-limit",),
        DEV,
        "int",
        "pairs to use (seeded sample; default {default})",
        metavar="N",
        minimum=1,
    ),
    Option(
        "deviation_max_length",
        ("--deviation-max-length",),
        DEV,
        "int",
        "truncate prompt+answer to N tokens (default {default})",
        metavar="N",
        minimum=1,
    ),
    Option(
        "reference",
        ("--reference", "--ref"),
        DEV,
        "str",
        "reference of m_theta for every checkpoint: a checkpoint name or a model path (default: an adapter's base "
        "model; for full models the first checkpoint)",
        metavar="NAME|PATH",
    ),
    Option(
        "output_dir",
        ("--output-dir", "-o"),
        RUN,
        "str",
        "results folder (default {default}, git-ignored in this repo)",
        metavar="DIR",
    ),
    Option(
        "overwrite",
        ("--overwrite",),
        RUN,
        "flag",
        "redo pairs whose stored results were made with other settings (default: refuse)",
    ),
    Option(
        "keep_going",
        ("--keep-going",),
        RUN,
        "flag",
        "go on with the next checkpoint after a failed one (exit 2 at the end)",
    ),
    Option(
        "table_metric",
        ("--table-metric",),
        RUN,
        "choice",
        "multiple-choice accuracy shown in summary.md and the chart: micro, macro or both side by side (default {default})",
        choices=("micro", "macro", "both"),
    ),
    Option("chart", ("--no-chart",), RUN, "noflag", "do not write summary.png"),
    Option("progress", ("--no-progress",), RUN, "noflag", "no progress bars"),
    Option(
        None,
        ("--report-only",),
        RUN,
        "command",
        "only rebuild summary.* from every result already in --output-dir (no model, no data; pairs run with "
        "different limits or settings go into one table, the run details say which)",
    ),
    Option(None, ("--debug",), RUN, "command", "show tracebacks"),
]

SETTINGS = {o.key: o for o in OPTIONS if o.key}


def help_text(opt: Option) -> str:
    """The option's help with ``{default}`` replaced by its RunConfig default (the one place defaults are set)."""
    if "{default}" not in opt.help:
        return opt.help
    from .config import RunConfig

    return opt.help.replace("{default}", str(getattr(RunConfig(), opt.key)))


def add_arguments(parser) -> None:
    """Every option of the table on an ``argparse`` parser, in groups, in table order."""
    groups: dict[str, Any] = {}
    for opt in OPTIONS:
        if opt.group not in groups:
            groups[opt.group] = parser.add_argument_group(opt.group)
        g = groups[opt.group]
        kw: dict[str, Any] = {"help": help_text(opt), "dest": opt.argparse_dest}
        if opt.kind in ("command",) and opt.metavar is None:
            kw["action"] = "store_true"
        elif opt.kind == "command":
            kw["metavar"] = opt.metavar
        elif opt.kind == "flag":
            kw.update(action="store_true", default=None)
        elif opt.kind == "noflag":
            kw.update(action="store_false", default=None)
        elif opt.kind in ("list", "keyed", "keyed_list", "models"):
            kw.update(action="append", metavar=opt.metavar)
        elif opt.kind == "choice":
            kw["choices"] = opt.choices
        else:
            kw.update(type={"int": int, "float": float, "str": str}[opt.kind], metavar=opt.metavar)
        g.add_argument(*opt.flags, **kw)


def split_pair(text: str):
    """ "name=value" -> (name, value); "value" -> (None, value). A left side with a slash is a path."""
    if "=" in text:
        left, right = text.split("=", 1)
        if left and "/" not in left and os.sep not in left:
            return left.strip(), right.strip()
    return None, text.strip()


def _keyed(values: list[str], listy: bool) -> dict[str, object]:
    out: dict[str, object] = {}
    for value in values:
        key, rest = split_pair(value)
        out[key or "*"] = [v.strip() for v in rest.split(",") if v.strip()] if listy else rest
    return out


def _models(values: list[str]):
    from .config import default_name
    from .errors import EvalError
    from .models import Checkpoint

    out = []
    for value in values:
        name, path = split_pair(value)
        if not path:
            raise EvalError(f"--model {value!r}: no path")
        out.append(Checkpoint(name=name or default_name(path), path=path))
    return out


def overrides_from(args) -> dict[str, Any]:
    """The settings given on the command line (None = not given), keyed like RunConfig / the YAML."""
    out: dict[str, Any] = {}
    for opt in OPTIONS:
        if not opt.key:
            continue
        value = getattr(args, opt.argparse_dest)
        if value is not None and opt.kind == "list":
            value = [b.strip() for v in value for b in v.split(",") if b.strip()]
        elif value is not None and opt.kind in ("keyed", "keyed_list"):
            value = _keyed(value, listy=opt.kind == "keyed_list")
        elif value is not None and opt.kind == "models":
            value = _models(value)
        out[opt.key] = value
    return out


def int_settings() -> list[str]:
    return [o.key for o in OPTIONS if o.key and o.kind == "int"]


def check_settings(cfg) -> None:
    """The table's checks of merged settings (a run file's values and the command line's): ``choices`` and
    ``minimum``. Optional whole numbers may stay unset."""
    from .errors import EvalError

    for opt in OPTIONS:
        if opt.kind not in ("choice", "int"):
            continue
        value = getattr(cfg, opt.key)
        if opt.kind == "choice" and opt.check_choices and value not in opt.choices:
            raise EvalError(f"{opt.key} must be one of {', '.join(opt.choices)}, got {value!r}")
        if opt.minimum is not None and value is not None and int(value) < opt.minimum:
            what = "a positive number" if opt.minimum == 1 else f">= {opt.minimum}"
            raise EvalError(f"{opt.key} must be {what}, got {value}")
