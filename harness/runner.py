"""`harness run`: every trial of a spec trained, evaluated and logged, safe to run again.

A trial whose latest MLflow run is FINISHED is skipped. Any other (FAILED, KILLED, or RUNNING left
behind by a killed process) runs again in the same MLflow run, resuming from its last epoch
checkpoint (`checkpoints/<spec>/<trial>/last.pt`). A trial that fails (bad data, NaN loss, out of
memory) does not stop the others; the summary lists finished, skipped and failed trials.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import yaml

from harness import distributed
from harness.complexity import count_flops, count_parameters
from harness.data.clips import (
    ClipProtocol,
    EvalClips,
    FrameReader,
    TrainClips,
    TSNSegments,
    make_loader,
)
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
from harness.fusion import fuse_finished
from harness.latency import measure_latency
from harness.sections import TrainSection
from harness.spec import Spec, SpecError, Trial
from harness.tracking import TRIAL_KEY_TAG, Tracker
from registry import ConfigError, load_pretrained
from registry.checkpoints import is_attention_key

# What ends one trial without stopping the others (bad data, NaN loss, out of memory).
TRIAL_FAILURES = (
    NonFiniteLoss, DataError, OSError, torch.cuda.OutOfMemoryError, RuntimeError, ValueError,
)  # fmt: skip


@dataclass
class Summary:
    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    fused: list[str] = field(default_factory=list)  # two-stream results logged this time
    missing: list[str] = field(default_factory=list)  # what a dry run found missing


def run_spec(
    spec: Spec,
    tracker: Tracker,
    *,
    dry_run: bool = False,
    progress: bool = True,
    jobs: int = 1,
    scheduler: str | None = None,
) -> Summary:
    """Run every unfinished trial: one after another, in `jobs` local processes (joblib), or
    on the Dask cluster at `scheduler`. The store already exists (the tracker created it), so
    parallel workers never race on its schema."""
    if spec.dataset is None:
        raise SpecError(f"{spec.path}: key 'dataset' is missing: this spec can only be profiled.")
    summary = Summary()
    if not dry_run:
        preflight(spec)
    todo = []
    for trial in spec.trials:
        status = tracker.status(trial.key)
        if status == "FINISHED":
            summary.skipped.append(trial.key)
            print(f"skip  {trial.key} (finished)")
        elif dry_run:
            print(f"todo  {trial.key} ({(status or 'not started').lower()})")
        else:
            todo.append((trial, f" (resuming a {status.lower()} run)" if status else ""))
    if dry_run:
        summary.missing = readiness(spec)
        if not summary.missing:
            preflight(spec)
        return summary
    if jobs > 1 or scheduler:
        from harness.parallel import run_in_parallel

        for trial, resuming in todo:
            print(f"queue {trial.key}{resuming}")
        trials = [trial for trial, _ in todo]
        outcomes = run_in_parallel(spec, trials, tracker.uri, jobs=jobs, scheduler=scheduler)
    else:
        outcomes = []
        for trial, resuming in todo:  # each announced as it starts, its results under it
            print(f"run   {trial.key}{resuming}")
            outcomes.append((trial.key, run_guarded(spec, trial, tracker, progress=progress)))
    for key, failure in outcomes:
        if failure is None:
            summary.finished.append(key)
        else:
            summary.failed[key] = failure
            print(f"FAIL  {key}: {failure}")
    if distributed.current().main:
        summary.fused += fuse_finished(spec, tracker)
    return summary


def run_guarded(spec: Spec, trial: Trial, tracker: Tracker, *, progress: bool) -> str | None:
    """Run one trial; None when it finished, else why it failed (the others carry on)."""
    try:
        run_trial(spec, trial, tracker, progress=progress)
        return None
    except TRIAL_FAILURES as error:
        return f"{type(error).__name__}: {error}"


DATASET_FILES = {
    "hmdb51": "HMDB-51 videos as <class>/<clip>.avi, and the official split files "
    "(testTrainMulti_7030_splits/<class>_test_split<k>.txt)",
    "ucf101": "UCF101 videos as <Class>/v_<Class>_gXX_cYY.avi, and the official split files "
    "(ucfTrainTestlist/classInd.txt, trainlist0k.txt, testlist0k.txt)",
}


def readiness(spec: Spec) -> list[str]:
    """What this machine lacks to run `spec`: data, flow images, pretrained checkpoints; each
    with where it must be and the `harness data` command that prepares or checks it."""
    section, missing = spec.dataset, []
    if not section.root.startswith("synthetic:"):
        paths = [section.root] + [p for p in (section.split_dir, section.annotations) if p]
        absent = [p for p in paths if not Path(p).exists()]
        if absent:
            command = f"harness data check {section.name} --root {section.root}"
            command += f" --split-dir {section.split_dir}" if section.split_dir else ""
            missing.append(
                f"dataset {section.name}: {', '.join(repr(p) for p in absent)} not found. Put the "
                f"{DATASET_FILES.get(section.name, 'dataset')} there (or change dataset.root / "
                f"dataset.split_dir), then check every split entry decodes with `{command}`. "
                f"Optionally decode once to JPEG frames for faster loading: `harness data prepare "
                f"{section.name} --root {section.root} --out <frames folder>`."
            )
        needs_flow = any(t.stream == "flow" for t in spec.trials)
        if needs_flow and not (section.flow_root and Path(section.flow_root).exists()):
            missing.append(
                f"optical flow: dataset.flow_root {section.flow_root!r} not found; flow-stream "
                f"trials need TSN-style flow images: `harness data flow {section.name} --root "
                f"{section.root} --out {section.flow_root or '<flow folder>'}` (TV-L1)."
            )
    for path, users in _pretrained_users(spec).items():
        if not Path(path).is_file():
            missing.append(
                f"pretrained weights: {path!r} not found, needed by {len(users)} trial(s) "
                f"({', '.join(sorted(set(users))[:3])}{', ...' if len(set(users)) > 3 else ''}). "
                "Download the checkpoint named in the spec's comments (Hara et al.'s Kinetics "
                "checkpoints for the 3D ResNets) and put it there; the harness never downloads."
            )
    return missing


def _pretrained_users(spec: Spec) -> dict[str, list[str]]:
    users: dict[str, list[str]] = {}
    for trial in spec.trials:
        path = spec.train_for(trial).pretrained
        if path:
            users.setdefault(path, []).append(f"{trial.backbone} f{trial.frames}")
    return users


def preflight(spec: Spec) -> None:
    """Structural problems found before anything trains: a missing pretrained checkpoint, a
    missing root, split files or split entries, a class count that does not match the data. Each
    is one message naming the path or key and what helps."""
    for pretrained in dict.fromkeys(spec.train_for(t).pretrained for t in spec.trials):
        if pretrained and not Path(pretrained).is_file():
            raise SpecError(
                f"{spec.path}: key 'train.pretrained': checkpoint {pretrained!r} does not exist. "
                "Give the path of a downloaded file (e.g. resnet-50-kinetics.pth); the harness "
                "never downloads weights."
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
    """Train, evaluate and log one trial, resuming from its checkpoint when one exists.

    Under `torchrun` (harness.distributed) every rank trains its share with DDP; rank 0 alone
    logs, checkpoints and evaluates."""
    train = spec.train_for(trial)
    group = distributed.current()
    device = group.device
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
    trained = _parallel(model, group)
    loader = make_loader(data["train_set"], batch_size=train.batch_size,
                         workers=spec.dataset.workers, shuffle=True, seed=trial.seed,
                         rank=group.rank, world=group.world)  # fmt: skip
    mlflow = tracker.mlflow if group.main else SILENT
    with _run_context(tracker, trial, group):
        if state is None and group.main:
            _log_trial(mlflow, spec, trial, resolved, model, device)
        start = state["epoch"] + 1 if state else 0
        for epoch in range(start, train.epochs):
            loader.sampler.set_epoch(epoch)
            lr = optimizer.param_groups[0]["lr"]
            stats = train_one_epoch(trained, loader, optimizer, device=device, epoch=epoch,
                                    grad_clip=train.grad_clip, progress=progress)  # fmt: skip
            loss, accuracy = distributed.mean_over_ranks([stats.loss, stats.clip_accuracy])
            _step(schedule, loss)
            mlflow.log_metrics(
                {
                    "train_loss": loss,
                    "train_clip_accuracy": accuracy,
                    "lr": lr,
                    "data_seconds": stats.data_seconds,
                    "compute_seconds": stats.compute_seconds,
                    "replaced_videos": len(stats.replaced),
                },  # fmt: skip
                step=epoch,
            )
            if stats.replaced:
                mlflow.log_text("\n".join(stats.replaced), f"replaced/epoch{epoch:03d}.txt")
            if group.main:
                _save_checkpoint(checkpoint_path, model, optimizer, schedule, epoch)
            distributed.barrier()
        _check_replicas(mlflow, model, group)
        if group.main:
            _log_evaluation(mlflow, spec, model, device, data, progress)
            if train.save_checkpoint:  # the trained weights (no validation split to pick a
                mlflow.log_artifact(str(checkpoint_path), "checkpoint")  # "best" epoch by)
            # A finished trial needs no resume point; a paper sweep would otherwise keep
            # hundreds of optimizer-laden checkpoints (the weights, if asked for, are in MLflow).
            shutil.rmtree(checkpoint_path.parent, ignore_errors=True)
    distributed.barrier()


def _parallel(model: torch.nn.Module, group: distributed.Group) -> torch.nn.Module:
    """The module the training loop calls: DDP around `model` when there are several ranks."""
    if group.world == 1:
        return model
    ids = [group.device.index] if group.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def _run_context(tracker: Tracker, trial: Trial, group: distributed.Group):
    """Rank 0's MLflow run: the trial's unfinished run if there is one (a killed process or
    worker is continued, never duplicated), else a new one. Other ranks log nothing."""
    if not group.main:
        return contextlib.nullcontext()
    previous = tracker.latest_run(trial.key)
    run_id = previous.info.run_id if previous is not None else None
    return tracker.mlflow.start_run(
        run_id=run_id, experiment_id=tracker.experiment_id, run_name=trial.key
    )


def _check_replicas(mlflow, model: torch.nn.Module, group: distributed.Group) -> None:
    """Under DDP, log whether every rank ended with the same parameters."""
    if group.world == 1:
        return
    checksums = distributed.parameter_checksums(model)
    mlflow.log_metric("ddp_world_size", group.world)
    mlflow.set_tags({"ddp_params_identical": str(len(set(checksums)) == 1).lower(),
                     "ddp_param_checksums": ",".join(f"{c:.10g}" for c in checksums)})  # fmt: skip


class _Silent:
    """What ranks other than 0 log to: nothing."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


