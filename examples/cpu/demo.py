"""`make demo`: SFT vs MinorSFT on SmolLM2-135M-Instruct, on this CPU, through stock `llamafactory-cli train`.

Both runs log m_theta (MinorSFT paper, Eq. 8) against the initial model: SFT with `track_m_theta: true`
(its loss unchanged), MinorSFT natively. The paper's claim (its Fig. 1) is that MinorSFT deviates less
from the reference than SFT even at twice SFT's learning rate. Prints a step-by-step table and writes
`saves/demo/m_theta.png`. About 5-8 minutes on 2 cores.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(name, cfg, out_root):
    out = os.path.join(out_root, name)
    cfg = dict(cfg, output_dir=out)
    os.makedirs(out_root, exist_ok=True)
    path = os.path.join(out_root, f"{name}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    cli = os.path.join(os.path.dirname(sys.executable), "llamafactory-cli")
    print(f"\n$ llamafactory-cli train {os.path.relpath(path, REPO)}", flush=True)
    start = time.time()
    with open(os.path.join(out_root, f"{name}.log"), "w") as log:
        proc = subprocess.run([cli, "train", path], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                              env=dict(os.environ, HF_HUB_OFFLINE="1"))
    if proc.returncode != 0:
        sys.exit(f"{name} failed (exit {proc.returncode}); see {out_root}/{name}.log")
    print(f"  done in {time.time() - start:.0f}s", flush=True)
    with open(os.path.join(out, "trainer_state.json")) as f:
        return [h for h in json.load(f)["log_history"] if "loss" in h and "train_runtime" not in h]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--out", default=os.path.join(REPO, "saves", "demo"))
    args = parser.parse_args()

    sys.path.insert(0, REPO)
    from tools.cpu_models import LF_TEMPLATE, smollm2_path  # the repository's tools/ (cpu-demo extra)

    print("Preparing SmolLM2-135M-Instruct (cached after the first time) ...", flush=True)
    model = smollm2_path()
    common = dict(
        model_name_or_path=model, do_train=True, finetuning_type="full", template=LF_TEMPLATE,
        dataset="alpaca_en_tiny", dataset_dir=os.path.join(REPO, "tests", "fixtures", "data"), cutoff_len=128,
        per_device_train_batch_size=4, gradient_accumulation_steps=1, max_steps=args.steps,
        lr_scheduler_type="linear", warmup_ratio=0.1, logging_steps=1, save_strategy="no", report_to="none",
        overwrite_output_dir=True, preprocessing_num_workers=1, dataloader_num_workers=0, seed=42,
        plot_loss=True, bf16=False,
    )
    sft = run("sft", dict(common, stage="sft", learning_rate=5e-5, track_m_theta=True), args.out)
    minor = run("minorsft", dict(common, stage="minorsft", learning_rate=1e-4, pref_beta=0.04), args.out)

    print("\nstep | SFT loss | SFT m_theta | MinorSFT loss | MinorSFT m_theta | MinorSFT coef")
    print("-----|----------|-------------|---------------|------------------|--------------")
    for a, b in zip(sft, minor):
        print(f"{a['step']:4d} | {a['loss']:8.4f} | {a['m_theta']:11.5f} | {b['loss']:13.4f} | "
              f"{b['m_theta']:16.5f} | {b['minorsft/coef']:.4f}")
    print("\nSFT (lr 5e-5) vs MinorSFT (lr 1e-4, beta 0.04). The losses are different objectives and are not")
    print("comparable in value; m_theta (mean over the batch of log(pi/pi_ref)/answer length) is.")
    print(f"final m_theta: SFT {sft[-1]['m_theta']:.5f}, MinorSFT {minor[-1]['m_theta']:.5f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([e["step"] for e in sft], [e["m_theta"] for e in sft], label="SFT lr 5e-5")
    ax.plot([e["step"] for e in minor], [e["m_theta"] for e in minor], label="MinorSFT lr 1e-4, beta 0.04")
    ax.set_xlabel("step")
    ax.set_ylabel("m_theta (MinorSFT Eq. 8)")
    ax.set_title("Deviation from the initial model, SmolLM2-135M-Instruct")
    ax.legend()
    fig.tight_layout()
    png = os.path.join(args.out, "m_theta.png")
    fig.savefig(png, dpi=100)
    print(f"plot: {os.path.relpath(png, REPO)} (and each run's training_*.png from LF's plot_loss)")


if __name__ == "__main__":
    main()
