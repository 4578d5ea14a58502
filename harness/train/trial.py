"""One trial trained, evaluated and logged: `run_trial`, read top to bottom.

The trial's run is continued when it has an unfinished one of the same configuration with a
usable resume file (its epochs resume from `checkpoints/<spec>/<trial>/last.pt`), else a new run
is made. Under `torchrun` (`harness.train.distributed`) every rank trains and evaluates its
share with DDP; rank 0 alone logs and checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from harness.analysis.complexity import count_parameters, measure_complexity
from harness.analysis.latency import clip_latency_ms
from harness.analysis.metrics import VideoMetrics
from harness.config import Spec, Trial
from harness.config.sections import TrainSection
from harness.data.clips import make_loader
from harness.data.datasets import unreadable_message
from harness.data.splits import DataError
from harness.data.torchcodec_reader import decoder_in_use
from harness.device import device_name
from harness.tracking import NullRunLog, RunLog, Store
from harness.tracking.provenance import provenance_tags
from harness.tracking.schema import (
    CONFIG_HASH_TAG,
    SPEC_ARTIFACT,
    TRACEBACK_ARTIFACT,
    UNREADABLE_ARTIFACT,
    WEIGHTS_ARTIFACT,
    WEIGHTS_FILE,
    WEIGHTS_FOLDER,
    log_results,
    replaced_artifact,
    same_config,
)
from harness.train import distributed
from harness.train.checkpoint import (
    checkpoint_path,
    load_checkpoint,
    save_checkpoint,
    save_weights,
    set_aside,
)
from harness.train.engine import evaluate, train_one_epoch
from harness.train.inputs import (
    TrialData,
    augments_on_device,
    loader_params,
    loader_workers,
    train_loader,
    trial_data,
)
from harness.train.optim import (
    fitted_kernel,
    make_optimizer,
    make_schedule,
    set_trainable,
    step_schedule,
)
from harness.train.stack import stack_report
from harness.train.step import (
    Stepper,
    StepSettings,
    backend_flags,
    compiled,
    prepare_model,
    resolve_settings,
)
from registry import load_pretrained


@dataclass(frozen=True)
class _Context:
    """What every part of one trial reads: the spec and trial, its train section, the process
    group, the speed settings and the loader workers."""

    spec: Spec
    trial: Trial
    train: TrainSection
    group: distributed.Group
    settings: StepSettings
    workers: int  # loader processes (threads when the augmentation runs on the device)
    progress: bool
    augment_on_device: bool = False  # training clips sliced from the cache, augmented there


def run_trial(spec: Spec, trial: Trial, store: Store, *, progress: bool = True) -> None:
    """Train, evaluate and log one trial, resuming from its checkpoint when one exists."""
    train = spec.train_for(trial)
    group = distributed.current()
    settings = resolve_settings(train, group.device)
    workers = loader_workers(spec.dataset.workers, group.device)
    data = trial_data(spec, trial)
    _fresh_device_state(settings, group.device)
    with backend_flags(settings, group.device):
        _seed(trial.seed)
        model = prepare_model(_model(trial, train), settings, group.device)
        settings = fitted_kernel(settings, model, train)  # logged as run, not as asked
        context = _Context(spec, trial, train, group, settings, workers, progress,
                           augments_on_device(spec, data, group.device))  # fmt: skip
        optimizer = make_optimizer(model, train, fused=settings.fused_optimizer)
        schedule = make_schedule(optimizer, train)
        resume = checkpoint_path(spec.name, trial.key)
        run_id, last_epoch = _resume_point(store, context, resume, model, optimizer, schedule)
        stepper = Stepper(compiled(distributed.wrap(model, group), settings), optimizer,
                          settings, group.device, train.grad_clip)  # fmt: skip
        with _open_run(store, trial, group, run_id) as log, _traceback_saved(log):
            if last_epoch is None:
                _log_trial(log, context, model)
                _log_unreadable(log, data, group)
            _train(log, context, model, stepper, schedule, data, _next(last_epoch),
                   _Resume(resume, _owner(store), spec.config_hash(trial)))  # fmt: skip
            log.log_metrics({"epochs_trained": train.epochs})
            _log_replicas(log, model, group)
            _log_evaluation(log, context, model, data)
            if group.main and train.save_checkpoint:  # the final weights: no validation split
                _log_weights(log, model, resume.parent / "weights" / WEIGHTS_FILE)  # to pick by
    if group.main:  # once the run is FINISHED (before, a Ctrl-C would lose the trained model),
        shutil.rmtree(resume.parent, ignore_errors=True)  # no resume point: a sweep keeps none
    distributed.barrier()


def _fresh_device_state(settings: StepSettings, device: torch.device) -> None:
    """What an earlier trial of this process left: its peak memory (an out-of-memory message
    reports this trial's) and its compiled graphs (a sweep of many models would reach dynamo's
    recompile limit and silently fall back to eager)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if settings.compile:
        torch._dynamo.reset()


