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
from conftest import LF_TEMPLATE, REPO_ROOT, cli_env, missing_prerequisite, read_log_history

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
RUN_TIMEOUT = 420  # a loaded 2-core CI machine: a PoFT run with two aligned passes took ~4 min
# LF's progress bar label while training: "Running 2/4: 0:00:03 < 0:00:03"
PROGRESS_RE = re.compile(r"Running \d+/\d+: ")
POFT_ERROR = "`stage: poft` needs aligned-LLM scores"  # the PluginError's text (integration/arguments.py)
LANG_LABELS = {"en": "Language", "zh": "语言", "ja": "言語", "ko": "언어", "ru": "Язык"}  # LF's own labels
MINOR_TAB_EN = "llamafactory-minor: MinorSFT, SFT using DPO, MinorDPO, DPOP, PoFT"

SERVER_CODE = """
import sys
import gradio.networking as networking
from llamafactory.webui.interface import create_ui

_url_ok = networking.url_ok  # gradio's own start-up probe (3 s HEAD timeouts) gives up on a loaded machine: retry it
networking.url_ok = lambda url: any(_url_ok(url) for _ in range(10))
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
        missing_prerequisite(
            f"{CHROMIUM} is absent: install Debian's chromium and chromium-driver "
            "(apt-get install -y chromium chromium-driver) to run the web UI tests",
            ".ci/run installs chromium and chromium-driver with apt-get when they are missing",
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_prerequisite(
            "playwright is not installed (pip install -e '.[test]')", "make install installs the test extra"
        )
    return sync_playwright


@pytest.fixture(scope="module")
def webui(sync_playwright, tiny_model, tmp_path_factory):
    """The LlamaBoard server: ``SimpleNamespace(url, workdir, saves, log)``."""
    from types import SimpleNamespace

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    workdir = tmp_path_factory.mktemp("llamaboard")
    log_path = ARTIFACTS / "server.log"
    port = _free_port()
    env = cli_env(
        {
            "GRADIO_ANALYTICS_ENABLED": "False",
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            # a fresh score cache: the runs score (and show it) instead of reusing another run's scores
            "LLAMAFACTORY_MINOR_SCORE_CACHE": str(workdir / "score_cache"),
        }
    )
    env.pop("LLAMAFACTORY_MINOR_DISABLE", None)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER_CODE, str(port)],
            cwd=str(workdir),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
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
        yield SimpleNamespace(
            url=url, workdir=workdir, saves=workdir / "saves" / "Custom" / "full", log=log_path, model=tiny_model
        )
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
            user_data_dir,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
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
    deadline = time.time() + 3  # a stage change may be opening it right now
    while time.time() < deadline:
        if probe.count() and probe.is_visible():
            return
        time.sleep(0.25)
    _visible(page.get_by_text(title, exact=True)).click()
    probe.wait_for()


def output_text(page) -> str:
    """LF's output box: the Markdown in the Train tab's column that holds the "Output dir" dropdown."""
    output_dir = page.get_by_role("listbox", name=re.compile(r"^(Output dir|输出目录)$"))  # en / zh
    column = page.locator("div.column", has=_visible(output_dir))
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
# LlamaBoard's own defaults (issue 11, 1.): LF passes `preprocessing_num_workers 16` (datasets.map workers), its
# batch slider's 2, cutoff 2048, etc.; only the run is shortened (2 steps of 2 x 2 rows, a log line per step)
LF_DEFAULTS_SHORT = {
    "optim": "adamw_torch",
    "max_steps": 2,
    "gradient_accumulation_steps": 2,
    "logging_steps": 1,
    "learning_rate": 1.0e-3,
}
# the scoring pass on LF's progress bar (webui.scoring_progress_label): "Scoring model 2/2: ... 32/32 rows: ..."
SCORING_RE = {"en": re.compile(r"Scoring model \d+/\d+: .*\d+/\d+ rows"), "zh": re.compile(r"打分中 模型 \d+/\d+：")}
SHOTS: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def _list_screenshots(request):
    """Print where the screenshots are (kept in artifacts/webui/, git-ignored) at the end of the module."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and SHOTS:
        reporter.write_line(f"\nweb UI screenshots ({ARTIFACTS}):")
        for path in SHOTS:
            reporter.write_line(f"  {path}")


def shot(page, name: str, full_page: bool = False) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    SHOTS.append(path)
    return path


def shown(page, label: str) -> bool:
    """Whether a field labelled exactly ``label`` is on the page (gradio does not render invisible ones)."""
    pattern = re.compile(rf"^\s*{re.escape(label)}\s*$")
    return page.locator("span, label, button", has_text=pattern).filter(visible=True).count() > 0


