"""``llamafactory-minor-eval``: evaluate checkpoints on C-Eval, FinanceIQ, FinEval and GSM8K.

Exit codes: 0 ok, 2 bad input or a failed checkpoint (``error: ...`` on stderr, results already written
are kept), 1 an unexpected error (``--debug`` shows its traceback), 130 interrupted.
"""

import argparse
import os
import sys
from typing import Dict, List, Optional

from . import __version__
from .config import MC_MODES, build_config, load_yaml
from .data import BENCHMARKS
from .errors import EvalError
from .models import Checkpoint

EPILOG = """\
examples:
  # the base model and two LoRA runs on all four benchmarks, 200 questions each, from local data
  llamafactory-minor-eval --model base=Qwen/Qwen2-7B-Instruct \\
      --model minorsft=saves/minorsft_lr2e-5_b0.04 --model sft=saves/sft_lr1e-5 \\
      --benchmarks ceval,financeiq,fineval,gsm8k --data-dir ../shared/data --split dev \\
      --limit 200 --deviation-data data/alpaca_en_demo.json -o outputs/eval
  # everything from a YAML file (see examples/eval/), one option overridden
  llamafactory-minor-eval --config examples/eval/minorsft_grid.yaml --mc-mode likelihood

Multiple choice is answered by generation (as in the MinorSFT paper: the first standalone A-D letter
of the output; none = wrong and counted as unparsed) or by option likelihood (the most likely of the
letters A-D after the prompt; one forward pass, deterministic). GSM8K is always generated; the number
after "So the answer is" (else the last number) is compared with the gold number after "####".
A rerun with the same --output-dir skips finished (checkpoint, benchmark) pairs.
"""


def _split_pair(text: str, what: str):
    """"name=value" -> (name, value); "value" -> (None, value). A left side with a slash is a path."""
    if "=" in text:
        left, right = text.split("=", 1)
        if left and "/" not in left and os.sep not in left:
            return left.strip(), right.strip()
    return None, text.strip()


def _models(values: Optional[List[str]]) -> Optional[List[Checkpoint]]:
    if not values:
        return None
    from .config import default_name

    out = []
    for value in values:
        name, path = _split_pair(value, "--model")
        if not path:
            raise EvalError(f"--model {value!r}: no path")
        out.append(Checkpoint(name=name or default_name(path), path=path))
    return out


def _keyed(values: Optional[List[str]], what: str, listy: bool = False):
    if not values:
        return None
    out: Dict[str, object] = {}
    for value in values:
        key, rest = _split_pair(value, what)
        key = key or "*"
        out[key] = [v.strip() for v in rest.split(",") if v.strip()] if listy else rest
    return out


