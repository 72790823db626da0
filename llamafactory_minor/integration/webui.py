"""LlamaBoard (``llamafactory-cli webui``) additions: the new stages, losses and keys in the Train tab.

Nothing of LF's web UI is copied; its functions are wrapped when their modules are imported (see
``llamafactory_minor._hook.PATCHES``). Stages, losses, inputs and their texts come from
``llamafactory_minor.registry``: one input per registry parameter (slider / dropdown / checkbox / text box by its
kind), its label and help from the registry's en/zh texts, and what applies to which stage / loss is ONE table,
``APPLIES``, built from the registry (with ``STAGE_DEFAULTS`` and ``PLOT_DEFAULTS`` beside it): the fields shown,
the keys passed and the metrics preselected for the plot all derive from it. LF symbols (``llamafactory_minor.lf``):

- ``llamafactory.extras.constants.TRAINING_STAGES`` (dict, updated in place: "MinorSFT", "SFT using DPO",
  "PoFT" are appended). ``STAGES_USE_PAIR_DATA`` is left alone, so ``webui.control.list_datasets`` lists
  single-answer datasets for the new stages and pairwise ones for DPO (minordpo / dpop).
- ``llamafactory.webui.locales.LOCALES`` / ``ALERTS`` (dicts, updated in place from
  ``llamafactory_minor/webui/locales.json``; every language LF has gets an entry, English where the
  file has none, so ``Engine.change_lang`` never misses a key). LF's own labels name the fields in the
  plugin's error texts (``localize_error``).
- ``llamafactory.webui.components.train.create_train_tab`` (wrapped): the new inputs are created
  unrendered, handed to LF through ``engine.manager.get_base_elems`` (so LF's own ``input_elems`` set,
  and with it the preview / start / save / load / output-dir handlers, include them), rendered in an
  accordion that is then moved right after LF's RLHF accordion, and returned in the tab's element dict
  (so ``Manager`` registers them as ``train.<name>`` and save/load arguments carry them). The
  ``pref_loss`` dropdown gets the choices ``minordpo`` and ``dpop``. Changes of LF's stage / loss
  dropdowns (and of "Log m_theta") show only the fields ``APPLIES`` lists -- LF's RLHF ones included
  (Loss type, reward model, PPO boxes; Ftx gamma only where LF's SFT term applies) and the accordions -- and set Beta to the paper's 0.04
  for MinorSFT / SFT using DPO unless the user set it. A metrics picker and a second plot sit under LF's
  loss plot (redrawn whenever LF's monitor updates the output box, and when the pick changes).
- ``llamafactory.webui.runner.Runner._parse_train_args`` (wrapped: adds the plugin keys that apply),
  ``Runner._initialize`` (wrapped: runs ``integration.validate.validate_train_args`` -- the CLI's checks --
  on the launch dict of a plugin configuration, so a ``PluginError`` is shown on the page, in the UI's
  language, and nothing starts), ``Runner.monitor`` and the runner module's ``get_trainer_info``
  (wrapped: the output box also shows a table of the latest plugin metrics, from ``trainer_log.jsonl``
  while the run goes, else ``trainer_state.json``; LF's progress bar shows the scoring pass -- model j/M,
  rows done / total -- from ``scores.progress``'s file until LF logs the first training step).
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

from .. import registry

NEW_STAGE_LABELS = {o.label["en"]: o.name for o in registry.objectives("stage")}  # LF's stage labels are English
NEW_PREF_LOSS_CHOICES = registry.new_pref_losses()
_UI_PARAMS = [p for p in registry.params() if p.ui]
# element names (ids "train.<name>") of the inputs this module adds, in layout order: sliders and dropdowns,
# then the checkboxes (one column), then the text boxes (second row)
_ROW1 = [p for p in _UI_PARAMS if p.kind in ("float", "choice")]
_CHECKS = [p for p in _UI_PARAMS if p.kind == "bool"]
_ROW2 = [p for p in _UI_PARAMS if p.kind in ("list", "text")]
INPUT_NAMES = tuple(p.name for p in _ROW1 + _CHECKS + _ROW2)
# log-history keys LF already shows (or that are bookkeeping): everything else is a plugin metric
_STOCK_LOG_KEYS = {
    "loss",
    "learning_rate",
    "epoch",
    "grad_norm",
    "step",
    "num_input_tokens_seen",
    "total_flos",
    "train_runtime",
    "train_tokens_per_second",
    "train_samples_per_second",
    "train_steps_per_second",
}
# keys of LF's own trainer_log.jsonl records (``llamafactory.train.callbacks.LogCallback.on_log``)
_LF_TRAINER_LOG_KEYS = {
    "current_steps",
    "total_steps",
    "loss",
    "eval_loss",
    "predict_loss",
    "reward",
    "accuracy",
    "lr",
    "epoch",
    "percentage",
    "elapsed_time",
    "remaining_time",
    "throughput",
    "total_tokens",
    "vram_allocated",
    "vram_reserved",
}
_LOCALES_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "webui", "locales.json")


# --------------------------------------------------------------------------------------------------
# What applies where: THE table, derived from the registry (the web UI's visibility, the keys it passes and
# the plot defaults all follow from it)
# --------------------------------------------------------------------------------------------------
ANY = None  # any pref_loss
REF_DPO_LOSSES = registry.ref_pref_losses()  # LF's DPO has a reference for these


def _applies_table() -> dict:
    stages = registry.objectives("stage")
    table = {
        # LF's RLHF accordion (LF passes these keys itself for dpo / kto / ppo)
        "pref_beta": (("dpo", ANY), ("kto", ANY)) + tuple((o.name, ANY) for o in stages if o.uses_beta),
        "pref_ftx": (("dpo", ANY), ("kto", ANY)) + tuple((o.name, ANY) for o in stages),  # LF's SFT term
        "pref_loss": (("dpo", ANY), ("kto", ANY)),
        "reward_model": (("ppo", ANY),),
        "ppo_score_norm": (("ppo", ANY),),
        "ppo_whiten_rewards": (("ppo", ANY),),
    }
    # the plugin's accordion: each objective's parameters where that objective trains
    for o in registry.objectives():
        where = (o.name, ANY) if o.kind == "stage" else ("dpo", (o.name,))
        for p in o.params:
            if p.ui:
                table[p.name] = (where,)
    table["precompute_ref_log_probs"] = tuple((o.name, ANY) for o in stages if o.needs_reference) + (
        ("dpo", REF_DPO_LOSSES),
        ("sft", ANY, "track_m_theta"),
    )
    # the plugin's stages log m_theta anyway; a stage without a reference has none to track
    table["track_m_theta"] = (("sft", ANY), ("dpo", REF_DPO_LOSSES))
    return table


# input name -> the configurations it applies to: (stage, pref_losses or ANY[, a checkbox that must be ticked])
APPLIES = _applies_table()
RLHF_INPUTS = ("pref_beta", "pref_ftx", "pref_loss", "reward_model", "ppo_score_norm", "ppo_whiten_rewards")
# the papers' defaults the UI offers when a stage is chosen (unless the user set the value)
STAGE_DEFAULTS = {o.name: dict(o.ui_defaults) for o in registry.objectives("stage") if o.ui_defaults}
# metrics plotted by default per stage (the curves the papers show): MinorSFT Fig. 1 (m_theta), MinorDPO
# Fig. 2-5 (beta-free rewards, margins), PoFT (the target's and the aligned LLMs' rewards)
PLOT_DEFAULTS = dict(registry.CARRIER_UI_PLOT, **{o.name: o.ui_plot for o in registry.objectives("stage")})
PLOT_METRICS = tuple(
    dict.fromkeys(
        [k for o in registry.objectives("stage") for k in o.ui_plot + o.metrics]
        + [
            "rewards/chosen",
            "rewards/rejected",
            "rewards/margins",
            "rewards/accuracies",
            "normalized_rewards/chosen",
            "normalized_rewards/rejected",
            "logps/chosen",
            "logps/rejected",
            "loss",
        ]
    )
)
# YAML key -> the LOCALES entry whose label names it in the UI (where the names differ)
FIELD_OF_KEY = {
    "stage": "training_stage",
    "model_name_or_path": "model_path",
    "per_device_train_batch_size": "batch_size",
    "neftune_noise_alpha": "neftune_alpha",
    "pissa_init": "use_pissa",
}


# choosing one of these stages opens LF's RLHF accordion (its Beta applies)
_RLHF_OPEN_STAGES = ("dpo",) + tuple(o.name for o in registry.objectives("stage") if o.uses_beta)


def applies(name: str, stage: str, pref_loss: str = "sigmoid", ticked=()) -> bool:
    """Whether input ``name`` applies to ``stage`` / ``pref_loss`` (``ticked``: names of ticked checkboxes)."""
    if name not in APPLIES:
        return True
    for entry in APPLIES[name]:
        st, losses = entry[0], entry[1]
        needs = entry[2] if len(entry) > 2 else None
        if st == stage and (losses is ANY or pref_loss in losses) and (needs is None or needs in ticked):
            return True
    return False


def plot_defaults(stage: str) -> list:
    return list(PLOT_DEFAULTS.get(stage, ()))


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
    """The plugin's LOCALES / ALERTS: ``webui/locales.json`` (the accordion, the plot, the alerts) plus one row per
    registry parameter (its label and help in en / zh, from ``registry.locale_rows``)."""
    with open(_LOCALES_FILE, encoding="utf-8") as f:
        data = json.load(f)
    data["LOCALES"].update(registry.locale_rows())
    return data


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
    from .. import lf

    entry = lf.ALERTS.get(name, {})
    return entry.get(lang) or entry.get("en", "")


# --------------------------------------------------------------------------------------------------
# webui.components.train
# --------------------------------------------------------------------------------------------------
_DEFAULT_STAGE, _DEFAULT_LOSS = "sft", "sigmoid"  # LF's initial choices (first stage, first loss)


def _new_input(param, visible: bool):
    """The gradio input of a registry parameter, unrendered (labels come from LOCALES through ``change_lang``)."""
    import gradio as gr

    if param.kind == "float":
        lo, hi, step = param.ui_range or (0, 10, 0.01)
        return gr.Slider(minimum=lo, maximum=hi, value=param.default, step=step, render=False, visible=visible)
    if param.kind == "choice":
        return gr.Dropdown(choices=list(param.choices), value=param.default, render=False, visible=visible)
    if param.kind == "bool":
        return gr.Checkbox(value=bool(param.default), render=False, visible=visible)
    return gr.Textbox(
        value="", scale=2 if param.kind == "list" and param in _ROW2[:2] else 1, render=False, visible=visible
    )


def _new_inputs():
    """The plugin's inputs (one per registry parameter shown in the UI), visible as ``APPLIES`` says for LF's
    initial stage."""
    return {p.name: _new_input(p, applies(p.name, _DEFAULT_STAGE, _DEFAULT_LOSS)) for p in _ROW1 + _CHECKS + _ROW2}


def _move_after(block, anchor) -> None:
    """Move ``block`` right after ``anchor`` in ``anchor``'s parent's children (the page layout)."""
    parent, new_parent = getattr(block, "parent", None), getattr(anchor, "parent", None)
    if parent is None or new_parent is None or block not in parent.children:
        return
    parent.children.remove(block)
    new_parent.children.insert(new_parent.children.index(anchor) + 1, block)
    block.parent = new_parent


def _set_visible(component, visible: bool) -> None:
    """Initial visibility of one of LF's components (before the page config is built)."""
    component.visible = visible
    args = getattr(component, "constructor_args", None)
    if isinstance(args, dict):
        args["visible"] = visible


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


