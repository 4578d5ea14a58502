"""`harness run`: every trial of a spec trained, evaluated and logged, safe to run again.

A trial whose latest MLflow run is FINISHED is skipped. Any other (FAILED, KILLED, or RUNNING left
behind by a killed process) runs again in the same MLflow run, resuming from its last epoch
checkpoint (`checkpoints/<spec>/<trial>/last.pt`). A trial that fails (bad data, NaN loss, out of
memory) does not stop the others; the summary lists finished, skipped and failed trials.
"""

from __future__ import annotations

import csv
import io
import json
import math
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import yaml

from harness.complexity import count_flops, count_parameters
from harness.data.clips import ClipProtocol, EvalClips, FrameReader, TrainClips, make_loader
from harness.data.datasets import (
    DatasetConfig,
    FrameIndex,
    cache_dir,
    open_dataset,
    require_present,
)
from harness.data.splits import DataError
from harness.data.synthetic import PRESETS, write_synthetic
from harness.engine import NonFiniteLoss, evaluate, train_one_epoch
from harness.latency import default_device, measure_latency
from harness.sections import TrainSection
from harness.spec import Spec, SpecError, Trial
from harness.tracking import TRIAL_KEY_TAG, Tracker
from registry import ConfigError, load_pretrained
from registry.checkpoints import is_attention_key


@dataclass
class Summary:
    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def run_spec(
    spec: Spec, tracker: Tracker, *, dry_run: bool = False, progress: bool = True
) -> Summary:
    if spec.dataset is None:
        raise SpecError(f"{spec.path}: key 'dataset' is missing: this spec can only be profiled.")
    summary = Summary()
    if not dry_run:
        preflight(spec)
    for trial in spec.trials:
        status = tracker.status(trial.key)
        if status == "FINISHED":
            summary.skipped.append(trial.key)
            print(f"skip  {trial.key} (finished)")
            continue
        if dry_run:
            print(f"todo  {trial.key} ({(status or 'not started').lower()})")
            continue
        print(f"run   {trial.key}" + (f" (resuming a {status.lower()} run)" if status else ""))
        try:
            run_trial(spec, trial, tracker, progress=progress)
            summary.finished.append(trial.key)
        except (NonFiniteLoss, DataError, torch.cuda.OutOfMemoryError, RuntimeError) as error:
            reason = f"{type(error).__name__}: {error}"
            summary.failed[trial.key] = reason
            print(f"FAIL  {trial.key}: {reason}")
    if dry_run:
        preflight(spec)
    return summary


def preflight(spec: Spec) -> None:
    """Structural problems found before anything trains: a missing pretrained checkpoint, a
    missing root, split files or split entries, a class count that does not match the data. Each
    is one message naming the path or key and what helps."""
    pretrained = spec.train.pretrained
    if pretrained and not Path(pretrained).is_file():
        raise SpecError(
            f"{spec.path}: key 'train.pretrained': checkpoint {pretrained!r} does not exist. Give "
            "the path of a downloaded file (e.g. resnet-50-kinetics.pth); the harness never "
            "downloads weights."
        )
    for split in dict.fromkeys(t.split for t in spec.trials):
        config = dataset_config(spec, split)
        lists, train, test = open_dataset(config)
        require_present(config, train + test)
        wrong = sorted({t.num_classes for t in spec.trials} - {len(lists.classes)})
        if wrong:
            raise SpecError(
                f"{spec.path}: key 'model.num_classes': {wrong[0]} does not match dataset "
                f"{spec.dataset.name} split {split}, which has {len(lists.classes)} classes."
            )


