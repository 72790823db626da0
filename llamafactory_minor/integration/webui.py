"""LlamaBoard (``llamafactory-cli webui``) additions: the new stages, losses and keys in the Train tab.

Nothing of LF's web UI is copied; its functions are wrapped when their modules are imported (see
``llamafactory_minor._hook.PATCHES``). LF symbols:

- ``llamafactory.extras.constants.TRAINING_STAGES`` (dict, updated in place: "MinorSFT", "SFT using DPO",
  "PoFT" are appended). ``STAGES_USE_PAIR_DATA`` is left alone, so ``webui.control.list_datasets`` lists
  single-answer datasets for the new stages and pairwise ones for DPO (minordpo / dpop).
- ``llamafactory.webui.locales.LOCALES`` / ``ALERTS`` (dicts, updated in place from
  ``llamafactory_minor/webui/locales.json``; every language LF has gets an entry, English where the
  file has none, so ``Engine.change_lang`` never misses a key).
- ``llamafactory.webui.components.train.create_train_tab`` (wrapped): the new inputs are created
  unrendered, handed to LF through ``engine.manager.get_base_elems`` (so LF's own ``input_elems`` set,
  and with it the preview / start / save / load / output-dir handlers, include them), rendered in an
  accordion that is then moved right after LF's RLHF accordion, and returned in the tab's element dict
  (so ``Manager`` registers them as ``train.<name>`` and save/load arguments carry them). The
  ``pref_loss`` dropdown gets the choices ``minordpo`` and ``dpop``.
- ``llamafactory.webui.runner.Runner._parse_train_args`` (wrapped: adds the plugin keys for the new
  stages / losses), ``Runner._initialize`` (wrapped: validates the arguments with the plugin's
  ``MinorFinetuningArguments`` so a ``PluginError`` -- e.g. PoFT without aligned LLMs -- is shown on the
  page and nothing starts), ``Runner.monitor`` and the runner module's ``get_trainer_info`` (wrapped:
  the output box also shows a table of the latest plugin metrics, from ``trainer_log.jsonl`` while the
  run goes, else ``trainer_state.json``). LF's loss plot stays loss-only.
- ``llamafactory.train.callbacks.LogCallback.on_log`` (wrapped, in the training process): the records
  LF writes to ``trainer_log.jsonl`` also carry the plugin metrics (m_theta, minorsft/coef,
  rewards/margins, normalized_rewards/*, ...), and under LlamaBoard one more running-log line lists them
  (LF's own line has loss / lr / epoch / reward / accuracy only).

The training subprocess LF starts (``llamafactory-cli train <yaml>``) gets the plugin from the .pth hook.
"""

import functools
import glob
import json
import os
import re

NEW_STAGE_LABELS = {"MinorSFT": "minorsft", "SFT using DPO": "sftdpo", "PoFT": "poft"}
NEW_PREF_LOSS_CHOICES = ("minordpo", "dpop")
# element names (ids "train.<name>") of the inputs this module adds, in layout order
INPUT_NAMES = (
    "dpop_lambda",
    "poft_beta",
    "poft_gamma",
    "poft_aggregation",
    "precompute_ref_log_probs",
    "track_m_theta",
    "poft_aligned_models",
    "poft_aligned_templates",
    "poft_noise_dataset",
)
# log-history keys LF already shows (or that are bookkeeping): everything else is a plugin metric
_STOCK_LOG_KEYS = {
    "loss", "learning_rate", "epoch", "grad_norm", "step", "num_input_tokens_seen", "total_flos",
    "train_runtime", "train_tokens_per_second", "train_samples_per_second", "train_steps_per_second",
}
# keys of LF's own trainer_log.jsonl records (``llamafactory.train.callbacks.LogCallback.on_log``)
_LF_TRAINER_LOG_KEYS = {
    "current_steps", "total_steps", "loss", "eval_loss", "predict_loss", "reward", "accuracy", "lr", "epoch",
    "percentage", "elapsed_time", "remaining_time", "throughput", "total_tokens", "vram_allocated", "vram_reserved",
}
_LOCALES_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "webui", "locales.json")


