"""Checks of the shared test infrastructure: CPU models, fixture data, the CLI helper."""

import hashlib
import json
import os

import pytest

from tools import cpu_models

IM_END, NEWLINE = 2, 198  # "<|im_end|>" and "\n" in SmolLM2's vocabulary


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------------
def test_cpu_models_import_is_cheap():
    import subprocess
    import sys

    code = (
        "import sys, tools.cpu_models as m; "
        "bad = [k for k in ('torch', 'transformers', 'llamafactory') if k in sys.modules]; "
        "assert not bad, bad; print(m.cache_dir())"
    )
    env = dict(os.environ, LLAMAFACTORY_MINOR_DISABLE="1", LLAMAFACTORY_MINOR_CACHE="/x/y")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=repo)
    assert out.stdout.strip() == "/x/y"


def test_cpu_models_are_not_installed_with_the_package():
    """tools/cpu_models.py is repository infrastructure: the installed package neither ships nor imports it."""
    import glob
    import re

    import llamafactory_minor

    pkg = os.path.dirname(llamafactory_minor.__file__)
    assert not os.path.exists(os.path.join(pkg, "cpu_models.py"))
    offenders = [
        p
        for p in glob.glob(os.path.join(pkg, "**", "*.py"), recursive=True)
        if re.search(r"^\s*(from|import)\s.*cpu_models", open(p, encoding="utf-8").read(), re.M)
    ]
    assert not offenders, offenders
    from llamafactory_minor.cli import DEMO_MODEL

    assert (cpu_models.SMOLLM2_NAME, cpu_models._MARKER) == (DEMO_MODEL, "lfm_build.json")  # reproduce's default


def test_tiny_model_loads_and_runs(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    cfg = model.config
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers) == (49152, 64, 2)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.intermediate_size) == (4, 2, 128)
    assert cfg.max_position_embeddings == 1024
    assert model.dtype == torch.float32
    n_params = sum(p.numel() for p in model.parameters())
    assert 3_000_000 < n_params < 3_500_000, n_params
    assert (tok.eos_token, tok.pad_token, tok.eos_token_id) == ("<|im_end|>", "<|im_end|>", IM_END)
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    enc = tok([text, "Hello world"], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**enc, labels=enc["input_ids"])
    assert out.logits.shape == (2, enc["input_ids"].shape[1], 49152)
    assert torch.isfinite(out.logits).all()
    # random init: loss close to log(vocab) = 10.8
    assert 10.0 < out.loss.item() < 11.5


def test_tiny_model_is_deterministic(tiny_model, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    a = cpu_models.build_tiny_model(str(tmp_path / "a"), tokenizer=tok)
    b = cpu_models.build_tiny_model(str(tmp_path / "b"), tokenizer=tok)
    digest = _sha256(os.path.join(a, "model.safetensors"))
    assert digest == _sha256(os.path.join(b, "model.safetensors"))
    assert digest == _sha256(os.path.join(tiny_model, "model.safetensors"))


def test_tiny_model_large_vocab(tiny_model_large):
    with open(os.path.join(tiny_model_large, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["vocab_size"] == 152064 and cfg["hidden_size"] == 64
    assert os.path.isfile(os.path.join(tiny_model_large, "tokenizer.json"))


def test_smollm2_is_real_and_chat_template_renders(smollm2):
    import torch
    from llamafactory.data.template import TEMPLATES
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|im_start|>", "<|im_end|>", "<|im_end|>")
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]
    rendered = tok.apply_chat_template(msgs, tokenize=False)
    assert rendered == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n"
    )
    # LLaMA-Factory's template for SmolLM2 renders the very same tokens
    template = TEMPLATES[cpu_models.LF_TEMPLATE]
    prompt_ids, answer_ids = template.encode_oneturn(tok, msgs[1:], system="Be brief.")
    assert tok.decode(prompt_ids + answer_ids) == rendered
    assert prompt_ids + answer_ids == tok(rendered, add_special_tokens=False)["input_ids"]

    model = AutoModelForCausalLM.from_pretrained(smollm2).eval()
    assert model.dtype == torch.float32 and model.config.hidden_size == 576
    enc = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=10, do_sample=False)
    answer = tok.decode(out[0][enc["input_ids"].shape[1] :])
    assert "Paris" in answer, answer


