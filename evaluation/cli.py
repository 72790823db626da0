"""``llamafactory-minor-eval``: evaluate checkpoints on C-Eval, FinanceIQ, FinEval and GSM8K.

Exit codes: 0 ok, 2 bad input or a failed checkpoint (``error: ...`` on stderr, results already written
are kept), 1 an unexpected error (``--debug`` shows its traceback), 130 interrupted.
"""

import argparse
import os
import sys

from . import __version__
from .benchmarks import BENCHMARKS
from .config import build_config, load_yaml
from .errors import EvalError
from .options import add_arguments, overrides_from, split_pair

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


def _split_pair(text: str, what: str = ""):
    """ "name=value" -> (name, value); "value" -> (None, value). A left side with a slash is a path."""
    return split_pair(text)


def build_parser() -> argparse.ArgumentParser:
    """The parser, from the option table (options.py): every option, its group, kind and help declared once."""
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
    add_arguments(p)
    return p


def list_benchmarks() -> str:
    lines = []
    example = {"A": "<A>", "B": "<B>", "C": "<C>", "D": "<D>"}
    for b in BENCHMARKS.values():
        lines.append(
            f"{b.name} ({b.title}): hub {b.hub}; default split {b.default_split}; few-shot from {b.shots_split}; "
            f"{b.description}"
        )
        lines.append("  prompt: " + b.prompt("<question>", example if b.kind == "mc" else None).replace("\n", "\\n"))
    return "\n".join(lines)


def _record_skipped(cfg, config: str | None) -> None:
    """A command that read a grid records the runs its skip_missing left out in the output folder, replacing the
    list stored there (none left out: the list is removed); the reports read it, also under --report-only. A
    command without a grid (--model, or --report-only without --config) keeps the stored list."""
    from .report import store_skipped

    if getattr(cfg, "grid_expanded", False):
        store_skipped(cfg.output_dir, cfg.skipped_checkpoints, config=config)


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_benchmarks:
        print(list_benchmarks())
        return 0
    yaml_data = load_yaml(args.config) if args.config else None
    overrides = overrides_from(args)
    cfg = build_config(yaml_data, overrides, where=args.config or "command line", report_only=args.report_only)
    from .config import skipped_line

    for run in cfg.skipped_checkpoints:
        print(f"[grid] skip_missing: left out {skipped_line(run)}", file=sys.stderr, flush=True)
    from .runner import Runner

    runner = Runner(cfg)
    if args.report_only:
        # no data or model is loaded and no settings are compared: every finished (checkpoint, benchmark)
        # pair in the folder goes into one table, whatever limits it was run with (the run details say)
        if not os.path.isdir(os.path.expanduser(cfg.output_dir)):
            raise EvalError(f"--report-only: output folder {cfg.output_dir} does not exist")
        _record_skipped(cfg, args.config)
        result = runner.summarize()
        if not any(r["benchmarks"] for r in result["rows"]):
            raise EvalError(
                f"--report-only: no finished results in {cfg.output_dir} (no <checkpoint>/<benchmark>/metrics.json)"
            )
        summary_md = os.path.join(cfg.output_dir, "summary.md")
        with open(summary_md, encoding="utf-8") as f:
            print(f.read(), end="")
        return 0
    _record_skipped(cfg, args.config)
    runner.run()
    summary_md = os.path.join(cfg.output_dir, "summary.md")
    with open(summary_md, encoding="utf-8") as f:
        print(f.read(), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
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