# --------------------------------------------------------------------------------------------------
# extras.constants
# --------------------------------------------------------------------------------------------------
def patch_constants(module) -> None:
    """Append the new stages to ``TRAINING_STAGES`` (in place: LF's web UI imported the same dict)."""
    for label, stage in NEW_STAGE_LABELS.items():
        module.TRAINING_STAGES.setdefault(label, stage)


# --------------------------------------------------------------------------------------------------
# webui.locales
# --------------------------------------------------------------------------------------------------
def load_locales() -> dict:
    with open(_LOCALES_FILE, encoding="utf-8") as f:
        return json.load(f)


def patch_locales(module) -> None:
    """Merge the plugin's labels / help texts / alerts into LF's ``LOCALES`` and ``ALERTS``."""
    data = load_locales()
    langs = set()
    for entry in module.LOCALES.values():
        langs.update(entry.keys())
    for target, new in ((module.LOCALES, data["LOCALES"]), (module.ALERTS, data["ALERTS"])):
        for name, by_lang in new.items():
            merged = {lang: by_lang.get(lang, by_lang["en"]) for lang in sorted(langs | set(by_lang))}
            target.setdefault(name, {}).update(merged)


def _alert(name: str, lang: str) -> str:
    from llamafactory.webui.locales import ALERTS

    entry = ALERTS.get(name, {})
    return entry.get(lang) or entry.get("en", "")


# --------------------------------------------------------------------------------------------------
# webui.components.train
# --------------------------------------------------------------------------------------------------
def _new_inputs():
    """The plugin's inputs, created unrendered (labels come from LOCALES through ``change_lang``)."""
    import gradio as gr

    return dict(
        dpop_lambda=gr.Slider(minimum=0, maximum=200, value=50, step=0.5, render=False),
        poft_beta=gr.Slider(minimum=0.01, maximum=10, value=1, step=0.01, render=False),
        poft_gamma=gr.Slider(minimum=-10, maximum=10, value=0, step=0.01, render=False),
        poft_aggregation=gr.Dropdown(choices=["mean", "max", "min"], value="mean", render=False),
        precompute_ref_log_probs=gr.Checkbox(value=False, render=False),
        track_m_theta=gr.Checkbox(value=False, render=False),
        poft_aligned_models=gr.Textbox(value="", scale=2, render=False),
        poft_aligned_templates=gr.Textbox(value="", scale=2, render=False),
        poft_noise_dataset=gr.Textbox(value="", scale=1, render=False),
    )


def _move_after(block, anchor) -> None:
    """Move ``block`` right after ``anchor`` in their common parent's children (the page layout)."""
    parent = getattr(block, "parent", None)
    if parent is None or getattr(anchor, "parent", None) is not parent:
        return
    parent.children.remove(block)
    parent.children.insert(parent.children.index(anchor) + 1, block)


def _add_pref_loss_choices(dropdown) -> None:
    """Widen LF's hard-coded pref_loss choices: the rendered ones and the constructor arguments, which
    gradio re-applies whenever an update (e.g. ``Engine.change_lang``) rebuilds the session's copy."""
    values = [c[1] if isinstance(c, (tuple, list)) else c for c in dropdown.choices]
    for loss in NEW_PREF_LOSS_CHOICES:
        if loss not in values:
            dropdown.choices.append((loss, loss))
    args = getattr(dropdown, "constructor_args", None)
    if isinstance(args, dict) and isinstance(args.get("choices"), (list, tuple)):
        old = list(args["choices"])
        args["choices"] = old + [loss for loss in NEW_PREF_LOSS_CHOICES if loss not in old]