@dataclass(frozen=True)
class _Resume:
    """Where the trial's resume file goes and what it belongs to."""

    path: Path
    owner: str  # the store and experiment of the run it resumes
    config_hash: str


def _owner(store: Store) -> str:
    return f"{store.uri}#{store.experiment}"


def _resume_point(store: Store, context: _Context, path: Path, model, optimizer,
                  schedule) -> tuple[str | None, int | None]:  # fmt: skip
    """`(run to continue, its last finished epoch)`, decided by rank 0 and shared with the
    other ranks, which then load the same resume file."""
    owner, config = _owner(store), context.spec.config_hash(context.trial)
    decision = None
    if context.group.main:
        decision = _decide(store, context.trial.key, config, path, (model, optimizer, schedule))
    run_id, epoch = distributed.broadcast_from_main(decision)
    if not context.group.main and epoch is not None:
        loaded = load_checkpoint(path, model, optimizer, schedule, owner=owner, config_hash=config)
        if loaded != epoch:  # e.g. a node without the shared checkpoints folder
            raise RuntimeError(f"rank {context.group.rank} could not load {path} (rank 0 did)")
    return run_id, epoch


def _decide(store: Store, key: str, config: str, path: Path, states) -> tuple:
    """The trial's unfinished run made with this configuration is continued from its resume
    file (written for this store, this configuration and this model), or from epoch 0 when it
    has none yet (a new run then starts). A resume file that cannot be used is set aside and a
    new run starts; so does one left with no unfinished run of this configuration here."""
    previous = store.latest_run(key)
    usable = previous is not None and not previous.finished and same_config(previous, config)
    if not usable:
        if path.exists():
            set_aside(path, "this store holds no unfinished run of this configuration for it")
        return None, None
    if not path.exists():  # killed before its first checkpoint: a new run, with this process's
        if previous.status == "RUNNING":  # params (a continued run cannot log params of other
            store.mark_killed(previous.run_id)  # values); the abandoned one ends as KILLED
        return None, None
    epoch = load_checkpoint(path, *states, owner=_owner(store), config_hash=config)
    return (previous.run_id if epoch is not None else None), epoch


def _next(last_epoch: int | None) -> int:
    return 0 if last_epoch is None else last_epoch + 1


def _train(log: RunLog, context: _Context, model, stepper: Stepper, schedule, data: TrialData,
           first: int, resume: _Resume) -> None:  # fmt: skip
    """Epochs `first`… of the trial, each logged and `model` checkpointed (by rank 0)."""
    group, train = context.group, context.train
    loader = train_loader(data, on_device=context.augment_on_device,
                          batch_size=distributed.rank_batch(train.batch_size, group),
                          workers=context.workers, seed=context.trial.seed, device=group.device,
                          rank=group.rank, world=group.world, epochs=train.epochs)  # fmt: skip
    for epoch in range(first, train.epochs):
        loader.sampler.set_epoch(epoch)
        _train_epoch(log, stepper, loader, schedule, epoch, context)
        if group.main:
            save_checkpoint(resume.path, model, stepper.optimizer, schedule, epoch,
                            owner=resume.owner, config_hash=resume.config_hash)  # fmt: skip
        distributed.barrier()