SILENT = _Silent()


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
    """Training and test sets: clips for 3D backbones, TSN segments for 2D ones."""
    config = dataset_config(spec, trial.split)
    section = spec.dataset
    lists, train, test = open_dataset(config)
    if section.subset:
        train, test = _per_class(train, section.subset), _per_class(test, section.subset)
    reader = FrameReader(config.root, FrameIndex(config.root).lookup(train + test))
    data = {"classes": lists.classes, "test_entries": test}
    if trial.resolve().backbone.dims == 2:
        flow_length = _flow_length(trial)
        common = {
            "modality": "flow" if flow_length else "rgb", "size": trial.size,
            "flow_root": _flow_root(spec, config) if flow_length else None,
            "flow_length": flow_length or 1,
        }  # fmt: skip
        return data | {
            "train_set": TSNSegments(
                reader, train, train=True, segments=section.segments, seed=trial.seed, **common
            ),  # fmt: skip
            "eval_set": TSNSegments(reader, test, train=False, segments=spec.eval.count, **common),
        }
    protocol = ClipProtocol(
        frames=trial.frames, size=trial.size, normalisation=section.normalisation,
        crop=section.crop, eval_clips=spec.eval.clips, even_count=spec.eval.count,
    )  # fmt: skip
    return data | {
        "train_set": TrainClips(reader, train, protocol, seed=trial.seed),
        "eval_set": EvalClips(reader, test, protocol),
    }


