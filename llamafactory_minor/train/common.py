"""Shared pieces of the plugin's workflows and trainers (LF's own shape: a workflow and a trainer).

The single-answer stages of the registry train with :class:`SingleAnswerTrainer` (one class for all of them:
``trainer_class(objective)`` binds a registry entry, whose function computes the per-sample losses); their
workflow is :func:`run_single_answer`. LF symbols (``lf``): ``CustomDPOTrainer`` (base class: it already owns
the reference model, DeepSpeed/FSDP preparation of it, LoRA adapter disabling, the stored-metrics logging
with all-reduce and LF's optimizer/scheduler/sampler choices), ``create_ref_model``, ``get_dataset``,
``get_template_and_fix_tokenizer``, ``SFTDataCollatorWith4DAttentionMask``, ``load_model``, ``load_tokenizer``,
``plot_loss``, ``create_modelcard_and_push``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import torch

from .. import lf, registry
from ..errors import PluginError
from ..objectives import deviation_metric, normalized_rewards, sequence_log_probs, with_sft_term
from ..objectives.interface import SingleAnswerInputs
from ..scores.collator import SCORE_COLUMNS, ScoredCollator
from ..scores.keys import plugin_dataset
from . import witness

# attach_scores(dataset_module, template, tokenizer_module) -> dataset_module with score columns
ScoreAttacher = Callable[[dict, Any, dict], dict]


def load_reference(model_args: Any, finetuning_args: Any) -> torch.nn.Module | None:
    """The reference as LF's DPO makes it: ``ref_model`` path; LoRA: None (adapters disabled); else a copy."""
    try:
        return lf.create_ref_model(model_args, finetuning_args)
    except Exception as e:  # one clear message, naming the key
        where = f"`ref_model: {finetuning_args.ref_model}`" if finetuning_args.ref_model else "the base model"
        raise PluginError(f"Cannot load the reference model from {where}: {type(e).__name__}: {e}") from None