def _wrap_create_train_tab(original):
    if getattr(original, "_lfm_wrapped", False):
        return original

    @functools.wraps(original)
    def create_train_tab(engine):
        import gradio as gr

        new = _new_inputs()
        manager = engine.manager
        base_elems = manager.get_base_elems
        manager.get_base_elems = lambda: base_elems() | set(new.values())  # LF's input_elems include ours
        try:
            elem_dict = original(engine)
        finally:
            del manager.get_base_elems  # back to the class method

        with gr.Accordion(open=False) as minor_tab:
            minor_help = gr.Markdown()
            with gr.Row():
                new["dpop_lambda"].render()
                new["poft_beta"].render()
                new["poft_gamma"].render()
                new["poft_aggregation"].render()
                with gr.Column():
                    new["precompute_ref_log_probs"].render()
                    new["track_m_theta"].render()
            with gr.Row():
                new["poft_aligned_models"].render()
                new["poft_aligned_templates"].render()
                new["poft_noise_dataset"].render()

        if "rlhf_tab" in elem_dict:
            _move_after(minor_tab, elem_dict["rlhf_tab"])
        if "pref_loss" in elem_dict:
            _add_pref_loss_choices(elem_dict["pref_loss"])

        # open the relevant accordions when a new stage / loss is chosen
        def open_for_stage(stage_label):
            from llamafactory.extras.constants import TRAINING_STAGES

            stage = TRAINING_STAGES.get(stage_label)
            return (
                gr.Accordion(open=True) if stage in ("minorsft", "sftdpo", "dpo") else gr.Accordion(),
                gr.Accordion(open=True) if stage in NEW_STAGE_LABELS.values() else gr.Accordion(),
            )

        def open_for_loss(loss):
            return gr.Accordion(open=True) if loss in NEW_PREF_LOSS_CHOICES else gr.Accordion()

        if "training_stage" in elem_dict and "rlhf_tab" in elem_dict:
            elem_dict["training_stage"].change(
                open_for_stage, [elem_dict["training_stage"]], [elem_dict["rlhf_tab"], minor_tab], queue=False
            )
        if "pref_loss" in elem_dict:
            elem_dict["pref_loss"].change(open_for_loss, [elem_dict["pref_loss"]], [minor_tab], queue=False)

        elem_dict.update(minor_tab=minor_tab, minor_help=minor_help, **new)
        return elem_dict

    create_train_tab._lfm_wrapped = True
    return create_train_tab


def patch_train_component(module) -> None:
    import sys

    module.create_train_tab = _wrap_create_train_tab(module.create_train_tab)
    # if the package / interface already bound the name (hook installed late), rebind there too
    for name in ("llamafactory.webui.components", "llamafactory.webui.interface"):
        other = sys.modules.get(name)
        if other is not None and hasattr(other, "create_train_tab"):
            other.create_train_tab = module.create_train_tab


# --------------------------------------------------------------------------------------------------
# webui.runner
# --------------------------------------------------------------------------------------------------
def _getter(runner, data):
    def get(elem_id, default=None):
        try:
            return data[runner.manager.get_elem_by_id(elem_id)]
        except KeyError:
            return default

    return get


def plugin_train_args(stage: str, get, args: dict) -> dict:
    """The plugin keys for a web UI training run (``get("train.x")`` reads an input)."""
    extra = {}
    if stage in ("minorsft", "sftdpo"):
        extra["pref_beta"] = get("train.pref_beta")
    if stage == "dpo" and args.get("pref_loss") == "dpop":
        extra["dpop_lambda"] = get("train.dpop_lambda")
    if stage == "poft":
        extra["poft_beta"] = get("train.poft_beta")
        extra["poft_gamma"] = get("train.poft_gamma")
        extra["poft_aggregation"] = get("train.poft_aggregation")
        for key in ("poft_aligned_models", "poft_aligned_templates", "poft_noise_dataset"):
            value = ",".join(p.strip() for p in (get(f"train.{key}") or "").split(",") if p.strip())
            if value:
                extra[key] = value
    if get("train.precompute_ref_log_probs"):
        extra["precompute_ref_log_probs"] = True
    if get("train.track_m_theta") and stage in ("sft", "dpo"):
        extra["track_m_theta"] = True
    return {k: v for k, v in extra.items() if v is not None}


def validate_train_args(args: dict) -> None:
    """Run the plugin's argument checks on a web UI config; raises ``PluginError``."""
    import dataclasses

    import llamafactory.hparams.parser  # noqa: F401  (LF first: its import runs our patch_parser, which needs .arguments)

    from .arguments import MinorFinetuningArguments

    names = {f.name for f in dataclasses.fields(MinorFinetuningArguments) if f.init}
    MinorFinetuningArguments(**{k: v for k, v in args.items() if k in names})


