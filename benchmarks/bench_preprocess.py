"""Keyed pre-processing (the plugin's content + token keys) vs LF's own, on LF's real data path.

What runs: ``llamafactory.data.get_dataset`` (LF 0.9.5: load, align, tokenize with ``datasets.map``) on LF's
alpaca demo data repeated to ``--rows`` rows (default 20,000), SmolLM2's tokenizer and template, cutoff 1024,
``overwrite_cache: true`` (nothing reused between runs). Variants, interleaved in rounds (A B ... then ... B A)
in one process so that load drift hits both alike:

* ``lf``    -- LF's own pre-processing (the plugin inactive);
* ``keyed`` -- the same inside ``plugin_dataset(..., keyed=True)``, as ``stage: poft`` and every
  ``precompute_ref_log_probs`` run do: LF's processor on each whole batch, plus ``sample_key``,
  ``token_key`` and ``answer_tokens`` per row.

for each ``--workers`` value (default 1 and 4: ``preprocessing_num_workers``). Printed: the median wall time per
variant and the ratio keyed / lf (target <= 1.2x), with the load average. Both variants' rows are checked to be
identical (input_ids, labels).

Run: ``.venv/bin/python benchmarks/bench_preprocess.py [--rows 20000] [--workers 1,4] [--rounds 2]``
(needs ``make models`` for the tokenizer and ``../shared/data/llamafactory/alpaca_en_demo.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
DEFAULT_ALPACA = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data", "llamafactory", "alpaca_en_demo.json")


def _dataset_dir(tmp: str, alpaca: str, rows: int) -> str:
    with open(alpaca, encoding="utf-8") as f:
        base = json.load(f)
    data = [
        dict(base[i % len(base)], instruction=f"{base[i % len(base)]['instruction']} (#{i})") for i in range(rows)
    ]  # distinct rows: every content key and token key is new
    with open(os.path.join(tmp, "alpaca_rep.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)
    with open(os.path.join(tmp, "dataset_info.json"), "w") as f:
        json.dump({"alpaca_rep": {"file_name": "alpaca_rep.json"}}, f)
    return tmp


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--workers", default="1,4")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--alpaca", default=DEFAULT_ALPACA)
    args = parser.parse_args()
    if not os.path.isfile(args.alpaca):
        print(f"no alpaca demo data at {args.alpaca}: pass --alpaca PATH (LF's data/alpaca_en_demo.json)")
        return 2
    for key, value in (
        ("HF_HUB_OFFLINE", "1"),
        ("HF_DATASETS_OFFLINE", "1"),
        ("LLAMAFACTORY_VERBOSITY", "WARN"),
        ("TRANSFORMERS_VERBOSITY", "error"),
        ("HF_DATASETS_DISABLE_PROGRESS_BARS", "1"),
    ):
        os.environ.setdefault(key, value)

    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    import llamafactory_minor  # noqa: F401  (activates the plugin's LF patches)
    from llamafactory_minor.integration.data import plugin_dataset
    from tools import cpu_models  # the repository's tools/ (REPO_ROOT is on sys.path)

    model = cpu_models.tiny_model_path()  # SmolLM2's tokenizer
    workers = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="lfm-bench-pre-") as tmp:
        dataset_dir = _dataset_dir(tmp, args.alpaca, args.rows)
        times = {(w, v): [] for w in workers for v in ("lf", "keyed")}
        rows_of = {}
        for r in range(args.rounds):
            order = ["lf", "keyed"] if r % 2 == 0 else ["keyed", "lf"]
            for w in workers:
                for variant in order:
                    cfg = dict(
                        model_name_or_path=model,
                        stage="sft",
                        do_train=True,
                        finetuning_type="full",
                        dataset="alpaca_rep",
                        dataset_dir=dataset_dir,
                        template="smollm2",
                        cutoff_len=1024,
                        overwrite_cache=True,
                        preprocessing_num_workers=w,
                        output_dir=os.path.join(tmp, "o"),
                        report_to="none",
                    )
                    model_args, data_args, training_args, _, _ = get_train_args(cfg)
                    tm = load_tokenizer(model_args)
                    template = get_template_and_fix_tokenizer(tm["tokenizer"], data_args)
                    start = time.perf_counter()
                    with plugin_dataset("stage: bench", keyed=variant == "keyed"):
                        module = get_dataset(template, model_args, data_args, training_args, stage="sft", **tm)
                    times[(w, variant)].append(time.perf_counter() - start)
                    ds = module["train_dataset"]
                    if r == 0:
                        rows_of[(w, variant)] = (ds["input_ids"][:50], ds["labels"][:50], len(ds))
                    print(
                        f"[round {r + 1}] workers {w} {variant}: {times[(w, variant)][-1]:.1f}s ({len(ds)} rows)",
                        flush=True,
                    )
        load = os.getloadavg()
        print(
            f"\nLF 0.9.5 get_dataset on {args.rows} alpaca rows, cutoff 1024; load average "
            f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (2 cores; above ~2 the machine is loaded)"
        )
        print("| workers | LF (s) | keyed (s) | keyed / LF | target |")
        print("|---|---|---|---|---|")
        ok = True
        for w in workers:
            lf, keyed = statistics.median(times[(w, "lf")]), statistics.median(times[(w, "keyed")])
            ratio = keyed / lf
            ok &= ratio <= 1.2
            same = rows_of[(w, "lf")] == rows_of[(w, "keyed")]
            print(f"| {w} | {lf:.1f} | {keyed:.1f} | {ratio:.2f}x | <= 1.2x{'' if same else ' (ROWS DIFFER!)'} |")
            ok &= same
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
