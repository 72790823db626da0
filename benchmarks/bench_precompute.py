"""Precomputed reference / aligned-LLM scores: step time, peak RSS and scoring cost (issue 3, "Speed and memory").

Targets (same model, data and batch; ratios measured within one run, on every ``--models`` entry):

(a) ``minorsft`` / ``sftdpo`` with ``precompute_ref_log_probs: true`` and ``poft`` (aligned scores cached
    before timing) vs LF ``sft``: step time <= 1.05x and peak RSS <= 1.05x;
(b) ``dpo`` (stock sigmoid) and ``dpo`` + ``pref_loss: minordpo``, both with ``precompute_ref_log_probs: true``,
    vs LF ``dpo`` with its reference: >= 1.3x faster per step (speed-up = LF's s/step / ours);
(c) the scoring pass <= 0.4x the time of one training epoch on the same data;
(d) lean log-probs at vocab 152k: peak memory of the log-prob step <= 0.5x LF's ``get_batch_logps``
    (delegated to ``benchmarks/bench_logprobs.py``, run once at the end; ``--skip-logprobs`` to skip).

Method (see ``_common.py``). Every variant is a real LF training run (``run_exp``, the code path of
``llamafactory-cli train``) in its own fresh subprocess; stock ``sft`` / ``dpo`` run with the plugin switched
off (``LLAMAFACTORY_MINOR_DISABLE=1``).

* Scores are cached first, in a fresh cache folder (``minor_cache_dir``) of this run: one 1-step "priming"
  run each of ``minorsft`` + precompute (reference scores of the single-answer rows, reused by ``sftdpo``),
  ``poft`` (aligned scores) and ``dpo`` + precompute (reference scores of the pairs, reused by ``minordpo``).
  Their logs give the scoring-pass time: the plugin logs ``Reference scores (train_dataset): scored N rows
  in Xs`` (wall clock) -- the whole pass, loading the scoring model included; the worker also times the
  same pass (the plugin's ``run_pass``, wrapped) in CPU and wall seconds, which (c) uses. The timed runs then must log "reusing
  cached scores" (checked; a timed run that scored is an error), so they measure training only.
* Step time: a ``TrainerCallback`` timestamps every ``on_step_end``; per-step time = delta between steps,
  in CPU seconds of the training process (``time.process_time()``) and in wall-clock seconds; the first
  ``--warmup`` (2) steps of every run dropped; variants interleaved over ``--rounds`` rounds (A B C ...,
  then ... C B A); median over all kept steps of all rounds. Pass/fail on ``--clock`` (default ``cpu``,
  robust to other jobs on a shared machine; see ``bench_train_speed.py``), the other clock printed beside.
* Peak RSS: ``VmHWM`` of the training process read at ``on_train_end`` (everything up to the end of
  training: imports, dataset, model loading, training; the final checkpoint save excluded), median over
  rounds. The whole-lifetime ``ru_maxrss`` of the child (``os.wait4``) is printed beside it.
* (c): epoch time = ``len(train_dataloader)`` x the median step time (same clock) of the variant that consumes the
  scores (``minorsft`` + precompute for the single-answer reference, ``poft`` for the aligned scores,
  ``dpo`` + precompute for the pairs' reference).

Full fine-tuning by default (``--finetuning-type full``): there LF's DPO keeps a frozen copy of the model
as the reference, which is what precomputation removes. PoFT's aligned model is the target model itself
by default (one aligned LLM of the same size; ``--aligned`` to change).

Torch runs with ``--threads`` threads (default 1; see ``bench_train_speed.py`` for why).

Run (from the repository root; ~60-75 min on a busy 2-core machine with the defaults, background it)::

    .venv/bin/python benchmarks/bench_precompute.py
    .venv/bin/python benchmarks/bench_precompute.py --models tiny-large --rounds 3
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PRE = {"precompute_ref_log_probs": True}

# name -> (stage, dataset kind, plugin, extra config)
VARIANTS = {
    "sft": ("sft", "single", False, {}),
    "minorsft+pre": ("minorsft", "single", True, dict(PRE, pref_beta=0.04)),
    "sftdpo+pre": ("sftdpo", "single", True, dict(PRE, pref_beta=0.04)),
    "poft": ("poft", "single", True, {"poft_aggregation": "mean"}),
    "dpo": ("dpo", "pair", False, {"pref_loss": "sigmoid", "pref_beta": 0.1}),
    "dpo+pre": ("dpo", "pair", True, dict(PRE, pref_loss="sigmoid", pref_beta=0.1)),
    "minordpo+pre": ("dpo", "pair", True, dict(PRE, pref_loss="minordpo", pref_beta=0.1)),
}
DATASETS = {"single": "alpaca_en_tiny", "pair": "dpo_en_tiny"}
# priming runs: variant whose 1-step run fills the cache -> (what is scored, the variant whose epoch it serves)
PRIMING = {
    "minorsft+pre": ("reference, single-answer rows", "minorsft+pre"),
    "poft": ("aligned model, single-answer rows", "poft"),
    "dpo+pre": ("reference, pairs", "dpo+pre"),
}
TARGET_STEP, TARGET_RSS, TARGET_SPEEDUP, TARGET_SCORING = 1.05, 1.05, 1.3, 0.4


def bench_model(model_name: str, args, workdir: str) -> dict:
    model = C.model_path(model_name)
    aligned = args.aligned or model
    steps = args.steps or (8 if model_name == "smollm2" else 24)
    cache_dir = os.path.join(workdir, f"scores-{model_name}")
    shutil.rmtree(cache_dir, ignore_errors=True)  # fresh: the scoring pass really runs and is timed

    def cfg_for(name, n_steps):
        stage, kind, plugin, extra = VARIANTS[name]
        extra = dict(extra)
        if stage == "poft":
            extra.update(poft_aligned_models=aligned, poft_aligned_templates=args.aligned_template)
        if plugin:
            extra["minor_cache_dir"] = cache_dir

        def make(out):
            return C.train_config(
                model, out, stage, DATASETS[kind], n_steps, args.batch, args.cutoff, args.finetuning_type, **extra
            )

        return make

    print(
        f"\n=== {model_name} ({model}), {args.finetuning_type}, batch {args.batch}, cutoff {args.cutoff}, "
        f"{steps} steps/run (first {args.warmup} dropped), {args.rounds} interleaved rounds, torch threads "
        f"{args.threads}; poft aligned model: {aligned} ({args.aligned_template})"
    )

    # 1. priming: fill the cache (and time the scoring passes)
    scoring = {}
    for name, (what, _) in PRIMING.items():
        res = C.run_variant(
            f"prime-{name}",
            cfg_for(name, 1)(os.path.join(workdir, "out", f"prime-{name}")),
            VARIANTS[name][2],
            workdir,
            timeout=args.timeout,
            threads=args.threads,
        )
        shutil.rmtree(os.path.join(workdir, "out", f"prime-{name}"), ignore_errors=True)
        logged = [s for s in res.scored if "train_dataset" in s["split"]]
        timed = [t for t in res.passes if "train_dataset" in t["desc"]]
        if not logged or not timed:
            raise C.VariantFailed(f"priming run {name} logged no scoring pass (see {res.log_path})")
        scoring[name] = {
            "what": what,
            "rows": sum(s["rows"] for s in logged),
            "logged_s": sum(s["seconds"] for s in logged),
            "wall": sum(t["wall"] for t in timed),
            "cpu": sum(t["cpu"] for t in timed),
            "cold_peak_rss_kb": res.hwm_train_end_kb,
        }
        sc = scoring[name]
        print(
            f"  scoring pass ({what}): {sc['rows']} rows; logged {sc['logged_s']:.1f}s, timed {sc['wall']:.1f}s "
            f"wall / {sc['cpu']:.1f}s CPU (model load included); priming run peak RSS "
            f"{res.hwm_train_end_kb / 1024:.0f} MB",
            flush=True,
        )

    # 2. timed, interleaved runs on the warm cache
    variants = [C.Variant(n, cfg_for(n, steps), VARIANTS[n][2]) for n in VARIANTS]
    C.run_interleaved(variants, args.rounds, workdir, timeout=args.timeout, threads=args.threads)
    by = {v.name: v for v in variants}
    for v in variants:
        for r in v.results:
            if r.scored:
                raise C.VariantFailed(
                    f"timed run {v.name} scored instead of reusing the cache: {r.scored} ({r.log_path})"
                )
            if v.plugin and v.name != "sft" and VARIANTS[v.name][0] != "sft" and not r.reused:
                raise C.VariantFailed(f"timed run {v.name} did not report reusing cached scores ({r.log_path})")

    clock, other = args.clock, ("wall" if args.clock == "cpu" else "cpu")
    med = {n: by[n].median_step(args.warmup, clock) for n in by}
    med_o = {n: by[n].median_step(args.warmup, other) for n in by}
    kept = {n: len(by[n].step_times(args.warmup, clock)) for n in by}
    hwm = {n: by[n].peak_kb("hwm_train_end_kb") for n in by}
    life = {n: by[n].peak_kb("peak_rss_kb") for n in by}

    def per_round(n, base, invert=False):
        out = []
        for i in range(args.rounds):
            a, b = by[n].median_round_step(i, args.warmup, clock), by[base].median_round_step(i, args.warmup, clock)
            out.append(b / a if invert else a / b)
        return f"{min(out):.2f}-{max(out):.2f}"

    result = {
        "model": model_name,
        "steps": steps,
        "clock": clock,
        f"median_{clock}_s_per_step": med,
        f"median_{other}_s_per_step": med_o,
        "peak_rss_kb": hwm,
        "lifetime_peak_rss_kb": life,
        "scoring": scoring,
        "checks": [],
    }

    print(
        f"\n(a) {model_name}: with precomputed / cached scores vs LF sft "
        f"(step time <= {TARGET_STEP}x, peak RSS <= {TARGET_RSS}x; result on the {clock} clock)"
    )
    rows = []
    for n in ("sft", "minorsft+pre", "sftdpo+pre", "poft"):
        if n == "sft":
            rows.append(
                [
                    n,
                    f"{med[n]:.3f}",
                    f"{med_o[n]:.3f}",
                    kept[n],
                    "base",
                    "-",
                    "base",
                    f"{hwm[n] / 1024:.0f}",
                    f"{life[n] / 1024:.0f}",
                    "base",
                    "-",
                ]
            )
            continue
        sr, so, rr = med[n] / med["sft"], med_o[n] / med_o["sft"], hwm[n] / hwm["sft"]
        vs, vr = C.verdict(sr, TARGET_STEP), C.verdict(rr, TARGET_RSS)
        rows.append(
            [
                n,
                f"{med[n]:.3f}",
                f"{med_o[n]:.3f}",
                kept[n],
                f"{sr:.3f}",
                per_round(n, "sft"),
                f"{so:.3f}",
                f"{hwm[n] / 1024:.0f}",
                f"{life[n] / 1024:.0f}",
                f"{rr:.3f}",
                f"{vs}/{vr}",
            ]
        )
        result["checks"] += [
            {"check": f"a:{n}:step", "ratio": sr, f"ratio_{other}": so, "target": f"<= {TARGET_STEP}", "verdict": vs},
            {"check": f"a:{n}:rss", "ratio": rr, "target": f"<= {TARGET_RSS}", "verdict": vr},
        ]
    C.print_table(
        [
            "variant",
            f"{clock} s/step",
            f"{other} s/step",
            "steps",
            f"step ratio ({clock})",
            "per-round",
            f"({other})",
            "peak RSS MB",
            "lifetime MB",
            "RSS ratio",
            "step/RSS",
        ],
        rows,
    )

    print(
        f"\n(b) {model_name}: precomputed reference vs LF dpo with its reference "
        f"(speed-up >= {TARGET_SPEEDUP}x; result on the {clock} clock)"
    )
    rows = []
    for n in ("dpo", "dpo+pre", "minordpo+pre"):
        if n == "dpo":
            rows.append(
                [
                    n,
                    f"{med[n]:.3f}",
                    f"{med_o[n]:.3f}",
                    kept[n],
                    "base",
                    "-",
                    "base",
                    f"{hwm[n] / 1024:.0f}",
                    "base",
                    "-",
                ]
            )
            continue
        sp, so = med["dpo"] / med[n], med_o["dpo"] / med_o[n]
        v = C.verdict(sp, TARGET_SPEEDUP, higher_is_better=True)
        rows.append(
            [
                n,
                f"{med[n]:.3f}",
                f"{med_o[n]:.3f}",
                kept[n],
                f"{sp:.3f}x",
                per_round(n, "dpo", invert=True),
                f"{so:.3f}x",
                f"{hwm[n] / 1024:.0f}",
                f"{hwm[n] / hwm['dpo']:.3f}",
                v,
            ]
        )
        result["checks"].append(
            {
                "check": f"b:{n}:speedup",
                "ratio": sp,
                f"ratio_{other}": so,
                "target": f">= {TARGET_SPEEDUP}",
                "verdict": v,
            }
        )
    C.print_table(
        [
            "variant",
            f"{clock} s/step",
            f"{other} s/step",
            "steps",
            f"speed-up ({clock})",
            "per-round",
            f"({other})",
            "peak RSS MB",
            "RSS ratio",
            "result",
        ],
        rows,
    )

    print(
        f"\n(c) {model_name}: scoring pass vs one training epoch on the same data "
        f"(<= {TARGET_SCORING}x; result on the {clock} clock)"
    )
    rows = []
    for name, (what, consumer) in PRIMING.items():
        sc = scoring[name]
        spe = by[consumer].results[0].steps_per_epoch
        epoch, epoch_o = spe * med[consumer], spe * med_o[consumer]
        ratio, ratio_o = sc[clock] / epoch, sc[other] / epoch_o
        v = C.verdict(ratio, TARGET_SCORING)
        rows.append(
            [
                what,
                sc["rows"],
                f"{sc[clock]:.1f}",
                f"{sc['logged_s']:.1f}",
                consumer,
                spe,
                f"{epoch:.1f}",
                f"{ratio:.3f}",
                f"{ratio_o:.3f}",
                v,
            ]
        )
        result["checks"].append(
            {
                "check": f"c:{name}:scoring",
                "ratio": ratio,
                f"ratio_{other}": ratio_o,
                "target": f"<= {TARGET_SCORING}",
                "verdict": v,
                "scoring_s": sc[clock],
                "epoch_s": epoch,
            }
        )
    C.print_table(
        [
            "scores",
            "rows",
            f"pass {clock} s",
            "logged s",
            "epoch of",
            "steps/ep",
            f"epoch {clock} s",
            f"ratio ({clock})",
            f"({other})",
            "result",
        ],
        rows,
    )
    return result


def run_logprobs(args) -> str:
    script = os.path.join(HERE, "bench_logprobs.py")
    if not os.path.isfile(script):
        return "(d) benchmarks/bench_logprobs.py does not exist: lean log-probs not measured."
    print("\n(d) lean log-probs at vocab 152k: benchmarks/bench_logprobs.py (target: peak <= 0.5x LF)", flush=True)
    env = dict(os.environ, **C.OFFLINE_ENV)
    cmd = [sys.executable, script, "--threads", str(args.threads)] + (
        args.logprobs_args.split() if args.logprobs_args else []
    )
    proc = subprocess.run(cmd, env=env, cwd=C.REPO_ROOT, capture_output=True, text=True, timeout=args.timeout)
    text = proc.stdout + (f"\n[exit {proc.returncode}] {proc.stderr[-2000:]}" if proc.returncode else "")
    print(text)
    return text


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", default="smollm2,tiny-large", help=f"comma list out of {','.join(C.MODEL_CHOICES)}")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="training steps per timed run (default 8 for smollm2, 24 for the tiny models)",
    )
    p.add_argument("--batch", type=int, default=4, help="per-device batch (pairs for dpo)")
    p.add_argument("--cutoff", type=int, default=128, help="cutoff_len for both datasets")
    p.add_argument("--finetuning-type", choices=("full", "lora"), default="full")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (every variant runs once per round)")
    p.add_argument("--warmup", type=int, default=2, help="steps dropped at the start of every run")
    p.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="which time decides pass/fail (both are printed); see bench_train_speed.py",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads in the training processes (OMP_NUM_THREADS)")
    p.add_argument("--aligned", default=None, help="PoFT aligned model path (default: the target model itself)")
    p.add_argument("--aligned-template", default=C.LF_TEMPLATE)
    p.add_argument("--skip-logprobs", action="store_true", help="do not run benchmarks/bench_logprobs.py")
    p.add_argument("--logprobs-args", default="", help="extra arguments for bench_logprobs.py")
    p.add_argument(
        "--workdir",
        default=None,
        help="keep configs, logs, caches and per-run results here (default: a temp dir, removed)",
    )
    p.add_argument("--timeout", type=float, default=3600, help="seconds per training run")
    p.add_argument("--json", default=None, help="also write the results as JSON to this file")
    args = p.parse_args()

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in C.MODEL_CHOICES:
            p.error(f"unknown model {m!r}; choose from {C.MODEL_CHOICES}")
    if args.steps is not None and args.steps <= args.warmup:
        p.error("--steps must exceed --warmup")

    started = datetime.datetime.now()
    print(f"bench_precompute: {started:%Y-%m-%d %H:%M}, {C.machine_note()}")
    workdir = C.make_workdir("bench_precompute-", args.workdir)
    results = []
    try:
        for m in models:
            results.append(bench_model(m, args, workdir))
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    logprobs = None if args.skip_logprobs else run_logprobs(args)

    print("\nsummary")
    rows, all_pass = [], True
    for r in results:
        for c in r["checks"]:
            all_pass &= c["verdict"] == "PASS"
            rows.append([r["model"], c["check"], f"{c['ratio']:.3f}", c["target"], c["verdict"]])
    for m in re.finditer(r"^sequence_log_probs chunk=(\d+)\s+\S+ MB\s+([0-9.]+)x", logprobs or "", re.M):
        ratio = float(m.group(2))
        v = C.verdict(ratio, 0.5)
        all_pass &= v == "PASS"
        rows.append(["vocab 152k", f"d:logprobs chunk={m.group(1)}:peak", f"{ratio:.3f}", "<= 0.5", v])
    C.print_table(["model", "check", "ratio", "target", "result"], rows)
    print(
        f"\nfinished {datetime.datetime.now():%H:%M} ({(datetime.datetime.now() - started).seconds / 60:.1f} min); "
        f"{C.machine_note()}"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "date": started.isoformat(timespec="minutes"),
                    "args": vars(args),
                    "results": results,
                    "logprobs_output": logprobs,
                    "machine": C.machine_note(),
                },
                f,
                indent=2,
            )
    return 0 if all_pass else 1


if __name__ == "__main__":
    sys.exit(main())