def expect_fields(page, show=(), hide=(), timeout: float = 20) -> None:
    """Wait until every label in ``show`` is on the page and none in ``hide`` is: gradio applies a change's
    visibility updates after the event round trip, which takes seconds on 2 loaded cores (CI builds DeepSpeed's op
    beside the tests), so a field read at once after a click can still be the previous stage's."""
    deadline = time.time() + timeout
    while True:
        wrong = [f"{label!r} hidden" for label in show if not shown(page, label)]
        wrong += [f"{label!r} shown" for label in hide if shown(page, label)]
        if not wrong:
            return
        assert time.time() < deadline, f"after {timeout}s: " + ", ".join(wrong)
        time.sleep(0.2)


def wait_output(page, *needles: str, timeout: float = 30) -> str:
    """LF's output box once it holds every needle (the message can show in a toast before the box is updated)."""
    deadline = time.time() + timeout
    while True:
        text = output_text(page)
        if all(needle in text for needle in needles):
            return text
        missing = [needle for needle in needles if needle not in text]
        assert time.time() < deadline, (missing, text[:2000])
        time.sleep(0.25)


def number(page, label: str):
    return _visible(page.get_by_label(f"number input for {label}", exact=True))


def type_dataset(page, name: str) -> None:
    """Type a dataset name the stage's list does not offer (LF's dropdown allows custom values)."""
    box = labelled_input(page, "Dataset")
    box.click()
    box.fill(name)
    box.press("Enter")
    page.keyboard.press("Escape")


def start_and_expect_error(page, webui, out_name: str, *needles: str) -> str:
    """Click Start: the plugin's message must be on the page and nothing may start."""
    page.get_by_role("button", name="Start").click()
    text = wait_output(page, *needles)
    assert "Failed" not in text and "Exit code" not in text, text[:2000]
    time.sleep(2)
    out = webui.saves / out_name
    assert not out.exists(), sorted(p.name for p in out.iterdir())
    return text


def _bar_in_view(page, label_re) -> None:
    try:
        page.get_by_text(label_re).first.scroll_into_view_if_needed(timeout=2000)
    except Exception:  # the bar moved on (its label changed): the screenshot shows what is there
        pass


def run_and_wait(page, name: str, scoring_re=None) -> tuple[str, bool, str]:
    """Click Start, poll the page until LF says Finished/Failed (or 训练完毕/训练出错); return (output text, LF's
    training progress seen, the page's text when the scoring pass's progress first showed, or "")."""
    page.get_by_role("button", name=re.compile(r"^(Start|开始)$")).click()
    seen_progress, seen_scoring = False, ""
    deadline = time.time() + RUN_TIMEOUT
    text = ""
    while time.time() < deadline:
        body = page.inner_text("body")
        if scoring_re is not None and not seen_scoring and scoring_re.search(body):
            seen_scoring = body
            _bar_in_view(page, scoring_re)
            shot(page, f"{name}-scoring-progress")  # the scoring pass on LF's progress bar
        if not seen_progress and PROGRESS_RE.search(body):
            seen_progress = True
            _bar_in_view(page, PROGRESS_RE)
            shot(page, f"{name}-progress")  # LF's progress bar mid-run
        text = output_text(page)
        if re.search(r"^(Finished|Failed|训练完毕|训练出错)", text.lstrip()):
            break
        time.sleep(0.25)
    else:
        shot(page, f"{name}-timeout")
        pytest.fail(f"no end of training on the page within {RUN_TIMEOUT}s; page text tail:\n{text[-3000:]}")
    time.sleep(2.5)  # LF's last monitor update (final log + plot) and our metrics table
    return output_text(page), seen_progress, seen_scoring


def plot_drawn(page, label: str) -> bool:
    """A gr.Plot labelled ``label`` (LF's loss plot, the plugin's metrics plot) shows an image."""
    plot = page.locator("div.block", has=page.get_by_text(label, exact=True)).last
    return plot.locator("img").count() > 0


def loss_plot_drawn(page) -> bool:
    return plot_drawn(page, "Loss")


def wait_plot(page, label: str, timeout: float = 20) -> None:
    deadline = time.time() + timeout
    while not plot_drawn(page, label):
        assert time.time() < deadline, f"the plot {label!r} stayed empty"
        time.sleep(0.5)


def plot_src(page, label: str) -> str:
    img = page.locator("div.block", has=page.get_by_text(label, exact=True)).last.locator("img")
    return (img.first.get_attribute("src") or "") if img.count() else ""


def picked_metrics(page) -> list[str]:
    """The chips of "Metrics to plot" (gradio's multiselect tokens)."""
    block = page.locator("div.block", has=page.get_by_text("Metrics to plot", exact=True))
    return [
        t.replace("×", "").strip()
        for t in block.locator(".token:not(.remove-all)").all_inner_texts()
        if t.replace("×", "").strip()
    ]