def _wrap_parse_train_args(original):
    @functools.wraps(original)
    def _parse_train_args(self, data):
        args = original(self, data)
        get = _getter(self, data)
        try:
            user_extra = json.loads(get("train.extra_args") or "{}")
        except (TypeError, ValueError):
            user_extra = {}
        for key, value in plugin_train_args(args["stage"], get, args).items():
            if key not in user_extra:  # a key typed into "Extra arguments" wins, as it did before
                args[key] = value
        return args

    return _parse_train_args


def _wrap_initialize(original):
    @functools.wraps(original)
    def _initialize(self, data, do_train, from_preview):
        # LF's checks first, as a preview (no side effects such as its "no CUDA" toast); then ours
        if do_train and not original(self, data, do_train, True):
            plugin_error = _plugin_error(self, data)
            if plugin_error:
                return plugin_error
        return original(self, data, do_train, from_preview)

    return _initialize


def _plugin_error(runner, data) -> str:
    """The localized ``PluginError`` message for this web UI config, or ""."""
    from . import PluginError

    try:
        args = runner._parse_train_args(data)
    except Exception:  # LF raises these itself later, as before the plugin
        return ""
    try:
        validate_train_args(args)
    except PluginError as e:
        return _alert("err_minor_config", _getter(runner, data)("top.lang", "en") or "en") + str(e)
    except Exception:  # stock checks (asserts, LF's ValueErrors) stay where LF reports them
        return ""
    return ""


def _latest_trainer_state(output_path: str):
    paths = [os.path.join(output_path, "trainer_state.json")]
    checkpoints = glob.glob(os.path.join(output_path, "checkpoint-*", "trainer_state.json"))
    checkpoints.sort(key=lambda p: int(re.sub(r"\D", "", os.path.basename(os.path.dirname(p))) or 0), reverse=True)
    for path in paths + checkpoints:
        if os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as f:
                    return json.load(f)
            except (OSError, ValueError):
                continue
    return None