def run_trial(spec: Spec, trial: Trial, tracker: Tracker, *, progress: bool = True) -> None:
    """Train, evaluate and log one trial, resuming from its checkpoint when one exists."""
    train = spec.train
    device = default_device()
    data = _data(spec, trial)
    torch.manual_seed(trial.seed)
    np.random.seed(trial.seed)
    # As deterministic as the device allows: CUDA's 3D pooling backward has no deterministic
    # kernel, so torch warns there instead of failing; cuDNN autotuning stays on for speed.
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    resolved = trial.resolve()
    model = resolved.build()
    if train.pretrained:
        load_pretrained(model, train.pretrained, classifier=resolved.backbone.classifier,
                        first_conv=resolved.backbone.first_conv)  # fmt: skip
    _set_trainable(model, train.trainable)
    model.to(device)
    optimizer = _optimizer(model, train)
    schedule = _schedule(optimizer, train)
    checkpoint_path = Path("checkpoints") / spec.name / trial.key / "last.pt"
    state = _load_checkpoint(checkpoint_path, model, optimizer, schedule)
    previous = tracker.latest_run(trial.key)
    run_id = previous.info.run_id if previous is not None and state is not None else None
    loader = make_loader(data["train_set"], batch_size=train.batch_size,
                         workers=spec.dataset.workers, shuffle=True, seed=trial.seed)  # fmt: skip
    mlflow = tracker.mlflow
    with mlflow.start_run(run_id=run_id, experiment_id=tracker.experiment_id, run_name=trial.key):
        if run_id is None:
            _log_trial(mlflow, spec, trial, resolved, model, device)
        start = state["epoch"] + 1 if state else 0
        for epoch in range(start, train.epochs):
            loader.sampler.set_epoch(epoch)
            lr = optimizer.param_groups[0]["lr"]
            stats = train_one_epoch(model, loader, optimizer, device=device, epoch=epoch,
                                    grad_clip=train.grad_clip, progress=progress)  # fmt: skip
            _step(schedule, stats.loss)
            mlflow.log_metrics(
                {
                    "train_loss": stats.loss,
                    "train_clip_accuracy": stats.clip_accuracy,
                    "lr": lr,
                    "data_seconds": stats.data_seconds,
                    "compute_seconds": stats.compute_seconds,
                    "replaced_videos": len(stats.replaced),
                },  # fmt: skip
                step=epoch,
            )
            if stats.replaced:
                mlflow.log_text("\n".join(stats.replaced), f"replaced/epoch{epoch:03d}.txt")
            _save_checkpoint(checkpoint_path, model, optimizer, schedule, epoch)
        _log_evaluation(mlflow, spec, model, device, data, progress)
        if train.save_checkpoint:  # the trained weights (there is no validation split to pick a
            mlflow.log_artifact(str(checkpoint_path), "checkpoint")  # "best" epoch by)


def dataset_config(spec: Spec, split: int) -> DatasetConfig:
    section = spec.dataset
    root, split_dir = Path(section.root), section.split_dir
    if section.root.startswith("synthetic:"):
        root, split_dir = _synthetic(section.root.removeprefix("synthetic:"), spec)
    return DatasetConfig(
        name=section.name, root=root, split=split,
        split_dir=Path(split_dir) if split_dir else None,
        annotations=Path(section.annotations) if section.annotations else None,
        split_file=Path(section.split_file) if section.split_file else None,
    )  # fmt: skip


def _data(spec: Spec, trial: Trial) -> dict:
    config = dataset_config(spec, trial.split)
    section = spec.dataset
    lists, train, test = open_dataset(config)
    reader = FrameReader(config.root, FrameIndex(config.root).lookup(train + test))
    protocol = ClipProtocol(
        frames=trial.frames, size=trial.size, normalisation=section.normalisation,
        crop=section.crop, eval_clips=spec.eval.clips, even_count=spec.eval.count,
    )  # fmt: skip
    return {
        "classes": lists.classes,
        "test_entries": test,
        "train_set": TrainClips(reader, train, protocol, seed=trial.seed),
        "eval_set": EvalClips(reader, test, protocol),
    }


def _synthetic(preset: str, spec: Spec) -> tuple[Path, Path]:
    if preset not in PRESETS:
        raise SpecError(
            f"{spec.path}: key 'dataset.root': unknown synthetic preset {preset!r}; accepted: "
            f"{', '.join('synthetic:' + p for p in PRESETS)}."
        )
    out = cache_dir() / "datasets" / f"synthetic-{preset}-seed0"
    if not (out / "ucfTrainTestlist" / "testlist03.txt").is_file():
        print(f"generating the synthetic {preset} dataset into {out} (first use)")
        write_synthetic(out, preset, seed=0)
    return out / "UCF-101", out / "ucfTrainTestlist"


def _set_trainable(model: torch.nn.Module, trainable: str | list[str]) -> None:
    """`all`, or names: `attention` (every attention module), or parameter prefixes (`layer4`)."""
    if trainable == "all":
        return
    names = [trainable] if isinstance(trainable, str) else trainable
    for key, parameter in model.named_parameters():
        parameter.requires_grad = any(
            is_attention_key(key) if name == "attention" else key.startswith(f"{name}.")
            for name in names
        )
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"train.trainable {names} selects no parameter of this model.")


def _optimizer(model: torch.nn.Module, train: TrainSection) -> torch.optim.Optimizer:
    parameters = [p for p in model.parameters() if p.requires_grad]
    if train.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=train.lr, weight_decay=train.weight_decay)
    return torch.optim.SGD(
        parameters, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay
    )