def pick_metrics(page, names) -> None:
    """Clear "Metrics to plot" and pick ``names`` from its list (as a user does)."""
    block = page.locator("div.block", has=page.get_by_text("Metrics to plot", exact=True))
    clear = block.locator(".token-remove.remove-all")
    if clear.count():
        clear.first.click()
    box = labelled_input(page, "Metrics to plot")
    for name in names:
        box.click()
        page.locator(f'ul.options li[aria-label="{name}"]').click()
    page.keyboard.press("Escape")


def screenshot(page, name: str) -> Path:
    """Viewport screenshot with LF's output box (and the plots) in view, plus the whole page."""
    page.get_by_role("button", name=re.compile(r"^(Start|开始)$")).scroll_into_view_if_needed()
    page.mouse.wheel(0, 450)
    time.sleep(0.5)
    path = shot(page, name)
    shot(page, f"{name}-full", full_page=True)
    return path


def scoring_log_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.search(r"\[model \d+/\d+\]: scored \d+/\d+ ", line)]


def running_log(out: Path) -> str:
    """The run's whole running log (LF's ``running_log.txt``; the page shows its last 20,000 characters)."""
    return (out / "running_log.txt").read_text(errors="replace")


# --------------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------------
@pytest.mark.webui
@pytest.mark.e2e
def test_minorsft_precomputed_reference_with_lf_defaults(page, webui):
    """MinorSFT with "Precompute reference scores", LlamaBoard's defaults (16 preprocessing workers): the
    paper's beta, only the fields that apply, the scoring pass's progress, the chosen metrics plotted."""
    offered = configure(page, webui, "MinorSFT", "alpaca_en_tiny", LF_DEFAULTS_SHORT, output_dir="webui_minorsft")
    assert "dpo_en_tiny" not in offered, f"MinorSFT must list single-answer datasets only: {offered}"

    # 6. the paper's beta (LF's slider says 0.1); 5. only MinorSFT's fields
    assert number(page, "Beta value").input_value() == "0.04"
    open_accordion(page, "RLHF configurations", number(page, "Beta value"))
    not_minorsft = ("Loss type", "Reward model", "Score norm", "Whiten rewards", "DPOP lambda", "PoFT beta")
    expect_fields(  # only MinorSFT's fields; LF's SFT term (Ftx gamma) applies
        page,
        show=("Precompute reference scores", "Ftx gamma"),
        hide=(*not_minorsft, "PoFT aligned LLMs", "Log m_theta"),
    )
    page.get_by_text("Precompute reference scores", exact=True).click()
    # 4. the metrics plot: MinorSFT's curves preselected
    assert picked_metrics(page) == ["m_theta", "minorsft/coef"], picked_metrics(page)
    shot(page, "minorsft-fields", full_page=True)

    cmd = preview(page)
    for part in (
        "--stage minorsft",
        "--pref_beta 0.04",
        "--precompute_ref_log_probs True",
        "--preprocessing_num_workers 16",
    ):
        assert part in cmd, (part, cmd[-2000:])
    assert "--pref_ftx 0" in cmd and "--dpop_lambda" not in cmd and "--pref_loss" not in cmd, cmd[-2000:]

    text, seen_progress, _ = run_and_wait(page, "minorsft", SCORING_RE["en"])
    shot_path = screenshot(page, "minorsft")
    assert "Failed" not in text, f"training failed (screenshot {shot_path}):\n{text[-4000:]}"
    assert text.lstrip().startswith("Finished."), text[:1000]
    assert seen_progress, "LF's progress bar ('Running i/n: ...') never showed during the run"
    out = webui.saves / "webui_minorsft"
    # 3. the scoring pass in the UI's running log: reference model 1/1, rows done / total
    lines = scoring_log_lines(running_log(out))
    assert any("Reference scores (train_dataset) [model 1/1]: scored 32/32 rows" in line for line in lines), (
        running_log(out)[:4000]
    )
    # the plugin metrics on the page: LF's running log, the metrics table, the plugin's plot
    assert "m_theta" in text and "minorsft/coef" in text, text[:2000]
    assert page.get_by_text("Latest llamafactory-minor metrics").first.is_visible()
    assert loss_plot_drawn(page), "LF's loss plot is empty"
    wait_plot(page, "llamafactory-minor metrics")
    # 4. the user picks other curves: the plot is redrawn with them
    before = plot_src(page, "llamafactory-minor metrics")
    pick_metrics(page, ["rewards/chosen", "normalized_rewards/chosen"])
    deadline = time.time() + 20
    while plot_src(page, "llamafactory-minor metrics") in ("", before):
        assert time.time() < deadline, "picking metrics did not redraw the plot"
        time.sleep(0.5)
    assert picked_metrics(page) == ["rewards/chosen", "normalized_rewards/chosen"], picked_metrics(page)
    screenshot(page, "minorsft-picked-metrics")

    history = read_log_history(out)
    keys = set().union(*(entry.keys() for entry in history))
    assert {"m_theta", "minorsft/coef"} <= keys, sorted(keys)
    trainer_log = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    # LF's trainer_log.jsonl (what LlamaBoard reads) carries the plugin metrics too (patch_callbacks)
    assert any("m_theta" in entry and "loss" in entry for entry in trainer_log), trainer_log
    assert "precompute_ref_log_probs: true" in (out / "training_args.yaml").read_text()
    progress = json.loads((out / "minor_scoring_progress.json").read_text())
    assert progress["done"] == progress["total"] == 32 and progress["model_count"] == 1, progress