def _stage_of(stage_label) -> str:
    from .. import lf

    return lf.TRAINING_STAGES.get(stage_label, stage_label)


def visibility(stage: str, pref_loss: str, ticked=()) -> dict:
    """``{input name: visible}`` for every input of ``APPLIES``, plus the two accordions."""
    shown = {name: applies(name, stage, pref_loss, ticked) for name in APPLIES}
    shown["rlhf_tab"] = any(shown[n] for n in RLHF_INPUTS)
    shown["minor_tab"] = any(shown[n] for n in INPUT_NAMES)
    return shown


def beta_for_stage(stage: str, beta, auto, lf_default: float):
    """``(new beta or None, new auto state)``: the paper's beta for MinorSFT / SFT using DPO unless the user set
    the slider (``auto == "user"``); LF's default back when leaving them if the plugin had set it."""
    if auto == "user":
        return None, auto

    def same(a, b):
        try:
            return abs(float(a) - float(b)) < 1e-9
        except (TypeError, ValueError):
            return False

    want = STAGE_DEFAULTS.get(stage, {}).get("pref_beta")
    if want is not None:
        if same(beta, lf_default) or (auto is not None and same(beta, auto)):
            return want, want
        return None, None  # a value the user (or a loaded config) chose: kept
    if auto is not None and same(beta, auto):
        return lf_default, None
    return None, None


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

        initial = visibility(_DEFAULT_STAGE, _DEFAULT_LOSS)
        with gr.Accordion(open=False, visible=initial["minor_tab"]) as minor_tab:
            minor_help = gr.Markdown()
            with gr.Row():
                for p in _ROW1:
                    new[p.name].render()
                with gr.Column():
                    for p in _CHECKS:
                        new[p.name].render()
            with gr.Row():
                for p in _ROW2:
                    new[p.name].render()
        # the metrics plot, under LF's loss plot
        with gr.Column() as plot_column:
            plot_metrics = gr.Dropdown(
                choices=list(PLOT_METRICS),
                value=plot_defaults(_DEFAULT_STAGE),
                multiselect=True,
                allow_custom_value=True,
            )
            metrics_viewer = gr.Plot()
        beta_auto = gr.State(None)  # the beta the plugin set itself, or "user" once the user moved the slider

        if "rlhf_tab" in elem_dict:
            _move_after(minor_tab, elem_dict["rlhf_tab"])
        if "loss_viewer" in elem_dict:
            _move_after(plot_column, elem_dict["loss_viewer"])
        if "pref_loss" in elem_dict:
            _add_pref_loss_choices(elem_dict["pref_loss"])

        # show only what applies (APPLIES); open the relevant accordions when a new stage / loss is chosen
        elem_dict.update(minor_tab=minor_tab, minor_help=minor_help, **new)
        shown_names = [n for n in list(APPLIES) + ["rlhf_tab", "minor_tab"] if n in elem_dict]
        for name in shown_names:
            if name in RLHF_INPUTS or name == "rlhf_tab":
                _set_visible(elem_dict[name], initial[name])
        shown_elems = [elem_dict[n] for n in shown_names]
        stage_box, loss_box, track_box = (
            elem_dict.get("training_stage"),
            elem_dict.get("pref_loss"),
            new["track_m_theta"],
        )
        beta_box = elem_dict.get("pref_beta")
        lf_beta = float(beta_box.value) if beta_box is not None else 0.1

        def updates(stage_label, loss, track, open_for=None):
            stage = _stage_of(stage_label)
            shown = visibility(stage, loss or _DEFAULT_LOSS, ("track_m_theta",) if track else ())
            out = []
            for name in shown_names:
                kwargs = {"visible": shown[name]}
                if name == "rlhf_tab" and open_for == "stage" and stage in _RLHF_OPEN_STAGES:
                    kwargs["open"] = True
                if name == "minor_tab" and (
                    (open_for == "stage" and stage in NEW_STAGE_LABELS.values())
                    or (open_for == "loss" and loss in NEW_PREF_LOSS_CHOICES)
                ):
                    kwargs["open"] = True
                out.append(gr.update(**kwargs))
            return out

        def on_stage(stage_label, loss, track, beta, auto):
            stage = _stage_of(stage_label)
            new_beta, auto = beta_for_stage(stage, beta, auto, lf_beta)
            beta_update = gr.update(value=new_beta) if new_beta is not None else gr.update()
            return updates(stage_label, loss, track, "stage") + [
                beta_update,
                auto,
                gr.update(value=plot_defaults(stage)),
            ]

        if stage_box is not None and loss_box is not None and beta_box is not None:
            stage_box.change(
                on_stage,
                [stage_box, loss_box, track_box, beta_box, beta_auto],
                shown_elems + [beta_box, beta_auto, plot_metrics],
                queue=False,
            )
            loss_box.change(
                lambda s, loss, t: updates(s, loss, t, "loss"),
                [stage_box, loss_box, track_box],
                shown_elems,
                queue=False,
            )
            track_box.change(
                lambda s, loss, t: updates(s, loss, t), [stage_box, loss_box, track_box], shown_elems, queue=False
            )
            beta_box.input(lambda: "user", None, [beta_auto], queue=False)  # the user set beta: never overridden
            if "arg_load_btn" in elem_dict:  # a loaded config's beta is the user's too
                elem_dict["arg_load_btn"].click(lambda: "user", None, [beta_auto], queue=False)

        # the metrics plot: redrawn with LF's running log (live) and when the selection changes
        top = [manager.get_elem_by_id(f"top.{n}") for n in ("lang", "model_name", "finetuning_type")]
        plot_inputs = top + [elem_dict["output_dir"], plot_metrics] if "output_dir" in elem_dict else None
        if plot_inputs is not None:
            plot_metrics.change(draw_metrics, plot_inputs, [metrics_viewer], queue=False)
            if "output_box" in elem_dict:
                elem_dict["output_box"].change(draw_metrics, plot_inputs, [metrics_viewer], queue=False)

        elem_dict.update(plot_metrics=plot_metrics, metrics_viewer=metrics_viewer)
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
# the metrics plot
# --------------------------------------------------------------------------------------------------
def metric_series(output_path: str, keys) -> dict:
    """``{key: (steps, values)}`` from LF's ``trainer_log.jsonl`` (live), else ``trainer_state.json``."""
    series = {k: ([], []) for k in keys}
    if not output_path or not keys:
        return series
    log_path = os.path.join(output_path, "trainer_log.jsonl")
    records, step_key = [], "current_steps"
    if os.path.isfile(log_path):
        try:
            with open(log_path, encoding="utf-8") as f:
                for line in f:
                    try:
                        records.append(json.loads(line))
                    except ValueError:
                        continue
        except OSError:
            records = []
    if not any(k in r for r in records for k in keys):
        records = [e for e in ((_latest_trainer_state(output_path) or {}).get("log_history", [])) if "loss" in e]
        step_key = "step"
    for r in records:
        for k in keys:
            v = r.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and r.get(step_key) is not None:
                series[k][0].append(r[step_key])
                series[k][1].append(v)
    return series


