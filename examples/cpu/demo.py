"""`make demo`: the short version of experiment 1 (MinorSFT Fig. 1) on SmolLM2-135M-Instruct, on this CPU.

It is `llamafactory-minor reproduce minorsft` with two runs and fewer steps:
- SFT (lr a, `track_m_theta: true`, its loss unchanged) and MinorSFT (lr 2a, beta 0.04) trained with LoRA through
  stock `llamafactory-cli train` on the arithmetic word problems of `llamafactory-minor make-task`;
- both and the base model evaluated by `llamafactory-minor-eval` on held-out problems (disjoint from training by
  problem), and their drift measured on general data no run trained on (LF's alpaca demo answers, vs the base);
- m_theta per step of both runs in one PNG, a table, and the verdict on the paper's two claims as measured.

Everything lands in `saves/demo/` (`results.json`, `results.md`, `m_theta.png`, the runs and the evaluation);
a finished run is reused when the demo is run again (`--overwrite` trains again). The measured wall-clock time
is printed at the end.
"""

import argparse
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=24, help="training steps per run (default 24)")
    parser.add_argument("--test", type=int, default=50, help="held-out problems evaluated (default 50)")
    parser.add_argument("--out", default=os.path.join(REPO, "saves", "demo"))
    parser.add_argument("--overwrite", action="store_true", help="train again even if a run is finished")
    return parser.parse_args(argv)


def demo_args(args: argparse.Namespace | None = None) -> list[str]:
    """The arguments of `llamafactory-minor` that the demo runs (`reproduce minorsft ...`) for the demo's options
    ``args`` (default: its defaults, what `make demo` runs)."""
    args = parse_args([]) if args is None else args
    argv = [
        "reproduce",
        "minorsft",
        "--out",
        args.out,
        "--runs",
        "sft,minorsft",
        "--steps",
        str(args.steps),
        "--test",
        str(args.test),
        "--deviation-limit",
        "16",
    ]
    if args.overwrite:
        argv.append("--overwrite")
    return argv


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cli = os.path.join(os.path.dirname(sys.executable), "llamafactory-minor")
    cmd = [cli if os.path.exists(cli) else "llamafactory-minor", *demo_args(args)]
    print("$ " + " ".join(["llamafactory-minor", *cmd[1:]]), flush=True)
    start = time.time()
    proc = subprocess.run(cmd, cwd=REPO)
    minutes = (time.time() - start) / 60
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    if proc.returncode != 0:
        sys.exit(f"demo failed (exit {proc.returncode}) after {minutes:.1f} min")
    print(
        f"\nmake demo took {minutes:.1f} min (load average at the end: {load}); results in "
        f"{os.path.relpath(args.out, REPO)}/results.md, plot {os.path.relpath(args.out, REPO)}/m_theta.png"
    )


if __name__ == "__main__":
    main()