def _per_class(entries: list, count: int) -> list:
    """The first `count` entries of each class, in list order."""
    taken: dict[int, int] = {}
    kept = []
    for entry in entries:
        if taken.get(entry.label, 0) < count:
            taken[entry.label] = taken.get(entry.label, 0) + 1
            kept.append(entry)
    return kept


def _flow_length(trial: Trial) -> int:
    """Frames of flow stacked into a 2D model's input: 0 for RGB (3 channels), else channels/2."""
    channels = dict(trial.options).get("in_channels", 3)
    return 0 if channels == 3 else channels // 2


def _flow_root(spec: Spec, config: DatasetConfig) -> Path:
    if spec.dataset.root.startswith("synthetic:"):
        return _synthetic_flow(config)
    if spec.dataset.flow_root is None:
        raise SpecError(
            f"{spec.path}: key 'dataset.flow_root' is missing: flow-stream trials (in_channels "
            "!= 3) read TSN-style flow images. Compute them with `harness data flow` and give "
            "their folder."
        )
    return Path(spec.dataset.flow_root)


def _synthetic_flow(config: DatasetConfig) -> Path:
    """Flow of a synthetic dataset, computed into the cache on first use."""
    from harness.data.prepare import compute_flow

    out = config.root.parent / "flow-farneback"
    marker = out / ".complete"
    if not marker.is_file():
        print(f"computing optical flow of the synthetic dataset into {out} (first use)")
        compute_flow(replace(config, split=1), out, method="farneback")
        marker.write_text("done\n")
    return out


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
    params |= {f"train.{k}": v for k, v in asdict(spec.train_for(trial)).items()}
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
    names = [entry.relative for entry in data["test_entries"]]
    log_results(mlflow, metrics, scores, classes, names)


def log_results(mlflow, metrics, scores, classes: list[str], names: list[str]) -> None:
    """Final metrics and the per-class, confusion and per-video-score artifacts of one run."""
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
        names[v]: {"label": int(scores.labels[v]), "scores": np.round(s, 6).tolist()}
        for v, s in scores.scores.items()
    }
    unscored = [names[v] for v in scores.unscored]
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