def metrics_figure(series: dict):
    """One small panel per metric (matplotlib, as LF's loss plot); None when nothing is logged yet."""
    keys = [k for k, (steps, _) in series.items() if steps]
    if not keys:
        return None
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(keys), 1, figsize=(5, 1.9 * len(keys) + 0.6), sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        steps, values = series[key]
        ax.plot(steps, values, marker="o", markersize=3, color="#d62728")
        ax.set_title(key, fontsize=9, loc="right")  # right: gradio's block label covers the top left
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step", fontsize=8)  # as LF's loss plot (matplotlib's default font has no CJK glyphs)
    fig.tight_layout()
    plt.close(fig)
    return fig


def draw_metrics(lang, model_name, finetuning_type, output_dir, keys):
    """Handler: the selected metrics of the run in ``output_dir``."""
    import gradio as gr

    keys = [k for k in (keys or []) if isinstance(k, str) and k]
    if not (model_name and output_dir and keys):
        return gr.Plot(value=None)
    from .. import lf

    try:
        output_path = lf.get_save_dir(model_name, finetuning_type, output_dir)
    except Exception:
        return gr.Plot(value=None)
    return gr.Plot(value=metrics_figure(metric_series(output_path, keys)))


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
    """The plugin keys for a web UI training run (``get("train.x")`` reads an input): the inputs that apply
    (``APPLIES``) and that LF does not pass itself."""
    loss = args.get("pref_loss") or get("train.pref_loss") or _DEFAULT_LOSS
    ticked = tuple(p.name for p in _CHECKS if get(f"train.{p.name}"))

    def ok(name):
        return applies(name, stage, loss, ticked)

    extra = {}
    for name in ("pref_beta", "pref_ftx"):  # LF passes them for dpo / kto itself
        if stage in NEW_STAGE_LABELS.values() and ok(name):
            extra[name] = get(f"train.{name}")
    for p in _ROW1:
        if ok(p.name):
            extra[p.name] = get(f"train.{p.name}")
    for p in _ROW2:
        raw = get(f"train.{p.name}") or ""
        value = ",".join(x.strip() for x in raw.split(",") if x.strip()) if p.kind == "list" else raw.strip()
        if value and ok(p.name):
            extra[p.name] = value
    for p in _CHECKS:  # a ticked box that does not apply is not passed
        if get(f"train.{p.name}") and ok(p.name):
            extra[p.name] = True
    return {k: v for k, v in extra.items() if v is not None}


