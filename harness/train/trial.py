"""One trial trained, evaluated and logged: `run_trial`, read top to bottom.

The trial's run is continued when it has an unfinished one (its epochs resume from the last
epoch checkpoint, `checkpoints/<spec>/<trial>/last.pt`), else a new run is made. Under `torchrun`
(`harness.train.distributed`) every rank trains its share with DDP; rank 0 alone logs,
checkpoints and evaluates.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import asdict

import numpy as np
import torch
import yaml

from harness.analysis.complexity import count_flops, count_parameters
from harness.analysis.latency import measure_latency
from harness.analysis.metrics import VideoMetrics
from harness.config import Spec, Trial
from harness.data.clips import make_loader
from harness.device import device_name
from harness.tracking import NullRunLog, RunLog, Store
from harness.tracking.provenance import provenance_tags
from harness.tracking.schema import (
    SPEC_ARTIFACT,
    WEIGHTS_FOLDER,
    log_results,
    replaced_artifact,
)
from harness.train import distributed
from harness.train.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from harness.train.engine import evaluate, train_one_epoch
from harness.train.inputs import TrialData, trial_data
from harness.train.optim import make_optimizer, make_schedule, set_trainable, step_schedule
from registry import load_pretrained


def run_trial(spec: Spec, trial: Trial, store: Store, *, progress: bool = True) -> None:
    """Train, evaluate and log one trial, resuming from its checkpoint when one exists."""
    train = spec.train_for(trial)
    group = distributed.current()
    data = trial_data(spec, trial)
    _seed(trial.seed, group.device)
    model = _model(trial, train)
    model.to(group.device)
    optimizer = make_optimizer(model, train)
    schedule = make_schedule(optimizer, train)
    resume = checkpoint_path(spec.name, trial.key)
    last_epoch = load_checkpoint(resume, model, optimizer, schedule)
    loader = make_loader(data.train_set, batch_size=train.batch_size,
                         workers=spec.dataset.workers, shuffle=True, seed=trial.seed,
                         rank=group.rank, world=group.world)  # fmt: skip
    trained = distributed.wrap(model, group)
    with _open_run(store, trial, group) as log:
        if last_epoch is None:
            _log_trial(log, spec, trial, model, group.device)
        start = 0 if last_epoch is None else last_epoch + 1
        for epoch in range(start, train.epochs):
            loader.sampler.set_epoch(epoch)
            _train_epoch(log, trained, loader, optimizer, schedule, epoch, train, progress)
            if group.main:
                save_checkpoint(resume, model, optimizer, schedule, epoch)
            distributed.barrier()
        _log_replicas(log, model, group)
        if group.main:
            _log_evaluation(log, spec, model, group.device, data, progress)
            if train.save_checkpoint:  # the trained weights (no validation split to pick a
                log.log_file(resume, WEIGHTS_FOLDER)  # "best" epoch by)
            # A finished trial needs no resume point; a paper sweep would otherwise keep
            # hundreds of optimizer-laden checkpoints (the weights, if asked for, are logged).
            shutil.rmtree(resume.parent, ignore_errors=True)
    distributed.barrier()


def _seed(seed: int, device: torch.device) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    # As deterministic as the device allows: CUDA's 3D pooling backward has no deterministic
    # kernel, so torch warns there instead of failing; cuDNN autotuning stays on for speed.
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = device.type == "cuda"


def _model(trial: Trial, train) -> torch.nn.Module:
    """The trial's network, with its pretrained weights and only its trainable parts trainable."""
    resolved = trial.resolve()
    model = resolved.build()
    if train.pretrained:
        load_pretrained(model, train.pretrained, classifier=resolved.backbone.classifier,
                        first_conv=resolved.backbone.first_conv)  # fmt: skip
    set_trainable(model, train.trainable)
    return model


def _open_run(store: Store, trial: Trial, group: distributed.Group):
    """Rank 0's run: the trial's unfinished run if there is one (a killed process or worker is
    continued, never duplicated), else a new one. Other ranks log nowhere."""
    if not group.main:
        return contextlib.nullcontext(NullRunLog())
    previous = store.latest_run(trial.key)
    return store.open_run(trial.key, previous.run_id if previous is not None else None)


def _train_epoch(log: RunLog, model, loader, optimizer, schedule, epoch, train, progress) -> None:
    """One epoch, its statistics averaged over the ranks and logged, the schedule advanced."""
    lr = optimizer.param_groups[0]["lr"]
    stats = train_one_epoch(model, loader, optimizer, device=distributed.current().device,
                            epoch=epoch, grad_clip=train.grad_clip, progress=progress)  # fmt: skip
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


def _log_trial(log: RunLog, spec: Spec, trial: Trial, model, device: torch.device) -> None:
    """Tags, params (the resolved trial, its insertion points, its train settings), complexity
    and latency, and the resolved spec: what a new run records before it trains."""
    resolved = trial.resolve()
    log.set_tags({"spec_path": str(spec.path),
                  "spec_hash": spec.content_hash, "device": device_name(device),
                  "dataset": spec.dataset.name, **provenance_tags()})  # fmt: skip
    params = trial.fields() | {
        "split": trial.split,
        "seed": trial.seed,
        "insertion_points": ",".join(resolved.point_names),
    }
    params |= {f"train.{k}": v for k, v in asdict(spec.train_for(trial)).items()}
    log.log_params(params)
    shape = trial.input_shape(resolved)
    flops = count_flops(model, shape)
    latency = measure_latency(model, shape, device=device, batch=2, warmup=1, repeats=3)
    log.log_metrics({"params": count_parameters(model), "gflops_fvcore": flops["fvcore"].gflops,
                     "gflops_paper": flops["paper"].gflops,
                     "latency_ms": latency.ms_per_clip})  # fmt: skip
    log.log_text(yaml.safe_dump(spec.resolved, sort_keys=False), SPEC_ARTIFACT)
    model.train()


def _log_replicas(log: RunLog, model, group: distributed.Group) -> None:
    report = distributed.replica_report(model, group)
    if report is not None:
        metrics, tags = report
        log.log_metrics(metrics)
        log.set_tags(tags)


def _log_evaluation(log: RunLog, spec: Spec, model, device, data: TrialData, progress) -> None:
    loader = make_loader(data.eval_set, batch_size=spec.eval.batch_size,
                         workers=spec.dataset.workers, shuffle=False)  # fmt: skip
    metrics, scores = evaluate(
        model, loader, num_classes=len(data.classes), device=device, progress=progress
    )
    names = [entry.relative for entry in data.test_entries]
    log_results(log, metrics, scores, data.classes, names)
    unscored = [names[v] for v in scores.unscored]
    print(result_line(metrics) + (f"; could not score {', '.join(unscored)}" if unscored else ""))


def result_line(metrics: VideoMetrics) -> str:
    """A trial's results as the sweep prints them under its `run` line."""
    return (
        f"      video top-1 {metrics.video_top1:.3f}, top-5 {metrics.video_top5:.3f}, "
        f"mean class {metrics.mean_class_accuracy:.3f}"
    )
