"""Peak memory and time of forward+backward: LF's ``get_batch_logps`` vs ``sequence_log_probs``.

Setting (defaults): B=2 sequences, T=512 tokens, vocabulary 152,064 (Qwen2), bf16 logits that require
grad, every label valid (no prompt masking -- the worst case for ``sequence_log_probs``, which skips
masked positions; pass ``--prompt-len`` to mask a prompt).

Variants:

* ``lf``   -- what LF 0.9.5's DPO trainer does: ``logits.to(torch.float32)`` then
  ``llamafactory.train.trainer_utils.get_batch_logps``; the float32 copy is dropped before backward
  (as in LF, where it is not saved by autograd), which is the most favourable case for LF.
* ``ours`` -- ``llamafactory_minor.objectives.sequence_log_probs`` on the bf16 logits directly, at the
  default ``chunk_size=1024`` and at a smaller chunk.

Method (CPU; CUDA's allocator statistics are not available): each variant runs in a *fresh
subprocess* so that no allocator cache or earlier peak leaks between variants. The subprocess
imports everything, builds the inputs (the bf16 logits are filled row block by row block so that no
float32 temporary inflates the peak), then resets the kernel's peak-RSS counter to the current RSS
(``echo 5 > /proc/self/clear_refs``, Linux) and records that baseline. It then runs forward +
``backward()`` once and reads the peak RSS (``VmHWM``; ``resource.getrusage(RUSAGE_SELF).ru_maxrss``
when the reset is not permitted -- then the baseline is ``max(current RSS, ru_maxrss)`` before the
run and the figure is a lower bound). Reported: peak RSS growth over the baseline, i.e. every byte the
computation needed on top of its inputs, including the bf16 gradient of the logits (311 MB here),
which both variants must produce. glibc serves these large tensors with mmap and returns them to the
OS when freed, so RSS follows live tensor memory closely. Time: the median of ``--repeats`` further
forward+backward runs in the same subprocess (torch threads fixed to ``--threads``).

Run: ``.venv/bin/python benchmarks/bench_logprobs.py`` (1-4 minutes on 2 CPU cores depending on load;
the LF subprocess needs about 3 GB of RAM).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _hwm_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _worker(args) -> dict:
    """Runs inside the fresh subprocess: one variant, one configuration."""
    import resource

    import torch

    torch.set_num_threads(args.threads)
    from llamafactory.train.trainer_utils import get_batch_logps

    from llamafactory_minor.objectives import sequence_log_probs

    B, T, V = args.batch, args.seq_len, args.vocab
    gen = torch.Generator().manual_seed(0)
    logits = torch.empty(B, T, V, dtype=torch.bfloat16)
    for b in range(B):
        for s in range(0, T, 64):
            logits[b, s : s + 64] = torch.randn(min(64, T - s), V, generator=gen) * 2
    logits.requires_grad_(True)
    labels = torch.randint(0, V, (B, T), generator=gen)
    labels[:, : args.prompt_len] = -100

    if args.variant == "lf":

        def step():
            all_logits = logits.to(torch.float32)  # LF's DPO trainer upcast
            logps, _ = get_batch_logps(all_logits, labels)
            del all_logits
            logps.sum().backward()
            return logps

    else:

        def step():
            logps, _ = sequence_log_probs(logits, labels, chunk_size=args.chunk_size)
            logps.sum().backward()
            return logps

    reset_ok = _reset_peak()
    base_kb = _rss_kb()
    if not reset_ok:
        base_kb = max(base_kb, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    logps = step()
    peak_kb = _hwm_kb() if reset_ok else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    checksum = float(logps.detach().sum())
    grad_checksum = float(logits.grad.float().abs().sum())
    times = []
    for _ in range(args.repeats):
        logits.grad = None
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    return {
        "variant": args.variant,
        "chunk_size": args.chunk_size if args.variant == "ours" else None,
        "peak_growth_mb": (peak_kb - base_kb) / 1024,
        "baseline_mb": base_kb / 1024,
        "peak_reset": reset_ok,
        "time_s": times[len(times) // 2],
        "logps_sum": checksum,
        "grad_abs_sum": grad_checksum,
    }


def _run_variant(args, variant: str, chunk_size: int) -> dict:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        "--variant",
        variant,
        "--chunk-size",
        str(chunk_size),
        "--batch",
        str(args.batch),
        "--seq-len",
        str(args.seq_len),
        "--vocab",
        str(args.vocab),
        "--prompt-len",
        str(args.prompt_len),
        "--threads",
        str(args.threads),
        "--repeats",
        str(args.repeats),
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    # Only the math is measured: the plugin's LF patches are irrelevant here (and not under test).
    env.setdefault("LLAMAFACTORY_MINOR_DISABLE", "1")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"worker {variant} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--vocab", type=int, default=152064)
    p.add_argument(
        "--prompt-len",
        type=int,
        default=0,
        help="label positions masked at the start of each row",
    )
    p.add_argument(
        "--chunk-sizes",
        type=str,
        default="1024,256",
        help="chunk sizes of sequence_log_probs to run",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--variant", choices=["lf", "ours"], default="lf", help=argparse.SUPPRESS)
    p.add_argument("--chunk-size", type=int, default=1024, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.worker:
        print(json.dumps(_worker(args)))
        return

    print(
        f"B={args.batch} T={args.seq_len} V={args.vocab} bf16 logits, prompt_len={args.prompt_len}, "
        f"threads={args.threads}; bf16 logits = {args.batch * args.seq_len * args.vocab * 2 / 2**20:.0f} MB"
    )
    lf = _run_variant(args, "lf", 0)
    rows = [("LF get_batch_logps (fp32 upcast)", lf)]
    for cs in [int(c) for c in args.chunk_sizes.split(",") if c]:
        rows.append((f"sequence_log_probs chunk={cs}", _run_variant(args, "ours", cs)))

    print(f"{'variant':36s} {'peak RSS growth':>16s} {'ratio':>7s} {'time':>8s} {'ratio':>7s}  checks")
    for name, r in rows:
        print(
            f"{name:36s} {r['peak_growth_mb']:13.0f} MB {r['peak_growth_mb'] / lf['peak_growth_mb']:6.2f}x "
            f"{r['time_s']:7.2f}s {r['time_s'] / lf['time_s']:6.2f}x  "
            f"logps_sum={r['logps_sum']:.3f} |grad|_sum={r['grad_abs_sum']:.3f}"
        )
    if not all(r["peak_reset"] for _, r in rows):
        print("note: /proc/self/clear_refs not writable; peak growth measured with ru_maxrss (lower bound)")


if __name__ == "__main__":
    main()