def validate_train_args(args: dict) -> None:
    """The plugin's checks on a web UI launch dict, raising ``PluginError``: ``integration.validate`` (the same
    code ``llamafactory-cli train`` runs)."""
    from .validate import validate_train_args as validate

    validate(args)


def is_plugin_config(args: dict) -> bool:
    from .validate import is_plugin_config as check

    return bool(check(args))


def field_label(key: str, lang: str = "en"):
    """The UI's label (in ``lang``) of the input that sets YAML key ``key``, or None."""
    from .. import lf

    entry = lf.LOCALES.get(FIELD_OF_KEY.get(key, key)) or {}
    text = (entry.get(lang) or entry.get("en") or {}).get("label")
    return text or None


def localize_error(message: str, lang: str = "en") -> str:
    """A ``PluginError`` text for the page: each `` `key` `` / `` `key: value` `` becomes the field's label in the
    UI's language with the YAML in brackets (``PoFT 对齐模型 [poft_aligned_models: a,b]``); keys the UI has no
    field for stay as they are."""

    def repl(match):
        inner = match.group(1)
        key = re.split(r"[:=\s]", inner.strip(), maxsplit=1)[0]
        label = field_label(key, lang) if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key or "") else None
        return f"{label} [{inner}]" if label else match.group(0)

    return re.sub(r"`([^`\n]+)`", repl, message)


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
    if not is_plugin_config(args):  # stock configurations: LF's own checks, as without the plugin
        return ""
    try:
        validate_train_args(args)
    except PluginError as e:
        lang = _getter(runner, data)("top.lang", "en") or "en"
        return _alert("err_minor_config", lang) + localize_error(str(e), lang)
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
        if k not in _STOCK_LOG_KEYS
        and k not in _LF_TRAINER_LOG_KEYS
        and isinstance(v, (int, float))
        and not isinstance(v, bool)
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
    step_word, metric, value = (_alert(n, lang) for n in ("info_minor_step", "info_minor_metric", "info_minor_value"))
    return (
        f"**{title}** ({step_word} {step if step is not None else '?'})\n\n"
        f"| {metric} | {value} |\n| --- | --- |\n{rows}\n"
    )