@pytest.mark.webui
@pytest.mark.e2e
def test_dpo_minordpo_run_from_the_web_ui(page, webui):
    offered = configure(
        page,
        webui,
        "DPO",
        "dpo_en_tiny",
        dict(FAST, cutoff_len=288, max_steps=3, per_device_train_batch_size=2),
        output_dir="webui_minordpo",
    )
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
    expect_fields(page, show=("Log m_theta",), hide=("DPOP lambda",))  # DPOP's lambda only for dpop

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

    text, seen_progress, _ = run_and_wait(page, "minordpo")
    shot_path = screenshot(page, "minordpo")
    assert "Failed" not in text, f"training failed (screenshot {shot_path}):\n{text[-4000:]}"
    assert text.lstrip().startswith("Finished."), text[:1000]
    assert seen_progress, "LF's progress bar ('Running i/n: ...') never showed during the run"
    assert "rewards/margins" in text and "normalized_rewards/chosen" in text, text[:2000]
    assert loss_plot_drawn(page), "LF's loss plot is empty"
    wait_plot(page, "llamafactory-minor metrics")  # the MinorDPO paper's curves, preselected for DPO

    out = webui.saves / "webui_minordpo"
    keys = set().union(*(entry.keys() for entry in read_log_history(out)))
    assert {"rewards/margins", "normalized_rewards/chosen"} <= keys, sorted(keys)
    assert "pref_loss: minordpo" in (out / "training_args.yaml").read_text()


@pytest.mark.webui
@pytest.mark.e2e
def test_poft_two_aligned_models_in_chinese_with_lf_defaults(page, webui):
    """PoFT with LlamaBoard's defaults, two aligned LLMs, run with the UI in Chinese: the scoring pass's
    progress (model j/M) on the bar and in the log, the PoFT curves plotted, the metrics table in Chinese."""
    aligned_b = webui.workdir / "aligned_b"  # the tiny model under a second path: a second aligned LLM
    if not aligned_b.exists():
        aligned_b.symlink_to(webui.model, target_is_directory=True)
    configure(page, webui, "PoFT", "alpaca_en_tiny", LF_DEFAULTS_SHORT, output_dir="webui_poft_run")
    open_accordion(page, MINOR_TAB_EN, labelled_input(page, "PoFT aligned LLMs"))
    fill(page, "PoFT aligned LLMs", f"{webui.model}, {aligned_b}")
    fill(page, "PoFT aligned templates", f"{LF_TEMPLATE}, chatml")
    expect_fields(page, hide=("Precompute reference scores", "Log m_theta"))

    switch_language(page, "Language", "zh")
    page.get_by_text("绘制的指标", exact=True).first.wait_for()
    text, seen_progress, seen_scoring = run_and_wait(page, "poft-zh", SCORING_RE["zh"])
    shot_path = screenshot(page, "poft-zh")
    assert "训练出错" not in text and "Exit code" not in text, f"training failed ({shot_path}):\n{text[-4000:]}"
    assert text.lstrip().startswith("训练完毕"), text[:1000]
    assert seen_progress, "LF's progress bar never showed during the run"
    out = webui.saves / "webui_poft_run"
    lines = scoring_log_lines(running_log(out))
    for j in (1, 2):
        assert any(f"[model {j}/2]: scored 32/32 rows" in line for line in lines), (j, running_log(out)[:4000])
    assert seen_scoring, "the scoring pass never showed on the progress bar"
    assert scoring_log_lines(seen_scoring), "no scoring line in the page's log while the bar showed the pass"
    # 6. the metrics table in Chinese; 4. PoFT's curves plotted
    assert "llamafactory-minor 最新指标 (步数 " in text and re.search(r"指标\s+数值", text), text[:2000]
    assert "poft/r_theta" in text and "poft/r_aligned" in text, text[:2000]
    wait_plot(page, "llamafactory-minor 指标曲线")
    keys = set().union(*(entry.keys() for entry in read_log_history(out)))
    assert {"poft/r_theta", "poft/r_aligned"} <= keys, sorted(keys)
    switch_language(page, "语言", "en")


