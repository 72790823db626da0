"""Step time of the plugin's objectives with an ONLINE reference vs stock LLaMA-Factory (issue 2, "Speed").

Targets (same model, data and batch; ratios of median seconds per step, measured within one run):

* ``minorsft`` / ``sftdpo`` (reference forward every step) <= 1.45x LF ``sft``   (``alpaca_en_tiny``)
* ``dpo`` + ``pref_loss: minordpo`` / ``dpop``            <= 1.02x LF ``dpo``   (``dpo_en_tiny``, ``sigmoid``)

Method. Every variant is a real LF training run (``run_exp``, the code path of ``llamafactory-cli train``)
in a fresh subprocess (see ``_common.py``): stock ``sft`` / ``dpo`` with the plugin switched off
(``LLAMAFACTORY_MINOR_DISABLE=1``), the plugin's variants through ``llamafactory_minor.run_exp``. A
``TrainerCallback`` records a timestamp at every ``on_step_end``; the per-step time is the delta between
consecutive steps (data loading, forward, backward, optimizer, logging: everything), both in wall-clock
seconds and in CPU seconds of the training process (``time.process_time()``: user + system time of all its
threads). The first ``--warmup`` (2) steps of every run are dropped. Variants are interleaved over ``--rounds`` rounds (A B C ..., then
... C B A) to cancel drift in the machine's load; the figure per variant is the median over all kept steps
of all rounds; the ratio divides it by the baseline's. The per-round ratio range is printed too, as a
noise indicator.

The reference: with LoRA, LF's default -- the base model with the adapters disabled (no extra weights);
with ``--finetuning-type full``, a frozen copy of the initial model (LF's DPO default).

Torch runs with ``--threads`` threads (default 1): on a shared 2-core machine a 2-thread torch job whose
threads are descheduled in turn runs up to 3x slower and far noisier than a 1-thread one; ratios of
compute-bound steps do not depend much on the thread count. Use ``--threads 2`` on a quiet machine.

Pass/fail uses ``--clock`` (default ``cpu``), the other clock is printed beside it. On a machine shared with
other jobs, wall-clock per-step times of identical runs differ by up to 2x (time spent waiting for a core
counts as step time), while the CPU time of a 1-thread process only counts the work it did; with one
thread and an idle machine the two agree. Use ``--clock wall`` on a quiet machine.

Run (from the repository root; ~20-30 min for the default SmolLM2 LoRA setting on a busy 2-core machine,
~3 min with ``--model tiny``)::

    .venv/bin/python benchmarks/bench_train_speed.py
    .venv/bin/python benchmarks/bench_train_speed.py --model tiny --steps 24
    .venv/bin/python benchmarks/bench_train_speed.py --variants sft,minorsft      # a subset
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402

# name -> (stage, dataset kind, plugin, extra config, baseline name, target)
VARIANTS = {
    "sft": ("sft", "single", False, {}, None, None),
    "minorsft": ("minorsft", "single", True, {"pref_beta": 0.04}, "sft", 1.45),
    "sftdpo": ("sftdpo", "single", True, {"pref_beta": 0.04}, "sft", 1.45),
    "dpo": ("dpo", "pair", False, {"pref_loss": "sigmoid", "pref_beta": 0.1}, None, None),
    "minordpo": ("dpo", "pair", True, {"pref_loss": "minordpo", "pref_beta": 0.1}, "dpo", 1.02),
    "dpop": ("dpo", "pair", True, {"pref_loss": "dpop", "pref_beta": 0.1, "dpop_lambda": 50.0}, "dpo", 1.02),
}
DATASETS = {"single": "alpaca_en_tiny", "pair": "dpo_en_tiny"}


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", choices=C.MODEL_CHOICES, default="smollm2")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="training steps per run (default 8 for smollm2, 24 for the tiny models)",
    )
    p.add_argument("--batch", type=int, default=4, help="per-device batch (pairs for the DPO family)")
    p.add_argument("--cutoff", type=int, default=128, help="cutoff_len for both datasets")
    p.add_argument("--finetuning-type", choices=("full", "lora"), default="lora")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (every variant runs once per round)")
    p.add_argument("--warmup", type=int, default=2, help="steps dropped at the start of every run")
    p.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="which per-step time decides pass/fail (both are printed); see the module doc",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads in the training processes (OMP_NUM_THREADS)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list out of {','.join(VARIANTS)}")
    p.add_argument(
        "--workdir", default=None, help="keep configs, logs and per-run results here (default: a temp dir, removed)"
    )
    p.add_argument("--timeout", type=float, default=3600, help="seconds per training run")
    p.add_argument("--json", default=None, help="also write the results as JSON to this file")
    args = p.parse_args()

    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    for n in list(names):  # a compared variant needs its baseline in the same run
        base = VARIANTS[n][4]
        if base and base not in names:
            names.insert(0, base)
    names = [n for n in VARIANTS if n in names]  # canonical order: sft family, then dpo family
    steps = args.steps or (8 if args.model == "smollm2" else 24)
    if steps <= args.warmup:
        p.error("--steps must exceed --warmup")

    model = C.model_path(args.model)
    workdir = C.make_workdir("bench_train_speed-", args.workdir)

    def factory(name):
        stage, kind, plugin, extra, _, _ = VARIANTS[name]

        def make(out):
            return C.train_config(
                model, out, stage, DATASETS[kind], steps, args.batch, args.cutoff, args.finetuning_type, **extra
            )

        return C.Variant(name, make, plugin)

    variants = [factory(n) for n in names]
    by_name = {v.name: v for v in variants}
    started = datetime.datetime.now()
    print(f"bench_train_speed: {started:%Y-%m-%d %H:%M}, {C.machine_note()}")
    print(
        f"model {args.model} ({model}), {args.finetuning_type}, batch {args.batch}, cutoff {args.cutoff}, "
        f"{steps} steps/run (first {args.warmup} dropped), {args.rounds} interleaved rounds, "
        f"torch threads {args.threads}; reference online "
        f"({'base with adapters disabled' if args.finetuning_type == 'lora' else 'frozen copy'})"
    )
    try:
        C.run_interleaved(variants, args.rounds, workdir, timeout=args.timeout, threads=args.threads)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    clock, other = args.clock, ("wall" if args.clock == "cpu" else "cpu")
    rows, out = [], []
    all_pass = True
    for v in variants:
        _, _, _, _, base, target = VARIANTS[v.name]
        med, med_o = v.median_step(args.warmup, clock), v.median_step(args.warmup, other)
        n = len(v.step_times(args.warmup, clock))
        entry = {
            "variant": v.name,
            f"median_{clock}_s_per_step": med,
            f"median_{other}_s_per_step": med_o,
            "steps_kept": n,
        }
        if base is None:
            rows.append([v.name, "-", f"{med:.3f}", f"{med_o:.3f}", n, "base", "-", "base", "-", "-"])
            out.append(entry)
            continue
        b = by_name[base]
        ratio = med / b.median_step(args.warmup, clock)
        ratio_o = med_o / b.median_step(args.warmup, other)
        per_round = [
            v.median_round_step(i, args.warmup, clock) / b.median_round_step(i, args.warmup, clock)
            for i in range(args.rounds)
        ]
        verdict = C.verdict(ratio, target)
        all_pass &= verdict == "PASS"
        rows.append(
            [
                v.name,
                base,
                f"{med:.3f}",
                f"{med_o:.3f}",
                n,
                f"{ratio:.3f}",
                f"{min(per_round):.2f}-{max(per_round):.2f}",
                f"{ratio_o:.3f}",
                f"<= {target:.2f}",
                verdict,
            ]
        )
        entry.update(
            {
                "baseline": base,
                f"ratio_{clock}": ratio,
                f"ratio_{other}": ratio_o,
                f"per_round_ratios_{clock}": per_round,
                "target": target,
                "verdict": verdict,
            }
        )
        out.append(entry)
    print()
    C.print_table(
        [
            "variant",
            "vs",
            f"{clock} s/step",
            f"{other} s/step",
            "steps",
            f"ratio ({clock})",
            "per-round",
            f"ratio ({other})",
            "target",
            "result",
        ],
        rows,
    )
    print(
        f"(result on the {clock} clock; medians over the kept steps of all rounds; per-round = range of the "
        f"per-round ratios)"
    )
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
                    "steps": steps,
                    "results": out,
                    "machine": C.machine_note(),
                },
                f,
                indent=2,
            )
    return 0 if all_pass else 1


if __name__ == "__main__":
    sys.exit(main())