_RUN_STARTS = {}  # output path -> when LF's monitor started watching it (older progress files are stale)


def scoring_progress(output_path: str):
    """The newest record of this run's scoring pass (``scores.progress``), while no training step is logged."""
    from ..scores.progress import PROGRESS_FILE

    if not output_path:
        return None
    try:
        with open(os.path.join(output_path, PROGRESS_FILE), encoding="utf-8") as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return None
    when = rec.get("time") or 0
    if when < _RUN_STARTS.get(output_path, 0) - 1:
        return None  # a previous run's
    trainer_log = os.path.join(output_path, "trainer_log.jsonl")
    if os.path.isfile(trainer_log) and os.path.getmtime(trainer_log) >= when:
        return None  # training steps are being logged: LF's own bar
    return rec


def scoring_progress_label(rec: dict, lang: str = "en") -> str:
    who = ""
    if rec.get("model_index"):
        who = _alert("info_minor_scoring_model", lang).format(j=rec["model_index"], m=rec["model_count"])
    unit = _alert("info_minor_rows" if rec.get("unit") == "rows" else "info_minor_sequences", lang)
    return _alert("info_minor_scoring", lang).format(
        what=rec.get("desc", ""),
        who=who,
        done=rec.get("done", 0),
        total=rec.get("total", 0),
        unit=unit,
        elapsed=rec.get("elapsed_time", ""),
        remaining=rec.get("remaining_time", ""),
    )