@pytest.mark.webui
@pytest.mark.e2e
def test_errors_before_launch_fields_defaults_and_languages(page, webui):
    """No run: the plugin's checks before launch (the CLI's), in the UI's language; the fields per stage and
    loss; the paper's beta unless the user set it; every LF language keeps the new elements."""
    configure(page, webui, "PoFT", "alpaca_en_tiny", dict(FAST, cutoff_len=128), output_dir="webui_poft")

    # 2. PoFT without aligned models: the message on the page, nothing started
    start_and_expect_error(
        page,
        webui,
        "webui_poft",
        "needs aligned-LLM scores",
        "Invalid llamafactory-minor settings",
        "Stage [stage: poft]",
        "PoFT aligned LLMs [poft_aligned_models",
    )
    assert not page.get_by_text("CUDA environment was not detected").count()  # LF's start-only toast: not reached
    shot(page, "error-poft-no-models")

    # 2. an unknown aligned template: the CLI's check, before launch
    open_accordion(page, MINOR_TAB_EN, labelled_input(page, "PoFT aligned LLMs"))
    fill(page, "PoFT aligned LLMs", "/models/aligned_a, /models/aligned_b")
    fill(page, "PoFT aligned templates", f"{LF_TEMPLATE}, nosuchtemplate")
    start_and_expect_error(
        page, webui, "webui_poft", "nosuchtemplate", "PoFT aligned templates [poft_aligned_templates"
    )
    shot(page, "error-unknown-template")
    # ... and with a known template the command carries the PoFT keys
    fill(page, "PoFT aligned templates", "qwen, llama3")
    select(page, "PoFT aggregation", "max")
    cmd = preview(page)
    for part in (
        "--stage poft",
        "--poft_aligned_models /models/aligned_a,/models/aligned_b",
        "--poft_aligned_templates qwen,llama3",
        "--poft_aggregation max",
        "--poft_beta 1",
    ):
        assert part in cmd, (part, cmd[-2000:])
    assert "--pref_beta" not in cmd and "--precompute_ref_log_probs" not in cmd, cmd[-2000:]

    # 5. fields per stage / loss: PoFT has LF's SFT term (Ftx gamma) but no Beta, Loss type, m_theta, reference
    open_accordion(page, "RLHF configurations", number(page, "Ftx gamma"))
    expect_fields(page, hide=("Beta value", "Loss type", "Log m_theta", "Precompute reference scores", "DPOP lambda"))
    select(page, "Stage", "DPO")
    open_accordion(page, "RLHF configurations", number(page, "Beta value"))
    expect_fields(
        page,
        show=("Loss type", "Ftx gamma", "Log m_theta", "Precompute reference scores"),
        hide=("Reward model", "PoFT beta", "DPOP lambda"),
    )
    select(page, "Loss type", "dpop")
    expect_fields(page, show=("DPOP lambda",))
    select(page, "Loss type", "simpo")  # no reference model: no m_theta, no precomputed reference
    expect_fields(page, hide=("Log m_theta", "Precompute reference scores"))
    select(page, "Loss type", "sigmoid")
    select(page, "Stage", "Supervised Fine-Tuning")
    expect_fields(page, show=("Log m_theta",), hide=("RLHF configurations", "Precompute reference scores"))
    page.get_by_text("Log m_theta", exact=True).click()  # tracked SFT has a reference: it can be precomputed
    expect_fields(page, show=("Precompute reference scores",))
    page.get_by_text("Log m_theta", exact=True).click()
    expect_fields(page, hide=("Precompute reference scores",))

    # 6. beta: the paper's 0.04 for MinorSFT / SFT using DPO, LF's 0.1 back for DPO, a value the user set stays
    select(page, "Stage", "SFT using DPO")
    open_accordion(page, "RLHF configurations", number(page, "Beta value"))
    beta = number(page, "Beta value")
    assert beta.input_value() == "0.04"
    expect_fields(page, show=("Ftx gamma",), hide=("Loss type",))
    select(page, "Stage", "DPO")
    deadline = time.time() + 10
    while beta.input_value() != "0.1":
        assert time.time() < deadline, beta.input_value()
        time.sleep(0.2)
    beta.fill("0.2")
    beta.press("Enter")
    time.sleep(0.5)
    select(page, "Stage", "MinorSFT")
    time.sleep(1)
    assert number(page, "Beta value").input_value() == "0.2", "the user's beta must stay"
    shot(page, "fields-minorsft-user-beta", full_page=True)

    # 2. a pairwise dataset typed into a MinorSFT run
    type_dataset(page, "dpo_en_tiny")
    start_and_expect_error(page, webui, "webui_poft", "is a pairwise (ranking) dataset", "Stage [stage: minorsft]")
    shot(page, "error-pairwise-minorsft")

    # 6. the same message in Chinese names the fields by their Chinese labels
    switch_language(page, "Language", "zh")
    page.get_by_text("llamafactory-minor 参数设置").first.wait_for()
    page.get_by_role("button", name="开始").click()
    wait_output(page, "llamafactory-minor 参数有误", "训练阶段 [stage: minorsft]", "is a pairwise (ranking) dataset")
    shot(page, "error-pairwise-minorsft-zh")
    select(page, "训练阶段", "PoFT")  # LF's own label, switched; the stage list still has the new stages
    page.get_by_text("PoFT 对齐模型", exact=True).first.wait_for()
    expect_fields(page, hide=("记录 m_theta",))
    current = "zh"
    for lang in ("ja", "ko", "ru", "en"):  # no plugin texts in ja/ko/ru: English ones, nothing breaks
        switch_language(page, LANG_LABELS[current], lang)
        current = lang
        page.get_by_text(MINOR_TAB_EN, exact=True).first.wait_for()
    _visible(page.get_by_role("listbox", name="Stage", exact=True)).wait_for()
    assert labelled_input(page, "PoFT aligned LLMs").is_visible()
    expect_fields(page, show=("RLHF configurations",), hide=("Beta value",))  # a language switch keeps it
    shot(page, "language-en")