def _benchmarks(values: Optional[List[str]]) -> Optional[List[str]]:
    if not values:
        return None
    return [b.strip() for v in values for b in v.split(",") if b.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llamafactory-minor-eval",
        description="Evaluate base models, full fine-tunes and LoRA adapters on C-Eval, FinanceIQ, FinEval and GSM8K "
        "with the MinorSFT / MinorDPO papers' prompts; write per-sample JSONL, accuracy tables (CSV, markdown), "
        "a bar chart and the deviation metric m_theta. Options given here override the --config YAML "
        "(whose keys are these option names with '_' for '-').",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    g = p.add_argument_group("what to evaluate")
    g.add_argument("--config", "-c", metavar="YAML", help="YAML run file (checkpoints, grid, benchmarks, any option below)")
    g.add_argument(
        "--model", "-m", dest="models", action="append", metavar="[NAME=]PATH",
        help="a checkpoint (repeatable): model folder, hub model id, or LoRA adapter folder (has adapter_config.json). "
        "NAME labels its row (default: the folder name). Replaces the YAML's checkpoints.",
    )
    g.add_argument("--base", metavar="PATH", help="base model of LoRA adapters (default: base_model_name_or_path of each adapter_config.json)")
    g.add_argument(
        "--benchmarks", "-b", action="append", metavar="LIST",
        help=f"comma-separated benchmarks (repeatable): {', '.join(BENCHMARKS)}",
    )
    g.add_argument("--list-benchmarks", action="store_true", help="print the benchmarks, their hub datasets, splits and prompts, then exit")

    g = p.add_argument_group("data")
    g.add_argument("--data-dir", metavar="DIR", help="folder with one sub-folder per benchmark (ceval/, financeiq/, fineval/, gsm8k/), e.g. ../shared/data")
    g.add_argument("--data", action="append", metavar="BENCH=SOURCE",
                   help="data of one benchmark (repeatable): a local folder or a hub dataset id. Without --data/--data-dir: "
                   "the hub dataset (" + ", ".join(f"{b.name}: {b.hub}" for b in BENCHMARKS.values()) + ")")
    g.add_argument("--split", action="append", metavar="[BENCH=]SPLIT",
                   help="split to evaluate, for all or one benchmark (repeatable). Default: " +
                   ", ".join(f"{b.name} {b.default_split}" for b in BENCHMARKS.values()))
    g.add_argument("--subjects", action="append", metavar="[BENCH=]A,B",
                   help="only these subjects (file names without _split), for all or one benchmark (repeatable)")
    g.add_argument("--limit", action="append", metavar="[BENCH=]N",
                   help="at most N questions of each benchmark, or of one (repeatable: --limit 500 --limit gsm8k=200); "
                   "which ones: --limit-mode")
    g.add_argument("--limit-per-subject", type=int, metavar="N", help="at most N questions per subject")
    g.add_argument("--limit-mode", choices=("random", "first"),
                   help="how --limit / --limit-per-subject choose: 'random' (default; a uniform sample seeded by --seed) "
                   "or 'first' (the first N in file order); the chosen questions keep file order")
    g.add_argument("--seed", type=int, metavar="S", help="seed of the down-sampling (default 42)")
    g.add_argument("--few-shot", type=int, metavar="K",
                   help="K solved examples before each question as earlier chat turns (default 0 = zero-shot as in the papers): "
                   "from the dev split of the same subject (C-Eval, FinanceIQ, FinEval) or the GSM8K train split")

    g = p.add_argument_group("answering")
    g.add_argument("--mc-mode", choices=MC_MODES,
                   help="multiple choice by 'generation' (default; as the paper) or 'likelihood' (one forward, most likely letter)")
    g.add_argument("--mc-max-new-tokens", type=int, metavar="N", help="token budget of multiple-choice generation (default 16)")
    g.add_argument("--gsm8k-max-new-tokens", type=int, metavar="N", help="token budget of GSM8K generation (default 512)")
    g.add_argument("--chat-template", choices=("auto", "on", "off"),
                   help="apply the tokenizer's chat template: auto (default: when it has one), on (required), off (plain text)")
    g.add_argument("--system-prompt", metavar="TEXT", help="system message before the prompt (default none: the template's default applies)")

    g = p.add_argument_group("backend")
    g.add_argument("--backend", choices=("transformers", "vllm"), help="inference backend (default transformers)")
    g.add_argument("--batch-size", type=int, metavar="N", help="questions per forward/generate call, transformers backend (default 8)")
    g.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"),
                   help="weights dtype (default auto: float32 on CPU, bfloat16/float16 on GPU)")
    g.add_argument("--device", metavar="DEV", help="transformers backend: auto (default), cpu, cuda, cuda:1 ...")
    g.add_argument("--trust-remote-code", action="store_true", default=None, help="allow model code from the checkpoint folder")
    g.add_argument("--tensor-parallel-size", type=int, metavar="N", help="vLLM: GPUs per model (default 1)")
    g.add_argument("--vllm-max-model-len", type=int, metavar="N", help="vLLM: context length (default: the model's)")
    g.add_argument("--vllm-gpu-memory-utilization", type=float, metavar="F", help="vLLM: share of GPU memory to use")
    g.add_argument("--vllm-kv-cache-gb", type=float, metavar="GB", help="vLLM: KV cache size (on CPU default 1 GiB via VLLM_CPU_KVCACHE_SPACE)")
    g.add_argument("--vllm-no-enforce-eager", dest="vllm_enforce_eager", action="store_false", default=None,
                   help="vLLM: allow graph compilation / CUDA graphs (slower start-up; default: eager)")
    g.add_argument("--max-lora-rank", type=int, metavar="R", help="vLLM: largest LoRA rank (default: read from the adapters)")

    g = p.add_argument_group("lm-eval-harness tasks beside the benchmarks (PoFT's Open LLM Leaderboard suite)")
    g.add_argument("--lmeval-tasks", action="append", metavar="LIST",
                   help="comma-separated lm-eval tasks (repeatable) run over the same checkpoints with lm-eval's own "
                   "HF / vLLM backend (--backend), in the same tables: arc_challenge (25-shot acc_norm), hellaswag "
                   "(10, acc_norm), truthfulqa_mc2 (0, acc = mc2), winogrande (5, acc), gsm8k (5, exact_match "
                   "flexible-extract), mmlu (5, acc); NAME@K sets K shots, mmlu:anatomy,virology only those subjects")
    g.add_argument("--lmeval-data-dir", metavar="DIR",
                   help="local lm-eval data in the hub datasets' row format: DIR/arc_challenge/{train,validation,test}.jsonl, "
                   "hellaswag/, truthfulqa/, winogrande/, gsm8k/, mmlu/<subject>/ (default: lm-eval downloads them)")
    g.add_argument("--lmeval-limit", type=int, metavar="N",
                   help="the first N documents of each lm-eval task / MMLU subject (lm-eval's --limit; default all)")
    g.add_argument("--lmeval-max-gen-toks", type=int, metavar="N",
                   help="token budget of lm-eval's generation tasks (gsm8k; default the task's own, 256)")

    g = p.add_argument_group("deviation metric m_theta (MinorSFT Eq. 8)")
    g.add_argument("--deviation-data", metavar="FILE",
                   help="JSON/JSONL of (prompt, answer) pairs (alpaca instruction/input/output, messages, or prompt/response); "
                   "adds an m_theta column: each checkpoint against its reference")
    g.add_argument("--deviation-limit", type=int, metavar="N", help="pairs to use (seeded sample; default 200)")
    g.add_argument("--deviation-max-length", type=int, metavar="N", help="truncate prompt+answer to N tokens (default 1024)")
    g.add_argument("--reference", "--ref", dest="reference", metavar="NAME|PATH",
                   help="reference of m_theta for every checkpoint: a checkpoint name or a model path "
                   "(default: an adapter's base model; for full models the first checkpoint)")

    g = p.add_argument_group("output and run control")
    g.add_argument("--output-dir", "-o", metavar="DIR", help="results folder (default outputs/eval, git-ignored in this repo)")
    g.add_argument("--overwrite", action="store_true", default=None,
                   help="redo pairs whose stored results were made with other settings (default: refuse)")
    g.add_argument("--keep-going", action="store_true", default=None, help="go on with the next checkpoint after a failed one (exit 2 at the end)")
    g.add_argument("--table-metric", choices=("micro", "macro", "both"), help="multiple-choice accuracy shown in summary.md and the chart: micro, macro or both side by side (default both)")
    g.add_argument("--no-chart", dest="chart", action="store_false", default=None, help="do not write summary.png")
    g.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bars")
    g.add_argument("--report-only", action="store_true", help="only rebuild summary.* from every result already in --output-dir (no model, no data; pairs run with "
                   "different limits or settings go into one table, the run details say which)")
    g.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def list_benchmarks() -> str:
    from .prompts import build_prompt

    lines = []
    example = {"A": "<A>", "B": "<B>", "C": "<C>", "D": "<D>"}
    for b in BENCHMARKS.values():
        lines.append(f"{b.name} ({b.title}): hub {b.hub}; default split {b.default_split}; few-shot from {b.shots_split}; "
                     f"{'four-option multiple choice' if b.kind == 'mc' else 'math word problems'}")
        lines.append("  prompt: " + build_prompt(b.name, "<question>", example if b.kind == "mc" else None).replace("\n", "\\n"))
    return "\n".join(lines)


