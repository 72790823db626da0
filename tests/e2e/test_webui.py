"""LlamaBoard (LF's gradio web UI) with the plugin, driven in a real headless Chromium.

The real app (``llamafactory.webui.interface.create_ui()``) runs in a subprocess of this venv on
127.0.0.1 (the .pth hook patches it as it is imported), in a fresh working folder (LF writes
``saves/``, ``llamaboard_cache/`` and ``llamaboard_config/`` relative to it). Playwright for Python
drives Debian's ``/usr/bin/chromium`` (no browser download). The training runs are real
``llamafactory-cli train`` subprocesses started by LF's runner: a few full-FT steps of the tiny CPU
model (``cpu_models.tiny_model_path()``, template ``smollm2``) on the fixture data.

Screenshots land in ``artifacts/webui/`` (git-ignored); the server log is
``artifacts/webui/server.log``.

Needs: Debian ``chromium`` (+ ``chromium-driver`` for Selenium users) and ``pip install playwright``;
skipped with the reason when either is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import LF_TEMPLATE, REPO_ROOT, cli_env, read_log_history

CHROMIUM = "/usr/bin/chromium"
# flags that work on this workplace's machines (no network: background services off)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO_ROOT / "artifacts" / "webui"
SERVER_START_TIMEOUT = 180
RUN_TIMEOUT = 240
# LF's progress bar label while training: "Running 2/4: 0:00:03 < 0:00:03"
PROGRESS_RE = re.compile(r"Running \d+/\d+: ")
POFT_ERROR = "`stage: poft` needs aligned-LLM scores"  # the PluginError's text (integration/arguments.py)
LANG_LABELS = {"en": "Language", "zh": "语言", "ja": "言語", "ko": "언어", "ru": "Язык"}  # LF's own labels
MINOR_TAB_EN = "llamafactory-minor: MinorSFT, SFT using DPO, MinorDPO, DPOP, PoFT"

SERVER_CODE = """
import sys
from llamafactory.webui.interface import create_ui
create_ui().queue().launch(server_name="127.0.0.1", server_port=int(sys.argv[1]), share=False, inbrowser=False)
"""

webui_e2e = [pytest.mark.webui, pytest.mark.e2e]


# --------------------------------------------------------------------------------------------------
# fixtures: server, browser, page
# --------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


@pytest.fixture(scope="module")
def sync_playwright():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium and chromium-driver "
                    "(apt-get install -y chromium chromium-driver) to run the web UI tests")
    module = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    return module.sync_playwright


@pytest.fixture(scope="module")
def webui(sync_playwright, tiny_model, tmp_path_factory):
    """The LlamaBoard server: ``SimpleNamespace(url, workdir, saves, log)``."""
    from types import SimpleNamespace

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    workdir = tmp_path_factory.mktemp("llamaboard")
    log_path = ARTIFACTS / "server.log"
    port = _free_port()
    env = cli_env({"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    env.pop("LLAMAFACTORY_MINOR_DISABLE", None)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER_CODE, str(port)],
            cwd=str(workdir), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + SERVER_START_TIMEOUT
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the web UI server exited with {proc.returncode}:\n{_tail(log_path)}")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail(f"the web UI server did not answer within {SERVER_START_TIMEOUT}s:\n{_tail(log_path)}")
            time.sleep(1)
        yield SimpleNamespace(url=url, workdir=workdir, saves=workdir / "saves" / "Custom" / "full", log=log_path,
                              model=tiny_model)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser_context(sync_playwright, webui):
    user_data_dir = tempfile.mkdtemp(prefix="lfm-chromium-")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            user_data_dir, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        context.set_default_timeout(30_000)
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(user_data_dir, ignore_errors=True)


@pytest.fixture
def page(browser_context, webui):
    page = browser_context.new_page()
    page.goto(webui.url, wait_until="domcontentloaded")
    page.get_by_role("listbox", name="Stage", exact=True).wait_for(timeout=90_000)  # labels set by LF's resume
    yield page
    page.close()


# --------------------------------------------------------------------------------------------------
# page helpers (gradio 5 DOM: dropdown inputs carry aria-label; other inputs sit in a <label>)
# --------------------------------------------------------------------------------------------------
def _visible(locator):
    return locator.filter(visible=True).first


def labelled_input(page, label: str):
    """The visible textbox / multiselect input whose gradio label text is exactly ``label``."""
    title = page.locator('span[data-testid="block-info"]', has_text=re.compile(rf"^\s*{re.escape(label)}\s*$"))
    return _visible(page.locator("label").filter(has=title).locator("textarea, input"))


def switch_language(page, current_label: str, lang: str) -> None:
    box = _visible(page.get_by_role("listbox", name=current_label, exact=True))
    box.click()
    page.locator(f'ul.options li[aria-label="{lang}"]').click()
    page.keyboard.press("Escape")
    _visible(page.get_by_role("listbox", name=LANG_LABELS[lang], exact=True)).wait_for()  # LF relabelled


def select(page, label: str, value: str) -> None:
    box = _visible(page.get_by_role("listbox", name=label, exact=True))
    box.click()
    page.locator(f'ul.options li[aria-label="{value}"]').click()
    page.keyboard.press("Escape")
    assert box.input_value() == value, f"{label}: wanted {value}, got {box.input_value()}"


def dataset_choices(page) -> list[str]:
    """Focus the dataset box (LF's list_datasets runs) and return the offered datasets."""
    box = labelled_input(page, "Dataset")
    box.click()
    page.locator("ul.options li").first.wait_for()
    time.sleep(0.5)  # the choices update arrives with the focus event
    names = [t.replace("✓", "").strip() for t in page.locator("ul.options li").all_inner_texts()]
    return names


def select_dataset(page, name: str) -> list[str]:
    names = dataset_choices(page)
    assert name in names, f"{name} not offered; got {names}"
    page.locator(f'ul.options li[aria-label="{name}"]').click()
    page.keyboard.press("Escape")
    return names


def fill(page, label: str, value: str) -> None:
    box = labelled_input(page, label)
    for _ in range(3):  # a model-name change can overwrite a path typed right after it
        box.fill(value)
        box.press("Tab")
        time.sleep(0.3)
        if box.input_value() == value:
            return
    assert box.input_value() == value, f"{label}: wanted {value!r}, got {box.input_value()!r}"


def set_output_dir(page, name: str) -> None:
    box = _visible(page.get_by_role("listbox", name="Output dir", exact=True))
    box.fill(name)
    box.press("Enter")
    page.keyboard.press("Escape")
    time.sleep(0.5)
    assert box.input_value() == name


def open_accordion(page, title: str, probe) -> None:
    """Open the accordion ``title`` unless ``probe`` (a locator inside it) is visible already."""
    if probe.count() and probe.is_visible():
        return
    _visible(page.get_by_text(title, exact=True)).click()
    probe.wait_for()


def output_text(page) -> str:
    """LF's output box: the Markdown in the Train tab's column that holds the "Output dir" dropdown."""
    column = page.locator("div.column", has=_visible(page.get_by_role("listbox", name="Output dir", exact=True)))
    box = column.last.locator('[data-testid="markdown"]').first
    return box.inner_text()


def configure(page, webui, stage: str, dataset: str, extra: dict, output_dir: str | None = None) -> list[str]:
    select(page, "Model name", "Custom")
    time.sleep(0.5)  # LF fills path + template from the model name
    fill(page, "Model path", webui.model)
    select(page, "Finetuning method", "full")
    select(page, "Chat template", LF_TEMPLATE)
    select(page, "Stage", stage)
    fill(page, "Data dir", str(REPO_ROOT / "tests" / "fixtures" / "data"))
    offered = select_dataset(page, dataset)
    select(page, "Compute type", "fp32")
    open_accordion(page, "Extra configurations", labelled_input(page, "Extra arguments"))
    fill(page, "Extra arguments", json.dumps(extra))
    if output_dir:
        set_output_dir(page, output_dir)
    return offered


def preview(page) -> str:
    page.get_by_role("button", name="Preview command").click()
    deadline = time.time() + 30
    while "llamafactory-cli train" not in output_text(page):
        assert time.time() < deadline, f"no command preview; the page says:\n{output_text(page)[:3000]}"
        time.sleep(0.25)
    return output_text(page)


def run_and_wait(page, name: str) -> tuple[str, bool]:
    """Click Start, poll the page until LF says Finished/Failed; return (output text, progress seen)."""
    page.get_by_role("button", name="Start").click()
    seen_progress = False
    deadline = time.time() + RUN_TIMEOUT
    text = ""
    while time.time() < deadline:
        body = page.inner_text("body")
        if not seen_progress and PROGRESS_RE.search(body):
            seen_progress = True
            page.screenshot(path=str(ARTIFACTS / f"{name}-progress.png"))  # LF's progress bar mid-run
        text = output_text(page)
        if re.search(r"^(Finished|Failed)\.", text.lstrip()):
            break
        time.sleep(0.25)
    else:
        page.screenshot(path=str(ARTIFACTS / f"{name}-timeout.png"), full_page=False)
        pytest.fail(f"no end of training on the page within {RUN_TIMEOUT}s; page text tail:\n{text[-3000:]}")
    time.sleep(2.5)  # LF's last monitor update (final log + plot) and our metrics table
    return output_text(page), seen_progress


def loss_plot_drawn(page) -> bool:
    """LF's loss viewer (gr.Plot, matplotlib) shows an image once trainer_log.jsonl has losses."""
    plot = page.locator("div.block", has=page.get_by_text("Loss", exact=True)).last
    return plot.locator("img").count() > 0


def screenshot(page, name: str) -> Path:
    """Viewport screenshot with LF's output box (and loss plot) in view, plus the whole page."""
    page.get_by_role("button", name="Start").scroll_into_view_if_needed()
    page.mouse.wheel(0, 450)
    time.sleep(0.5)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    page.screenshot(path=str(ARTIFACTS / f"{name}-full.png"), full_page=True)
    return path


FAST = {  # a few CPU steps; LF's own widgets stay as a user leaves them
    "optim": "adamw_torch",
    "max_steps": 4,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "logging_steps": 1,
    "preprocessing_num_workers": 1,
    "dataloader_num_workers": 0,
    "learning_rate": 1.0e-3,
}


# --------------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------------
@pytest.mark.webui
@pytest.mark.e2e
def test_minorsft_run_from_the_web_ui(page, webui):
    offered = configure(page, webui, "MinorSFT", "alpaca_en_tiny", dict(FAST, cutoff_len=128),
                        output_dir="webui_minorsft")
    assert "dpo_en_tiny" not in offered, f"MinorSFT must list single-answer datasets only: {offered}"

    # the plugin's accordion sits right after LF's RLHF one and opened for the new stage
    assert _visible(page.get_by_text("llamafactory-minor: MinorSFT", exact=False)).is_visible()
    assert _visible(page.get_by_label("number input for DPOP lambda", exact=True)).is_visible()

    cmd = preview(page)
    assert "--stage minorsft" in cmd and "--pref_beta 0.1" in cmd, cmd[-2000:]

    text, seen_progress = run_and_wait(page, "minorsft")
    shot = screenshot(page, "minorsft")
    assert "Failed." not in text, f"training failed (screenshot {shot}):\n{text[-4000:]}"
    assert text.lstrip().startswith("Finished."), text[:1000]
    assert seen_progress, "LF's progress bar ('Running i/n: ...') never showed during the run"
    # the plugin metrics on the page: LF's running log and the metrics table
    assert "m_theta" in text and "minorsft/coef" in text, text[:2000]
    assert page.get_by_text("Latest llamafactory-minor metrics").first.is_visible()
    assert loss_plot_drawn(page), "LF's loss plot is empty"

    out = webui.saves / "webui_minorsft"
    history = read_log_history(out)
    keys = set().union(*(entry.keys() for entry in history))
    assert {"m_theta", "minorsft/coef"} <= keys, sorted(keys)
    trainer_log = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    # LF's trainer_log.jsonl (what LlamaBoard reads) carries the plugin metrics too (patch_callbacks)
    assert any("m_theta" in entry and "loss" in entry for entry in trainer_log), trainer_log
    assert (out / "llamaboard_config.yaml").is_file()


@pytest.mark.webui
@pytest.mark.e2e
def test_dpo_minordpo_run_from_the_web_ui(page, webui):
    offered = configure(page, webui, "DPO", "dpo_en_tiny",
                        dict(FAST, cutoff_len=288, max_steps=3, per_device_train_batch_size=2),
                        output_dir="webui_minordpo")
    assert "alpaca_en_tiny" not in offered, f"DPO must list pairwise datasets only: {offered}"

    # RLHF accordion opened with the stage; the loss list has the plugin's losses
    loss = _visible(page.get_by_role("listbox", name="Loss type", exact=True))
    loss.click()
    page.locator("ul.options li").first.wait_for()
    options = page.locator("ul.options li").all_inner_texts()
    assert {"minordpo", "dpop"} <= {o.replace("✓", "").strip() for o in options}, options
    page.locator('ul.options li[aria-label="minordpo"]').click()
    page.keyboard.press("Escape")
    assert loss.input_value() == "minordpo"

    cmd = preview(page)
    assert "--stage dpo" in cmd and "--pref_loss minordpo" in cmd and "--dpop_lambda" not in cmd, cmd[-2000:]

    # LF's "Save arguments" keeps the plugin's inputs
    page.get_by_role("button", name="Save arguments").click()
    page.get_by_text("llamaboard_config").first.wait_for()
    saved = sorted((webui.workdir / "llamaboard_config").glob("*.yaml"))
    assert saved, "no saved arguments"
    saved_text = saved[-1].read_text()
    assert "train.pref_loss: minordpo" in saved_text and "train.dpop_lambda:" in saved_text, saved_text
    # ... and "Load arguments" brings them back
    select(page, "Loss type", "sigmoid")
    page.get_by_role("button", name="Load arguments").click()
    deadline = time.time() + 20
    while loss.input_value() != "minordpo":
        assert time.time() < deadline, f"Load arguments did not restore the loss: {loss.input_value()}"
        time.sleep(0.25)

    text, seen_progress = run_and_wait(page, "minordpo")
    shot = screenshot(page, "minordpo")
    assert "Failed." not in text, f"training failed (screenshot {shot}):\n{text[-4000:]}"
    assert text.lstrip().startswith("Finished."), text[:1000]
    assert seen_progress, "LF's progress bar ('Running i/n: ...') never showed during the run"
    assert "rewards/margins" in text and "normalized_rewards/chosen" in text, text[:2000]
    assert loss_plot_drawn(page), "LF's loss plot is empty"

    out = webui.saves / "webui_minordpo"
    keys = set().union(*(entry.keys() for entry in read_log_history(out)))
    assert {"rewards/margins", "normalized_rewards/chosen"} <= keys, sorted(keys)
    assert "pref_loss: minordpo" in (out / "training_args.yaml").read_text()


@pytest.mark.webui
@pytest.mark.e2e
def test_poft_without_aligned_models_shows_error_and_starts_nothing(page, webui):
    configure(page, webui, "PoFT", "alpaca_en_tiny", dict(FAST, cutoff_len=128), output_dir="webui_poft")
    out = webui.saves / "webui_poft"

    page.get_by_role("button", name="Start").click()
    page.get_by_text("needs aligned-LLM scores").first.wait_for()  # toast and output box
    text = output_text(page)
    assert "Invalid llamafactory-minor settings" in text and POFT_ERROR.replace("`", "") in text, text[:2000]
    assert "poft_aligned_models" in text, text[:2000]
    assert not page.get_by_text("CUDA environment was not detected").count()  # LF's start-only toast: not reached
    time.sleep(3)  # nothing may start: no output dir, no trainer log
    assert not out.exists(), sorted(p.name for p in out.iterdir())
    screenshot(page, "poft-error")

    # with aligned models + templates the command carries the PoFT keys
    open_accordion(page, MINOR_TAB_EN, labelled_input(page, "PoFT aligned LLMs"))
    fill(page, "PoFT aligned LLMs", "/models/aligned_a, /models/aligned_b")
    fill(page, "PoFT aligned templates", "qwen, llama3")
    select(page, "PoFT aggregation", "max")
    cmd = preview(page)
    for part in ("--stage poft", "--poft_aligned_models /models/aligned_a,/models/aligned_b",
                 "--poft_aligned_templates qwen,llama3", "--poft_aggregation max", "--poft_beta 1"):
        assert part in cmd, (part, cmd[-2000:])
    assert not out.exists()


@pytest.mark.webui
@pytest.mark.e2e
def test_language_switch_keeps_the_new_elements(page, webui):
    switch_language(page, "Language", "zh")
    page.get_by_text("llamafactory-minor 参数设置").first.wait_for()
    select(page, "训练阶段", "PoFT")  # LF's own label, switched; the stage list still has the new stages
    page.get_by_text("PoFT 对齐模型", exact=True).first.wait_for()
    page.get_by_text("记录 m_theta", exact=True).first.wait_for()
    current = "zh"
    for lang in ("ja", "ko", "ru", "en"):  # no plugin texts in ja/ko/ru: English ones, nothing breaks
        switch_language(page, LANG_LABELS[current], lang)
        current = lang
        page.get_by_text(MINOR_TAB_EN, exact=True).first.wait_for()
    page.get_by_text(MINOR_TAB_EN, exact=True).first.wait_for()
    _visible(page.get_by_role("listbox", name="Stage", exact=True)).wait_for()
    assert labelled_input(page, "PoFT aligned LLMs").is_visible()
    page.screenshot(path=str(ARTIFACTS / "language-en.png"))


# --------------------------------------------------------------------------------------------------
# browser-free checks of the same glue (fast; run everywhere)
# --------------------------------------------------------------------------------------------------
def _getter(values: dict):
    return lambda elem_id, default=None: values.get(elem_id, default)


UI_DEFAULTS = {
    "train.pref_beta": 0.04, "train.dpop_lambda": 50, "train.poft_beta": 1, "train.poft_gamma": 0,
    "train.poft_aggregation": "mean", "train.poft_aligned_models": "", "train.poft_aligned_templates": "",
    "train.poft_noise_dataset": "", "train.precompute_ref_log_probs": False, "train.track_m_theta": False,
}


@pytest.mark.parametrize(
    "stage, lf_args, ui, expected",
    [
        ("minorsft", {}, {}, {"pref_beta": 0.04}),
        ("sftdpo", {}, {"train.precompute_ref_log_probs": True}, {"pref_beta": 0.04, "precompute_ref_log_probs": True}),
        ("dpo", {"pref_loss": "dpop"}, {"train.dpop_lambda": 25}, {"dpop_lambda": 25}),
        ("dpo", {"pref_loss": "minordpo"}, {"train.track_m_theta": True}, {"track_m_theta": True}),
        ("sft", {}, {"train.track_m_theta": True}, {"track_m_theta": True}),
        ("minorsft", {}, {"train.track_m_theta": True}, {"pref_beta": 0.04}),  # logged anyway: not passed
        ("poft", {}, {"train.poft_aligned_models": " a , b ", "train.poft_aligned_templates": "qwen,llama3",
                      "train.poft_aggregation": "min"},
         {"poft_beta": 1, "poft_gamma": 0, "poft_aggregation": "min", "poft_aligned_models": "a,b",
          "poft_aligned_templates": "qwen,llama3"}),
        ("poft", {}, {}, {"poft_beta": 1, "poft_gamma": 0, "poft_aggregation": "mean"}),
        ("kto", {"pref_loss": "sigmoid"}, {}, {}),
    ],
)
def test_runner_keys_for_each_stage(stage, lf_args, ui, expected):
    from llamafactory_minor.integration.webui import plugin_train_args

    assert plugin_train_args(stage, _getter({**UI_DEFAULTS, **ui}), dict(lf_args)) == expected


def test_poft_without_aligned_models_is_the_plugin_error():
    from llamafactory_minor.integration import PluginError
    from llamafactory_minor.integration.webui import validate_train_args

    with pytest.raises(PluginError, match=re.escape(POFT_ERROR)):
        validate_train_args({"stage": "poft", "finetuning_type": "full", "poft_aggregation": "mean"})
    validate_train_args({"stage": "poft", "finetuning_type": "full", "poft_aligned_models": "a",
                         "poft_aligned_templates": "qwen"})


def test_locales_cover_every_lf_language():
    import llamafactory.webui.locales as lf_locales

    from llamafactory_minor.integration.webui import INPUT_NAMES, load_locales

    langs = set(lf_locales.LOCALES["lang"])
    assert {"en", "zh"} <= langs
    ours = load_locales()
    for name in set(INPUT_NAMES) | {"minor_tab", "minor_help"}:
        assert set(lf_locales.LOCALES[name]) >= langs, name  # Engine.change_lang indexes [name][lang]
        assert ours["LOCALES"][name]["zh"] != ours["LOCALES"][name]["en"] or name == "dpop_lambda", name
        assert lf_locales.LOCALES[name]["ja"] == ours["LOCALES"][name]["en"]  # English fallback
    for name in ours["ALERTS"]:
        assert set(lf_locales.ALERTS[name]) >= langs, name