# --------------------------------------------------------------------------------------------------
# browser-free checks of the same glue (fast; run everywhere)
# --------------------------------------------------------------------------------------------------
def _getter(values: dict):
    return lambda elem_id, default=None: values.get(elem_id, default)


UI_DEFAULTS = {
    "train.pref_beta": 0.04,
    "train.pref_ftx": 0,
    "train.dpop_lambda": 50,
    "train.poft_beta": 1,
    "train.poft_gamma": 0,
    "train.poft_aggregation": "mean",
    "train.poft_aligned_models": "",
    "train.poft_aligned_templates": "",
    "train.poft_noise_dataset": "",
    "train.poft_noise_column": "",
    "train.precompute_ref_log_probs": False,
    "train.track_m_theta": False,
}


@pytest.mark.parametrize(
    "stage, lf_args, ui, expected",
    [
        ("minorsft", {}, {}, {"pref_beta": 0.04, "pref_ftx": 0}),
        (
            "sftdpo",
            {},
            {"train.precompute_ref_log_probs": True},
            {"pref_beta": 0.04, "pref_ftx": 0, "precompute_ref_log_probs": True},
        ),
        ("dpo", {"pref_loss": "dpop"}, {"train.dpop_lambda": 25}, {"dpop_lambda": 25}),
        ("dpo", {"pref_loss": "minordpo"}, {"train.track_m_theta": True}, {"track_m_theta": True}),
        ("sft", {}, {"train.track_m_theta": True}, {"track_m_theta": True}),
        (
            "minorsft",
            {},
            {"train.track_m_theta": True, "train.pref_ftx": 0.5},
            {"pref_beta": 0.04, "pref_ftx": 0.5},
        ),  # m_theta is logged anyway: not passed
        (
            "poft",
            {},
            {
                "train.poft_aligned_models": " a , b ",
                "train.poft_aligned_templates": "qwen,llama3",
                "train.poft_aggregation": "min",
            },
            {
                "pref_ftx": 0,
                "poft_beta": 1,
                "poft_gamma": 0,
                "poft_aggregation": "min",
                "poft_aligned_models": "a,b",
                "poft_aligned_templates": "qwen,llama3",
            },
        ),
        ("poft", {}, {}, {"pref_ftx": 0, "poft_beta": 1, "poft_gamma": 0, "poft_aggregation": "mean"}),
        ("kto", {"pref_loss": "sigmoid"}, {}, {}),
        # a ticked box that does not apply (hidden) is not passed
        (
            "poft",
            {},
            {"train.precompute_ref_log_probs": True, "train.track_m_theta": True},
            {"pref_ftx": 0, "poft_beta": 1, "poft_gamma": 0, "poft_aggregation": "mean"},
        ),
        ("sft", {}, {"train.precompute_ref_log_probs": True}, {}),
        (
            "sft",
            {},
            {"train.precompute_ref_log_probs": True, "train.track_m_theta": True},
            {"precompute_ref_log_probs": True, "track_m_theta": True},
        ),
        ("dpo", {"pref_loss": "simpo"}, {"train.precompute_ref_log_probs": True, "train.track_m_theta": True}, {}),
        ("dpo", {"pref_loss": "sigmoid"}, {"train.dpop_lambda": 25, "train.poft_aligned_models": "a"}, {}),
    ],
)
def test_runner_keys_for_each_stage(stage, lf_args, ui, expected):
    from llamafactory_minor.integration.webui import plugin_train_args

    assert plugin_train_args(stage, _getter({**UI_DEFAULTS, **ui}), dict(lf_args)) == expected


def _launch_dict(tmp_path, **kw):
    """What LlamaBoard's runner hands to the check (the keys ``Runner._parse_train_args`` sets that matter)."""
    return dict(
        {
            "stage": "poft",
            "do_train": True,
            "model_name_or_path": "/models/target",
            "finetuning_type": "full",
            "template": LF_TEMPLATE,
            "dataset_dir": str(REPO_ROOT / "tests" / "fixtures" / "data"),
            "dataset": "alpaca_en_tiny",
            "cutoff_len": 128,
            "output_dir": str(tmp_path / "out"),
            "preprocessing_num_workers": 16,
            "plot_loss": True,
        },
        **kw,
    )