# --------------------------------------------------------------------------------------------------
# fixture data
# --------------------------------------------------------------------------------------------------
def test_fixture_dataset_info(fixture_data_dir):
    with open(os.path.join(fixture_data_dir, "dataset_info.json")) as f:
        info = json.load(f)
    assert set(info) >= {"alpaca_en_tiny", "dpo_en_tiny"}
    for name, entry in info.items():
        path = os.path.join(fixture_data_dir, entry["file_name"])
        assert os.path.isfile(path), (name, path)
        with open(path, encoding="utf-8") as f:
            rows = json.load(f)
        assert len(rows) == 32, name
        if entry.get("formatting", "alpaca") == "alpaca":
            cols = {"prompt": "instruction", "query": "input", "response": "output", **entry.get("columns", {})}
            for row in rows:
                assert set(row) == {cols["prompt"], cols["query"], cols["response"]}, row
        else:
            cols = entry["columns"]
            assert entry.get("ranking") is True
            for row in rows:
                assert set(row) == {cols["messages"], cols["chosen"], cols["rejected"]}, row
                turns = [m for m in row[cols["messages"]] if m["from"] != "system"]
                assert len(turns) % 2 == 1 and turns[-1]["from"] == "human"
                assert row[cols["chosen"]]["from"] == row[cols["rejected"]]["from"] == "gpt"


def test_fixture_rows_are_verbatim_copies(fixture_data_dir, shared_dir):
    src = os.path.join(shared_dir, "data", "llamafactory")
    for tiny, demo in (("alpaca_en_tiny.json", "alpaca_en_demo.json"), ("dpo_en_tiny.json", "dpo_en_demo.json")):
        with open(os.path.join(fixture_data_dir, tiny), encoding="utf-8") as f:
            rows = json.load(f)
        with open(os.path.join(src, demo), encoding="utf-8") as f:
            source = {json.dumps(r, sort_keys=True) for r in json.load(f)}
        for row in rows:
            assert json.dumps(row, sort_keys=True) in source, row


@pytest.mark.parametrize("stage,dataset,cutoff", [("sft", "alpaca_en_tiny", 128), ("rm", "dpo_en_tiny", 288)])
def test_fixture_data_loads_in_llamafactory(tiny_model, fixture_data_dir, tmp_path, stage, dataset, cutoff):
    """LF's own loader accepts the fixture dir, and every answer survives the documented cutoff."""
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    args = dict(
        model_name_or_path=tiny_model,
        stage=stage,
        do_train=True,
        finetuning_type="full",
        dataset=dataset,
        dataset_dir=fixture_data_dir,
        template=cpu_models.LF_TEMPLATE,
        cutoff_len=cutoff,
        output_dir=str(tmp_path / "out"),
        overwrite_cache=True,
        report_to="none",
        preprocessing_num_workers=1,
    )
    model_args, data_args, training_args, _, _ = get_train_args(args)
    tokenizer_module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    module = get_dataset(template, model_args, data_args, training_args, stage=stage, **tokenizer_module)
    data = module["train_dataset"]
    assert len(data) == 32
    label_cols = ["labels"] if stage == "sft" else ["chosen_labels", "rejected_labels"]
    for col in label_cols:
        for labels in data[col]:
            assert len(labels) <= cutoff
            assert labels[-2:] == [IM_END, NEWLINE], "answer was truncated"