def eam_factor(epoch: int, warmup: int, milestones: list[int], gamma: float) -> float:
    """EAM eq. 12 for 1-based epoch t = `epoch` + 1: t/warmup while warming up, then ×gamma per
    milestone passed (lr = 1e-3·t/15 for t ≤ 15; 1e-3 to 45; 1e-4 to 75; 1e-5 to 100)."""
    t = epoch + 1
    if warmup and t <= warmup:
        return t / warmup
    return gamma ** sum(1 for m in milestones if t > m)


def _schedule(optimizer, train: TrainSection):
    if train.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=train.gamma, patience=2)
    if train.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(train.epochs, 1))
    if train.schedule == "eam":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda e: eam_factor(e, train.warmup_epochs, train.milestones, train.gamma)
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)


def _step(schedule, loss: float) -> None:
    if isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
        schedule.step(loss)
    else:
        schedule.step()


def _save_checkpoint(path: Path, model, optimizer, schedule, epoch: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    torch.save(
        {
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "torch_rng": torch.get_rng_state(),
        },  # fmt: skip
        temporary,
    )
    temporary.replace(path)  # a kill mid-write leaves the previous checkpoint intact


def _load_checkpoint(path: Path, model, optimizer, schedule) -> dict | None:
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["torch_rng"])
    return state


def _log_trial(mlflow, spec: Spec, trial: Trial, resolved, model, device) -> None:
    mlflow.set_tags(
        {
            TRIAL_KEY_TAG: trial.key,
            "spec_path": str(spec.path),
            "spec_hash": spec.content_hash,
            "git_commit": _git_commit(),
            "device": _device_name(device),
            "python": platform.python_version(),
            "dataset": spec.dataset.name,
            **{f"version.{name}": _version(name) for name in VERSIONED},
        }
    )
    params = {k: v for k, v in trial.fields().items()}
    params |= {
        "split": trial.split,
        "seed": trial.seed,
        "insertion_points": ",".join(resolved.point_names),
    }
    params |= {f"train.{k}": v for k, v in asdict(spec.train).items()}
    mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
    shape = trial.input_shape(resolved)
    flops = count_flops(model, shape)
    latency = measure_latency(model, shape, device=device, batch=2, warmup=1, repeats=3)
    mlflow.log_metrics(
        {
            "params": count_parameters(model),
            "gflops_fvcore": flops["fvcore"].gflops,
            "gflops_paper": flops["paper"].gflops,
            "latency_ms": latency.ms_per_clip,
        }  # fmt: skip
    )
    mlflow.log_text(yaml.safe_dump(spec.resolved, sort_keys=False), "spec.yaml")
    model.train()


def _log_evaluation(mlflow, spec: Spec, model, device, data, progress: bool) -> None:
    loader = make_loader(data["eval_set"], batch_size=spec.eval.batch_size,
                         workers=spec.dataset.workers, shuffle=False)  # fmt: skip
    classes = data["classes"]
    metrics, scores = evaluate(
        model, loader, num_classes=len(classes), device=device, progress=progress
    )
    mlflow.log_metrics(
        {
            "clip_accuracy": metrics.clip_accuracy,
            "video_top1": metrics.video_top1,
            "video_top5": metrics.video_top5,
            "mean_class_accuracy": metrics.mean_class_accuracy,
            "videos_scored": metrics.videos_scored,
            "videos_unscored": metrics.videos_unscored,
        }  # fmt: skip
    )
    entries = data["test_entries"]
    mlflow.log_text(
        _csv(["class", "accuracy"], zip(classes, metrics.per_class_accuracy, strict=True)),
        "per_class.csv",
    )
    mlflow.log_text(
        _csv(
            ["true \\ predicted", *classes],
            ([c, *row] for c, row in zip(classes, metrics.confusion.tolist(), strict=True)),
        ),
        "confusion.csv",
    )
    per_video = {
        entries[v].relative: {"label": int(scores.labels[v]), "scores": np.round(s, 6).tolist()}
        for v, s in scores.scores.items()
    }
    unscored = [entries[v].relative for v in scores.unscored]
    mlflow.log_text(
        json.dumps({"videos": per_video, "unscored": unscored}), "per_video_scores.json"
    )
    line = (
        f"      video top-1 {metrics.video_top1:.3f}, top-5 {metrics.video_top5:.3f}, "
        f"mean class {metrics.mean_class_accuracy:.3f}"
    )
    print(line + (f"; could not score {', '.join(unscored)}" if unscored else ""))


def _csv(header: list[str], rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if isinstance(v, float) and math.isnan(v) else v for v in row])
    return buffer.getvalue()


VERSIONED = ("torch", "fvcore", "mlflow", "av", "numpy", "attention-harness")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.processor() or platform.machine()}"


def _git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).parent,  # the harness's own checkout, wherever it is run from
        )  # fmt: skip
        return done.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