def test_the_ui_check_is_the_clis_validate_train_args(tmp_path):
    """The pre-launch check runs ``integration.validate.validate_train_args`` (the CLI's), so the page shows
    the same messages: PoFT without aligned LLMs, an unknown aligned template, a pairwise dataset for MinorSFT."""
    from llamafactory_minor.integration import PluginError
    from llamafactory_minor.integration.webui import is_plugin_config, validate_train_args

    with pytest.raises(PluginError, match=re.escape(POFT_ERROR)):
        validate_train_args(_launch_dict(tmp_path))
    with pytest.raises(PluginError, match="Unknown `poft_aligned_templates: nosuchtemplate`"):
        validate_train_args(
            _launch_dict(tmp_path, poft_aligned_models="a,b", poft_aligned_templates="qwen,nosuchtemplate")
        )
    with pytest.raises(PluginError, match="`stage: minorsft` trains on single answers, but dataset `dpo_en_tiny`"):
        validate_train_args(_launch_dict(tmp_path, stage="minorsft", dataset="alpaca_en_tiny,dpo_en_tiny"))
    validate_train_args(_launch_dict(tmp_path, poft_aligned_models="a", poft_aligned_templates="qwen"))
    assert not (tmp_path / "out").exists()  # nothing written
    assert is_plugin_config({"stage": "minorsft"}) and not is_plugin_config({"stage": "sft", "pref_loss": "sigmoid"})


def test_fields_shown_per_stage_and_loss():
    from llamafactory_minor.integration.webui import APPLIES, INPUT_NAMES, RLHF_INPUTS, visibility

    assert set(INPUT_NAMES) <= set(APPLIES) and set(RLHF_INPUTS) <= set(APPLIES)  # one table for every field

    def on(stage, loss="sigmoid", ticked=()):
        return {k for k, v in visibility(stage, loss, ticked).items() if v}

    # pref_ftx: LF's SFT term, which the plugin's stages add too
    assert (
        on("minorsft")
        == on("sftdpo")
        == {"pref_beta", "pref_ftx", "precompute_ref_log_probs", "rlhf_tab", "minor_tab"}
    )
    assert on("poft") == {
        "pref_ftx",
        "poft_beta",
        "poft_gamma",
        "poft_aggregation",
        "poft_aligned_models",
        "poft_aligned_templates",
        "poft_noise_dataset",
        "poft_noise_column",
        "rlhf_tab",
        "minor_tab",
    }
    assert on("dpo", "dpop") == {
        "pref_beta",
        "pref_ftx",
        "pref_loss",
        "dpop_lambda",
        "precompute_ref_log_probs",
        "track_m_theta",
        "rlhf_tab",
        "minor_tab",
    }
    assert on("dpo", "simpo") == {"pref_beta", "pref_ftx", "pref_loss", "rlhf_tab"}
    assert on("sft") == {"track_m_theta", "minor_tab"}
    assert on("sft", ticked=("track_m_theta",)) == {"track_m_theta", "precompute_ref_log_probs", "minor_tab"}
    assert on("ppo") == {"reward_model", "ppo_score_norm", "ppo_whiten_rewards", "rlhf_tab"}
    assert on("pt") == on("rm") == set()


def test_paper_beta_unless_the_user_set_it():
    from llamafactory_minor.integration.webui import beta_for_stage

    assert beta_for_stage("minorsft", 0.1, None, 0.1) == (0.04, 0.04)  # LF's default -> the paper's
    assert beta_for_stage("sftdpo", 0.04, 0.04, 0.1) == (0.04, 0.04)
    assert beta_for_stage("dpo", 0.04, 0.04, 0.1) == (0.1, None)  # the plugin's value -> LF's back
    assert beta_for_stage("dpo", 0.04, None, 0.1) == (None, None)  # a loaded / typed 0.04 stays
    assert beta_for_stage("minorsft", 0.2, None, 0.1) == (None, None)
    assert beta_for_stage("minorsft", 0.1, "user", 0.1) == (None, "user")  # the user moved the slider


def test_error_texts_name_the_field_in_the_ui_language():
    from llamafactory_minor.integration.webui import localize_error

    message = (
        "`stage: poft` needs aligned-LLM scores: set `poft_aligned_models: a,b,c` and "
        "`poft_aligned_templates: t1,t2,t3`; `minor_cache_dir` and `llamafactory.data.TEMPLATES` stay."
    )
    assert localize_error(message, "zh") == (
        "训练阶段 [stage: poft] needs aligned-LLM scores: set PoFT 对齐模型 [poft_aligned_models: a,b,c] and "
        "PoFT 对齐模型模板 [poft_aligned_templates: t1,t2,t3]; `minor_cache_dir` and `llamafactory.data.TEMPLATES` stay."
    )
    assert localize_error("`pref_beta` must be > 0", "en") == "Beta value [pref_beta] must be > 0"
    assert localize_error("`pref_beta` must be > 0", "ja").endswith("[pref_beta] must be > 0")  # LF's ja label