# --------------------------------------------------------------------------------------------------
# the CLI helper
# --------------------------------------------------------------------------------------------------
@pytest.mark.e2e
def test_run_cli_trains_tiny_model(run_cli, tiny_train_cfg, read_log_history, write_yaml, tmp_path):
    cfg = tiny_train_cfg("sft", max_steps=2)
    path = write_yaml(tmp_path, cfg, "sft.yaml")
    proc = run_cli(["train", path], timeout=600)
    assert proc.returncode == 0
    history = read_log_history(cfg["output_dir"])
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == 2 and all(9.0 < x < 12.0 for x in losses), history
    assert os.path.isfile(os.path.join(cfg["output_dir"], "model.safetensors"))


def test_run_cli_failure_shows_output(run_cli):
    from conftest import CliError

    with pytest.raises(CliError, match="exit code"):
        run_cli(["train", "/nonexistent/config.yaml"], timeout=300)


def test_cli_error_names_the_fault_before_the_tails():
    """A crash's cause in the middle of a long stderr (cut from the tail) comes first in the CliError message."""
    import subprocess

    from conftest import CliError, aborted_after_training, check_cli

    noise = [f"step {i}: 100%|██████████| 3/3" for i in range(300)]
    err = "\n".join(
        noise[:150]
        + ["Training completed. Do not forget to share your model", "terminate called without an active exception"]
        + ["Fatal Python error: Aborted", '  File "/x/trainer.py", line 3 in save_model']
        + noise[150:]
        + ["  exitcode  : -6 (pid: 1)  (SIGABRT)", "traceback : Signal 6 (SIGABRT) received by PID 1"]
    )
    proc = subprocess.CompletedProcess(["llamafactory-cli", "train", "x.yaml"], 1, stdout="", stderr=err)
    with pytest.raises(CliError) as caught:
        check_cli(proc)
    message = str(caught.value)
    why = message.index("--- why")
    assert why < message.index("terminate called") < message.index("--- stdout (tail)")
    assert message.index('File "/x/trainer.py"') < message.index("--- stdout (tail)")
    assert "step 5:" not in message.split("--- stdout (tail)")[0]  # progress lines are not fault lines
    assert aborted_after_training(proc)
    assert not aborted_after_training(subprocess.CompletedProcess(proc.args, 1, "", err.replace("Training", "X")))
    assert not aborted_after_training(subprocess.CompletedProcess(proc.args, 1, "", err.replace("SIGABRT", "X")))
    assert not aborted_after_training(subprocess.CompletedProcess(proc.args, 0, "", err))
    assert check_cli(subprocess.CompletedProcess(proc.args, 0, "", err)).returncode == 0


def test_run_torchrun_retries_only_a_post_training_abort():
    """One retry on the next port after a worker's SIGABRT past 'Training completed', with a warning; any other
    failure, and a second abort, fail at once."""
    import subprocess

    from conftest import CliError, run_torchrun

    aborted = (
        "Training completed.\nterminate called\n  exitcode  : -6\ntraceback : Signal 6 (SIGABRT) received by PID 7"
    )
    other = "Training completed.\nRuntimeError: Connection closed by peer"

    def fake(outcomes):
        calls = []

        def run(args, env, timeout, check, **kwargs):
            assert check is False
            calls.append(env["MASTER_PORT"])
            rc, err = outcomes[len(calls) - 1]
            return subprocess.CompletedProcess(["llamafactory-cli", "train", args], rc, "", err)

        return run, calls

    run, calls = fake([(1, aborted), (0, "")])
    with pytest.warns(UserWarning, match="(?s)aborted after training.*terminate called"):
        assert run_torchrun(run, "x.yaml", env={"MASTER_PORT": "29600"}, timeout=1).returncode == 0
    assert calls == ["29600", "29601"]
    run, calls = fake([(1, other)])
    with pytest.raises(CliError, match="Connection closed"):
        run_torchrun(run, "x.yaml", env={"MASTER_PORT": "29600"}, timeout=1)
    assert calls == ["29600"]
    run, calls = fake([(1, aborted), (1, aborted)])
    with pytest.warns(UserWarning), pytest.raises(CliError, match="SIGABRT"):
        run_torchrun(run, "x.yaml", env={"MASTER_PORT": "29600"}, timeout=1)
    assert len(calls) == 2