def plugin_metrics(entry: dict) -> dict:
    """The numeric entries of one log record that LF's own monitor does not show."""
    return {
        k: v
        for k, v in entry.items()
        if k not in _STOCK_LOG_KEYS and k not in _LF_TRAINER_LOG_KEYS
        and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def latest_plugin_metrics(output_path: str):
    """``(step, metrics)`` of the newest training log record with plugin metrics, or ``(None, {})``.

    Reads LF's ``trainer_log.jsonl`` (live; the plugin metrics are in it when the training process ran
    with ``patch_callbacks``), else ``trainer_state.json`` (the run's end or its newest checkpoint).
    """
    if not output_path:
        return None, {}
    log_path = os.path.join(output_path, "trainer_log.jsonl")
    if os.path.isfile(log_path):
        try:
            with open(log_path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError:
            lines = []
        for line in reversed(lines):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            metrics = plugin_metrics(entry)
            if "loss" in entry and metrics:
                return entry.get("current_steps"), metrics
    state = _latest_trainer_state(output_path)
    for entry in reversed((state or {}).get("log_history", [])):
        if "loss" in entry:  # skips eval entries and the final summary (train_loss)
            metrics = plugin_metrics(entry)
            return (entry.get("step"), metrics) if metrics else (None, {})
    return None, {}


def plugin_metrics_markdown(output_path: str, lang: str = "en") -> str:
    """A markdown table of the newest logged metrics LF's monitor does not show ("" if none yet)."""
    step, metrics = latest_plugin_metrics(output_path)
    if not metrics:
        return ""
    rows = "\n".join(f"| `{k}` | {v:.6g} |" for k, v in metrics.items())
    title = _alert("info_minor_metrics", lang)
    return f"**{title}** (step {step if step is not None else '?'})\n\n| metric | value |\n| --- | --- |\n{rows}\n"


def _wrap_get_trainer_info(original):
    @functools.wraps(original)
    def get_trainer_info(lang, output_path, do_train):
        running_log, running_progress, running_info = original(lang, output_path, do_train)
        if do_train:
            table = plugin_metrics_markdown(output_path, lang)
            if table:
                running_log = table + "\n" + running_log
        return running_log, running_progress, running_info

    get_trainer_info._lfm_wrapped = True
    return get_trainer_info


def _wrap_monitor(original):
    @functools.wraps(original)
    def monitor(self):
        from llamafactory.webui.common import get_save_dir

        data, do_train = self.running_data, self.do_train
        output_box = output_path = lang = None
        if data is not None and do_train:
            get = _getter(self, data)
            lang = get("top.lang") or "en"
            output_path = get_save_dir(get("top.model_name"), get("top.finetuning_type"), get("train.output_dir"))
            output_box = self.manager.get_elem_by_id("train.output_box")
        last_text = None
        for update in original(self):
            if output_box is not None and isinstance(update, dict) and output_box in update:
                last_text = update[output_box]
            yield update
        if output_box is not None and isinstance(last_text, str):  # the run ended: the final metrics
            table = plugin_metrics_markdown(output_path, lang)
            if table and table not in last_text:
                title = re.escape(_alert("info_minor_metrics", lang))
                stale = re.compile(r"\*\*" + title + r"\*\* \(step [^)]*\)\n\n(\|.*\|\n)+\n?")
                yield {output_box: table + "\n" + stale.sub("", last_text)}

    return monitor


def patch_runner(module) -> None:
    runner_cls = module.Runner
    if getattr(runner_cls, "_lfm_patched", False):
        return
    runner_cls._parse_train_args = _wrap_parse_train_args(runner_cls._parse_train_args)
    runner_cls._initialize = _wrap_initialize(runner_cls._initialize)
    runner_cls.monitor = _wrap_monitor(runner_cls.monitor)
    if not getattr(module.get_trainer_info, "_lfm_wrapped", False):
        module.get_trainer_info = _wrap_get_trainer_info(module.get_trainer_info)
    runner_cls._lfm_patched = True


# --------------------------------------------------------------------------------------------------
# train.callbacks (the training process LlamaBoard starts)
# --------------------------------------------------------------------------------------------------
class _MergingPool:
    """Stands in for ``LogCallback.thread_pool`` during one ``on_log``: the record LF queues for
    ``trainer_log.jsonl`` also carries the plugin metrics."""

    def __init__(self, pool, extra):
        self._pool = pool
        self._extra = extra

    def submit(self, fn, output_dir, logs, *args, **kwargs):
        merged = dict(logs)
        for key, value in self._extra.items():
            merged.setdefault(key, value)
        return self._pool.submit(fn, output_dir, merged, *args, **kwargs)

    def __getattr__(self, item):
        return getattr(self._pool, item)


def patch_callbacks(module) -> None:
    """``LogCallback.on_log``: also write the plugin metrics (m_theta, minorsft/coef, rewards/margins,
    normalized_rewards/*, ...) into LF's ``trainer_log.jsonl`` and, under LlamaBoard, LF's running log."""
    log_cls = getattr(module, "LogCallback", None)
    if log_cls is None or getattr(log_cls, "_lfm_patched", False):
        return
    original = log_cls.on_log

    @functools.wraps(original)
    def on_log(self, args, state, control, **kwargs):
        last = state.log_history[-1] if state.log_history else {}
        extra = plugin_metrics(last) if "loss" in last else {}
        pool = getattr(self, "thread_pool", None)
        if not extra or pool is None or not getattr(args, "should_save", True):
            return original(self, args, state, control, **kwargs)
        self.thread_pool = _MergingPool(pool, extra)
        try:
            result = original(self, args, state, control, **kwargs)
        finally:
            self.thread_pool = pool
        if getattr(self, "webui_mode", False):
            from . import get_logger

            text = ", ".join(f"'{k}': {v:.4g}" for k, v in extra.items())
            get_logger(__name__).info("{" + text + "}")
        return result

    log_cls.on_log = on_log
    log_cls._lfm_patched = True