def test_metrics_table_and_plot_in_the_ui_language(tmp_path):
    from llamafactory_minor.integration.webui import metric_series, metrics_figure, plugin_metrics_markdown

    records = [
        {"current_steps": i, "total_steps": 3, "loss": 1.0 / i, "m_theta": -0.1 * i, "minorsft/coef": 1 - 0.1 * i}
        for i in (1, 2, 3)
    ]
    (tmp_path / "trainer_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    zh = plugin_metrics_markdown(str(tmp_path), "zh")
    assert zh.startswith("**llamafactory-minor 最新指标** (步数 3)") and "| 指标 | 数值 |" in zh, zh
    assert "| metric | value |" in plugin_metrics_markdown(str(tmp_path), "en")
    series = metric_series(str(tmp_path), ["m_theta", "minorsft/coef", "poft/r_theta"])
    assert series["m_theta"] == ([1, 2, 3], [-0.1, -0.2, pytest.approx(-0.3)]) and series["poft/r_theta"] == ([], [])
    fig = metrics_figure(series)
    assert [ax.get_title(loc="right") for ax in fig.axes] == ["m_theta", "minorsft/coef"]
    assert metrics_figure({"m_theta": ([], [])}) is None


def test_scoring_progress_for_the_log_and_the_bar(tmp_path, monkeypatch):
    """The reporter ``score_sequences`` uses: LF-logger lines at the logging_steps cadence, and under LlamaBoard
    the file the web UI turns into its progress bar until LF logs a training step."""
    from types import SimpleNamespace

    from llamafactory_minor.integration import webui
    from llamafactory_minor.scores import progress as progress_module

    monkeypatch.setenv("LLAMABOARD_ENABLED", "1")
    monkeypatch.setenv("LLAMABOARD_WORKDIR", str(tmp_path))
    parsed = (
        SimpleNamespace(model_name_or_path="/m/target"),
        None,
        SimpleNamespace(logging_steps=2),
        SimpleNamespace(poft_aligned_models=["/m/a", "/m/ab"], ref_model=None),
        None,
    )
    monkeypatch.setattr(progress_module, "_parsed_args", lambda: parsed)
    lines = []
    logger = SimpleNamespace(info_rank0=lines.append)
    reporter = progress_module.ScoringProgress(10, 2, "Aligned scores /m/ab (train_dataset)", logger=logger)
    for _ in range(3):
        reporter.update(2)
    rec = webui.scoring_progress(str(tmp_path))
    assert (rec["done"], rec["total"], rec["model_index"], rec["model_count"]) == (6, 10, 2, 2)
    assert webui.scoring_progress_label(rec, "en").startswith(
        "Scoring model 2/2: Aligned scores /m/ab (train_dataset): 6/10 rows: "
    )
    assert webui.scoring_progress_label(rec, "zh").startswith(
        "打分中 模型 2/2：Aligned scores /m/ab (train_dataset)：6/10 条："
    )
    reporter.update(4)
    reporter.close()
    # the start, every logging_steps (2) batches, the end
    assert [re.search(r"scored (\d+)/10", line).group(1) for line in lines] == ["0", "4", "10"], lines
    assert lines[-1].startswith("Aligned scores /m/ab (train_dataset) [model 2/2]: scored 10/10 rows (100%)")
    assert progress_module.which_model("Reference scores (train_dataset)", parsed) == (1, 1, "/m/target")
    (tmp_path / "trainer_log.jsonl").write_text("{}\n")  # LF logs training steps: its own bar again
    assert webui.scoring_progress(str(tmp_path)) is None


def test_locales_cover_every_lf_language():
    import llamafactory.webui.locales as lf_locales

    from llamafactory_minor.integration.webui import INPUT_NAMES, load_locales

    langs = set(lf_locales.LOCALES["lang"])
    assert {"en", "zh"} <= langs
    ours = load_locales()
    for name in set(INPUT_NAMES) | {"minor_tab", "minor_help", "plot_metrics", "metrics_viewer"}:
        assert set(lf_locales.LOCALES[name]) >= langs, name  # Engine.change_lang indexes [name][lang]
        assert ours["LOCALES"][name]["zh"] != ours["LOCALES"][name]["en"] or name == "dpop_lambda", name
        assert lf_locales.LOCALES[name]["ja"] == ours["LOCALES"][name]["en"]  # English fallback
    for name in ours["ALERTS"]:
        assert set(lf_locales.ALERTS[name]) >= langs, name