def _wrap_get_trainer_info(original):
    @functools.wraps(original)
    def get_trainer_info(lang, output_path, do_train):
        running_log, running_progress, running_info = original(lang, output_path, do_train)
        if do_train:
            rec = scoring_progress(output_path)
            if rec is not None:  # LF's bar shows the scoring pass until the first training step is logged
                import gradio as gr

                running_progress = gr.Slider(
                    label=scoring_progress_label(rec, lang), value=rec.get("percentage", 0), visible=True
                )
            table = plugin_metrics_markdown(output_path, lang)
            if table:
                running_log = table + "\n" + running_log
        return running_log, running_progress, running_info

    get_trainer_info._lfm_wrapped = True
    return get_trainer_info


def _wrap_monitor(original):
    @functools.wraps(original)
    def monitor(self):
        import time

        from .. import lf

        get_save_dir = lf.get_save_dir
        data, do_train = self.running_data, self.do_train
        output_box = output_path = lang = None
        if data is not None and do_train:
            get = _getter(self, data)
            lang = get("top.lang") or "en"
            output_path = get_save_dir(get("top.model_name"), get("top.finetuning_type"), get("train.output_dir"))
            output_box = self.manager.get_elem_by_id("train.output_box")
            _RUN_STARTS[output_path] = time.time()
        last_text = None
        for update in original(self):
            if output_box is not None and isinstance(update, dict) and output_box in update:
                last_text = update[output_box]
            yield update
        if output_box is not None and isinstance(last_text, str):  # the run ended: the final metrics
            table = plugin_metrics_markdown(output_path, lang)
            if table and table not in last_text:
                title = re.escape(_alert("info_minor_metrics", lang))
                step_word = re.escape(_alert("info_minor_step", lang))
                stale = re.compile(r"\*\*" + title + r"\*\* \(" + step_word + r" [^)]*\)\n\n(\|.*\|\n)+\n?")
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