class SingleAnswerTrainer(lf.CustomDPOTrainer):
    """The trainer of the registry's single-answer stages: one answer per row, per-sequence log-probs.

    ``objective`` (a class attribute, set by :func:`trainer_class`) is the registry entry; its function gets
    :class:`~llamafactory_minor.objectives.interface.SingleAnswerInputs` and returns per-sample losses and a
    dict of metrics (python floats). ``pref_ftx = gamma > 0`` adds LF's SFT term gamma * (-log pi(y|x) / m)
    per sample (``objectives.ftx``) to every stage.
    """

    objective: registry.Objective | None = None

    @property
    def needs_reference(self) -> bool:
        return self.objective.needs_reference

    @property
    def plot_keys(self) -> tuple:
        return self.objective.plot_keys

    def concatenated_forward(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor], is_ref_model: bool = False
    ) -> dict[str, torch.Tensor]:
        inputs = {k: v for k, v in batch.items() if k != "labels" and k not in SCORE_COLUMNS}
        logits = model(**inputs, return_dict=True, use_cache=False).logits
        logps, num_tokens = sequence_log_probs(logits, batch["labels"], ignore_index=lf.IGNORE_INDEX)
        return {"logps": logps, "num_tokens": num_tokens}

    def compute_reference_log_probs(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
    ) -> torch.Tensor | None:
        if not self.needs_reference:
            return None
        if "ref_logps" in batch:  # precomputed
            return batch["ref_logps"].to(self.accelerator.device)
        if self.ref_model is None:
            ref_model, ref_context = model, self.accelerator.unwrap_model(model).disable_adapter()
        else:
            ref_model, ref_context = self.ref_model, nullcontext()
        with torch.no_grad(), ref_context:
            return self.concatenated_forward(ref_model, batch, is_ref_model=True)["logps"]

    def compute_objective(
        self,
        policy_logps: torch.Tensor,
        num_tokens: torch.Tensor,
        ref_logps: torch.Tensor | None,
        batch: dict[str, torch.Tensor],
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The registry objective's per-sample losses (plus LF's SFT term) and its metrics."""
        obj = self.objective
        params = {p.name: getattr(self.finetuning_args, p.name, p.default) for p in obj.params}
        columns = {k: v for k, v in batch.items() if k in SCORE_COLUMNS}
        losses, metrics = obj.function()(
            SingleAnswerInputs(policy_logps, num_tokens, ref_logps, self.beta, params, columns)
        )
        metrics = dict(metrics)
        losses, sft = with_sft_term(losses, policy_logps, num_tokens, self.ftx_gamma)
        if sft is not None:
            metrics["sft_loss"] = sft.mean().item()
        return losses, metrics

    def get_batch_loss_metrics(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor], train_eval: str = "train"
    ) -> tuple[torch.Tensor, dict[str, float]]:
        out = self.concatenated_forward(model, batch)
        policy_logps, num_tokens = out["logps"], out["num_tokens"]
        ref_logps = self.compute_reference_log_probs(model, batch)
        losses, metrics = self.compute_objective(policy_logps, num_tokens, ref_logps, batch)
        witness.loss_computed()
        if ref_logps is not None:
            ratio = (policy_logps - ref_logps).detach()
            metrics["rewards/chosen"] = (self.beta * ratio).mean().item()
            metrics["normalized_rewards/chosen"] = (
                normalized_rewards(policy_logps.detach(), ref_logps, num_tokens).mean().item()
            )
            metrics["m_theta"] = deviation_metric(policy_logps.detach(), ref_logps, num_tokens).item()
        metrics["logps/chosen"] = policy_logps.detach().mean().item()
        prefix = "eval_" if train_eval == "eval" else ""
        return losses.mean(), {f"{prefix}{k}": v for k, v in metrics.items()}

    def prediction_step(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor, None, None]:
        with torch.no_grad():
            loss, metrics = self.get_batch_loss_metrics(model, inputs, train_eval="eval")
        self.store_metrics(metrics, train_eval="eval")
        return loss.detach(), None, None


def trainer_class(objective: registry.Objective) -> type:
    """The trainer of a registry single-answer stage (``SingleAnswerTrainer`` bound to its entry)."""
    name = "".join(part.capitalize() for part in objective.name.replace("-", "_").split("_")) + "Trainer"
    return type(name, (SingleAnswerTrainer,), {"objective": objective, "__module__": __name__})


def run_single_answer(
    trainer_cls: type[SingleAnswerTrainer],
    model_args: Any,
    data_args: Any,
    training_args: Any,
    finetuning_args: Any,
    callbacks: list | None,
    attach_scores: ScoreAttacher | None = None,
) -> None:
    """LF's SFT-shaped workflow for the plugin's single-answer stages.

    ``attach_scores(dataset_module, template, tokenizer_module)`` may add score columns (PoFT's aligned
    scores, precomputed reference log-probs) joined by ``sample_key``.
    """
    SFTDataCollatorWith4DAttentionMask, get_dataset = lf.SFTDataCollatorWith4DAttentionMask, lf.get_dataset
    load_model, load_tokenizer = lf.load_model, lf.load_tokenizer

    stage = finetuning_args.stage
    if data_args.packing or data_args.neat_packing:
        raise PluginError(f"`stage: {stage}` needs one sample per row (per-sequence log-probs): set `packing: false`.")

    tokenizer_module = load_tokenizer(model_args)
    tokenizer = tokenizer_module["tokenizer"]
    template = lf.get_template_and_fix_tokenizer(tokenizer, data_args)
    with plugin_dataset(f"stage: {stage}", keyed=attach_scores is not None):
        dataset_module = get_dataset(template, model_args, data_args, training_args, stage="sft", **tokenizer_module)
    if attach_scores is not None:
        dataset_module = attach_scores(dataset_module, template, tokenizer_module)

    model = load_model(tokenizer, model_args, finetuning_args, training_args.do_train)
    data_collator = ScoredCollator(
        SFTDataCollatorWith4DAttentionMask(
            template=template,
            model=model,
            pad_to_multiple_of=8 if training_args.do_train else None,
            label_pad_token_id=lf.IGNORE_INDEX if data_args.ignore_pad_token_for_loss else tokenizer.pad_token_id,
            block_diag_attn=model_args.block_diag_attn,
            attn_implementation=getattr(model.config, "_attn_implementation", None),
            compute_dtype=model_args.compute_dtype,
            **tokenizer_module,
        )
    )

    ref_model = None
    if trainer_cls.objective.needs_reference and not finetuning_args.precompute_ref_log_probs:
        ref_model = load_reference(model_args, finetuning_args)

    trainer = trainer_cls(
        model=model,
        ref_model=ref_model,
        args=training_args,
        finetuning_args=finetuning_args,
        data_collator=data_collator,
        callbacks=callbacks,
        **dataset_module,
        **tokenizer_module,
    )
    finish_training(
        trainer,
        trainer_cls.objective.plot_keys,
        model_args,
        data_args,
        training_args,
        finetuning_args,
        dataset_module,
        lf.plot_loss,
        lf.create_modelcard_and_push,
    )


def finish_training(
    trainer: Any,
    plot_keys: Sequence[str],
    model_args: Any,
    data_args: Any,
    training_args: Any,
    finetuning_args: Any,
    dataset_module: dict,
    plot_loss: Callable[..., Any],
    create_modelcard_and_push: Callable[..., Any],
) -> None:
    """Train, save, log, plot (LF's ``plot_loss`` with the plugin's keys), evaluate, model card."""
    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        trainer.save_model()
        trainer.log_metrics("train", train_result.metrics)
        trainer.save_metrics("train", train_result.metrics)
        trainer.save_state()
        if trainer.is_world_process_zero() and finetuning_args.plot_loss:
            plot_loss(training_args.output_dir, keys=list(plot_keys) + ["eval_loss"])
    if training_args.do_eval:
        metrics = trainer.evaluate(metric_key_prefix="eval")
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    create_modelcard_and_push(trainer, model_args, data_args, training_args, finetuning_args)


def score_attacher(model_args: Any, data_args: Any, training_args: Any, finetuning_args: Any) -> ScoreAttacher | None:
    """``precompute_ref_log_probs: true``: join cached reference scores instead of loading a reference."""
    if not finetuning_args.precompute_ref_log_probs:
        return None
    from ..scores.reference import reference_score_attacher

    return reference_score_attacher(model_args, data_args, training_args, finetuning_args)