@contextlib.contextmanager
def _traceback_saved(log: RunLog):
    """Whatever ends the trial with an exception leaves its traceback in the run."""
    try:
        yield
    except Exception:
        log.log_text(traceback.format_exc(), TRACEBACK_ARTIFACT)
        raise


def _seed(seed: int) -> None:
    torch.manual_seed(seed)  # every device's generator
    np.random.seed(seed)


def _model(trial: Trial, train) -> torch.nn.Module:
    """The trial's network, with its pretrained weights and only its trainable parts trainable."""
    resolved = trial.resolve()
    model = resolved.build()
    if train.pretrained:
        load_pretrained(model, train.pretrained, classifier=resolved.backbone.classifier,
                        first_conv=resolved.backbone.first_conv)  # fmt: skip
    set_trainable(model, train.trainable)
    return model


def _open_run(store: Store, trial: Trial, group: distributed.Group, run_id: str | None):
    """Rank 0's run: `run_id` continued (a killed process or worker resumes its own run, never
    a duplicate), else a new one. Other ranks log nowhere."""
    if not group.main:
        return contextlib.nullcontext(NullRunLog())
    return store.open_run(trial.key, run_id)


def _train_epoch(log: RunLog, stepper: Stepper, loader, schedule, epoch, context) -> None:
    """One epoch, its statistics averaged over the ranks and logged, the schedule advanced."""
    lr = stepper.optimizer.param_groups[0]["lr"]
    stats = train_one_epoch(stepper, loader, epoch=epoch, sync_every=context.train.sync_every,
                            progress=context.progress)  # fmt: skip
    loss, accuracy = distributed.mean_over_ranks([stats.loss, stats.clip_accuracy])
    step_schedule(schedule, loss)
    log.log_metrics(
        {
            "train_loss": loss,
            "train_clip_accuracy": accuracy,
            "lr": lr,
            "data_seconds": stats.data_seconds,
            "compute_seconds": stats.compute_seconds,
            "replaced_videos": len(stats.replaced),
        },
        step=epoch,
    )
    if stats.replaced:
        log.log_text("\n".join(stats.replaced), replaced_artifact(epoch))


def _log_trial(log: RunLog, context: _Context, model) -> None:
    """Tags (the device and, on CUDA, its stack), params (the resolved trial, its insertion
    points, its train settings as resolved for the device, the loaders), complexity and
    latency, and the resolved spec: what a new run records before it trains."""
    spec, trial, device = context.spec, context.trial, context.group.device
    resolved = trial.resolve()
    log.set_tags({"spec_path": str(spec.path), "spec_hash": spec.content_hash,
                  CONFIG_HASH_TAG: spec.config_hash(trial), "device": device_name(device),
                  "dataset": spec.dataset.name, "train_batch_size": str(context.train.batch_size),
                  "train_lr": str(context.train.lr), "decoder": decoder_in_use(),
                  **provenance_tags()})  # fmt: skip
    params = trial.fields() | {
        "split": trial.split,
        "seed": trial.seed,
        "insertion_points": ",".join(resolved.point_names),
        "train.batch_per_rank": distributed.rank_batch(context.train.batch_size, context.group),
    }
    params |= {f"train.{k}": v for k, v in asdict(context.train).items()}
    params |= context.settings.params() | loader_params(
        context.workers, device, on_device=context.augment_on_device, layout=spec.dataset.layout
    )
    log.log_params(params)
    if device.type == "cuda":
        tags, metrics = stack_report(device)
        log.set_tags(tags)
        log.log_metrics(metrics)
    shape = trial.input_shape(resolved)
    measured = measure_complexity(model, shape)
    flops = measured.totals
    latency_ms = clip_latency_ms(model, shape, device=device, warmup=1, repeats=3)
    log.log_metrics({"params": count_parameters(model), "gflops_fvcore": flops["fvcore"].gflops,
                     "gflops_paper": flops["paper"].gflops,
                     "attention_params": measured.module_sum("params"),
                     "attention_gflops_paper": measured.module_sum("flops_paper") / 1e9,
                     "attention_gflops_fvcore": measured.module_sum("flops_fvcore") / 1e9,
                     "latency_ms": latency_ms})  # fmt: skip
    log.log_text(yaml.safe_dump(spec.resolved, sort_keys=False), SPEC_ARTIFACT)
    model.train()