def run(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_benchmarks:
        print(list_benchmarks())
        return 0
    yaml_data = load_yaml(args.config) if args.config else None
    overrides = {
        "models": _models(args.models),
        "base": args.base,
        "benchmarks": _benchmarks(args.benchmarks),
        "data_dir": args.data_dir,
        "data": _keyed(args.data, "--data"),
        "split": _keyed(args.split, "--split"),
        "subjects": _keyed(args.subjects, "--subjects", listy=True),
        "limit": _keyed(args.limit, "--limit"),
        "limit_mode": args.limit_mode,
        "limit_per_subject": args.limit_per_subject,
        "seed": args.seed,
        "few_shot": args.few_shot,
        "mc_mode": args.mc_mode,
        "mc_max_new_tokens": args.mc_max_new_tokens,
        "gsm8k_max_new_tokens": args.gsm8k_max_new_tokens,
        "chat_template": args.chat_template,
        "system_prompt": args.system_prompt,
        "backend": args.backend,
        "batch_size": args.batch_size,
        "dtype": args.dtype,
        "device": args.device,
        "trust_remote_code": args.trust_remote_code,
        "tensor_parallel_size": args.tensor_parallel_size,
        "vllm_max_model_len": args.vllm_max_model_len,
        "vllm_gpu_memory_utilization": args.vllm_gpu_memory_utilization,
        "vllm_kv_cache_gb": args.vllm_kv_cache_gb,
        "vllm_enforce_eager": args.vllm_enforce_eager,
        "max_lora_rank": args.max_lora_rank,
        "lmeval_tasks": _benchmarks(args.lmeval_tasks),
        "lmeval_data_dir": args.lmeval_data_dir,
        "lmeval_limit": args.lmeval_limit,
        "lmeval_max_gen_toks": args.lmeval_max_gen_toks,
        "deviation_data": args.deviation_data,
        "deviation_limit": args.deviation_limit,
        "deviation_max_length": args.deviation_max_length,
        "reference": args.reference,
        "output_dir": args.output_dir,
        "overwrite": args.overwrite,
        "keep_going": args.keep_going,
        "table_metric": args.table_metric,
        "chart": args.chart,
        "progress": args.progress,
    }
    cfg = build_config(yaml_data, overrides, where=args.config or "command line", report_only=args.report_only)
    for line in getattr(cfg, "skipped_runs", []):
        print(f"[grid] skip_missing: left out {line}", file=sys.stderr, flush=True)
    from .runner import Runner

    runner = Runner(cfg)
    if args.report_only:
        # no data or model is loaded and no settings are compared: every finished (checkpoint, benchmark)
        # pair in the folder goes into one table, whatever limits it was run with (the run details say)
        if not os.path.isdir(os.path.expanduser(cfg.output_dir)):
            raise EvalError(f"--report-only: output folder {cfg.output_dir} does not exist")
        result = runner.summarize()
        if not any(r["benchmarks"] for r in result["rows"]):
            raise EvalError(f"--report-only: no finished results in {cfg.output_dir} (no <checkpoint>/<benchmark>/"
                            "metrics.json)")
        summary_md = os.path.join(cfg.output_dir, "summary.md")
        with open(summary_md, encoding="utf-8") as f:
            print(f.read(), end="")
        return 0
    runner.run()
    summary_md = os.path.join(cfg.output_dir, "summary.md")
    with open(summary_md, encoding="utf-8") as f:
        print(f.read(), end="")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        return run(argv)
    except EvalError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished results are kept; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001
        if debug:
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