def _log_weights(log: RunLog, model, path: Path) -> None:
    """The final weights (weights only) as the run's `checkpoint/last.pt`, their size said."""
    size = save_weights(path, model)
    log.log_file(path, WEIGHTS_FOLDER)
    log.log_metrics({"weights_mb": size / 2**20})
    print(f"      weights saved in the run: {size / 2**20:.1f} MB ({WEIGHTS_ARTIFACT})")


def _log_unreadable(log: RunLog, data: TrialData, group: distributed.Group) -> None:
    """Videos in no frame decodes are left out (training) or unscored (evaluation): said on
    the console and kept in the run (count and list)."""
    log.log_metrics({"videos_unreadable": len(data.unreadable)})
    if data.unreadable:
        log.log_text(json.dumps(data.unreadable, indent=1), UNREADABLE_ARTIFACT)
        if group.main:
            print(f"warning: {unreadable_message(data.unreadable, data.videos)}", file=sys.stderr)


def _log_replicas(log: RunLog, model, group: distributed.Group) -> None:
    report = distributed.replica_report(model, group)
    if report is not None:
        metrics, tags = report
        log.log_metrics(metrics)
        log.set_tags(tags)


def _log_evaluation(log: RunLog, context: _Context, model, data: TrialData) -> None:
    """Every rank scores its share of the test clips (with rank 0's BatchNorm statistics, which
    DDP does not average); the shares are merged and logged once."""
    group = context.group
    distributed.share_buffers(model)
    loader = make_loader(distributed.shard(data.eval_set, group),
                         batch_size=context.spec.eval.batch_size, workers=context.workers,
                         shuffle=False)  # fmt: skip
    shares: list[int] = []  # clips scored by each rank

    def merge(accumulator):
        merged, counts = distributed.gather_scores(accumulator)
        shares.extend(counts)
        return merged

    metrics, scores = evaluate(model, loader, num_classes=len(data.classes), device=group.device,
                               settings=context.settings, merge=merge,
                               progress=context.progress)  # fmt: skip
    if group.launched:
        log.set_tags({"ddp_eval_clips": ",".join(map(str, shares))})
    names = [entry.relative for entry in data.test_entries]
    log_results(log, metrics, scores, data.classes, names)
    if metrics.videos_scored == 0:  # logged above for the record; the trial did not evaluate
        raise DataError(f"no test video could be scored ({len(names)} in the test set): check "
                        "them with `harness data check`.")  # fmt: skip
    unscored = [names[v] for v in scores.unscored]
    if group.main:
        print(
            result_line(metrics) + (f"; could not score {', '.join(unscored)}" if unscored else "")
        )


def result_line(metrics: VideoMetrics) -> str:
    """A trial's results as the sweep prints them under its `run` line (top-5 only when there
    are more than 5 classes: with 5 or fewer it is always 1), with the number of videos."""
    classes = len(metrics.per_class_accuracy)
    top5 = f", top-5 {metrics.video_top5:.3f}" if classes > 5 else ""
    return (
        f"      video top-1 {metrics.video_top1:.3f}{top5}, mean class "
        f"{metrics.mean_class_accuracy:.3f} (n = {metrics.videos_scored} test videos)"
    )
