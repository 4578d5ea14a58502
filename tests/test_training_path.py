"""The training path as a GPU run takes it, checked on the CPU: one step function for trials and
the benchmark, speed settings resolved per device and restored, loaders sized to the machine,
GPUs handed out one per trial, the stack check, and what each kind of failure does."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from harness.cli import main
from harness.config.sections import TrainSection
from harness.data.cache import build_cache
from harness.data.datasets import DatasetConfig
from harness.data.synthetic import materialise
from harness.execute.gpus import claimed_gpu, gpu_names
from harness.tracking.mlflow_store import MlflowStore
from harness.tracking.schema import TRACEBACK_ARTIFACT
from harness.train import distributed
from harness.train.inputs import loader_workers
from harness.train.stack import BF16_TOLERANCE, conv3d_check
from harness.train.step import (
    Float32Linear,
    Stepper,
    StepSettings,
    backend_flags,
    float32_classifier,
    prepare_model,
    resolve_settings,
)
from registry import ConfigError, build_model
from tests.conftest import ROOT, requires_gpu

QUICKSTART = str(ROOT / "experiments" / "quickstart.yaml")
CUDA, CPU = torch.device("cuda", 0), torch.device("cpu")


@pytest.fixture
def step_calls(monkeypatch) -> list[StepSettings]:
    """The settings of every `Stepper.step` call, wherever it comes from."""
    calls: list[StepSettings] = []
    original = Stepper.step

    def recorded(self, batch, mark=None):
        calls.append(self.settings)
        return original(self, batch, mark)

    monkeypatch.setattr(Stepper, "step", recorded)
    return calls


def _runs(folder: Path, experiment: str = "quickstart_smoke"):
    store = MlflowStore(f"sqlite:///{folder}/mlflow.db", experiment, create=False)
    return store, store.client.search_runs([store.experiment_id])


def test_bench_train_and_run_trial_step_through_the_same_function_and_settings(
    tmp_path, monkeypatch, step_calls, capsys
):
    monkeypatch.chdir(tmp_path)
    run = ["run", QUICKSTART, "--smoke", "--no-progress", "--trial", "*-none-*"]
    assert main(run) == 0
    trial_settings = set(step_calls)
    step_calls.clear()
    root, split_dir = materialise("tiny")  # the quickstart's data, and a clip cache of it
    cache = build_cache(DatasetConfig("synthetic", root, split_dir=split_dir), tmp_path / "cache",
                        short_side=None, workers=1)  # fmt: skip
    bench = ["bench", "train", "resnet3d_10", "--attention", "eam", "--placement",
             "stage_output", "--batch", "2", "--frames", "4", "--size", "16", "--steps", "2",
             "--cache", str(tmp_path / "cache"), "--workers", "1", "--json"]  # fmt: skip
    capsys.readouterr()
    assert main(bench) == 0
    printed = capsys.readouterr()
    result = json.loads(printed.out)
    assert "--steps 2" in printed.err and "mostly noise" in printed.err  # too few to report
    assert trial_settings == {resolve_settings(TrainSection(), CPU)}
    loop = 3 + 2  # the benchmark's warm-up steps and the measured ones
    run_loop, reference_loop, fed_loop = (
        step_calls[:loop], step_calls[loop : 2 * loop], step_calls[2 * loop :],
    )  # fmt: skip
    assert len(fed_loop) == 2 * 3 + (3 + 3), "warm-up past the 3 ready batches, 2x that measured"
    assert set(run_loop) == trial_settings  # the benchmark's first loop is the run's settings
    assert set(reference_loop) == {StepSettings.reference()}
    assert set(fed_loop) == trial_settings  # the cache-fed loop too, on the real loader
    assert result["settings"]["run settings"] == result["settings"]["reference"]  # on a CPU
    _check_bench_report(result)
    assert cache["decoded"] == 250 and result["cache"] == str(tmp_path / "cache")
    fed = result["loops"][2]
    assert fed["name"] == "cache-fed" and fed["data_ms"] > 0  # slicing, then the device's ops
    assert result["fed_steps"] == 6 and result["threads"] == 1
    step_ms = fed["data_ms"] + fed["forward_ms"] + fed["backward_ms"]
    assert result["data_wait"] == pytest.approx(fed["data_ms"] / step_ms)
    _, (logged,) = _runs(tmp_path)
    assert logged.data.params["train.bf16"] == "False"  # resolved, not `None`
    assert logged.data.params["loader.workers"] == "0"


def _check_bench_report(result: dict) -> None:
    """Both loops measured, MFU and the speed-up computed from the measured numbers."""
    run_loop, reference = result["loops"][:2]
    assert (run_loop["name"], reference["name"]) == ("run settings", "reference")
    assert result["input"] == [2, 3, 4, 16, 16]
    for loop in result["loops"]:
        assert loop["clips_per_s"] > 0 and loop["forward_ms"] > 0 and loop["backward_ms"] > 0
        achieved = loop["clips_per_s"] * result["train_gflops_per_clip"] / 1e3  # TFLOP/s
        assert loop["mfu"] == pytest.approx(achieved / result["matmul_tflops"])
        assert loop["peak_memory_mb"] > 0
    assert result["speedup"] == pytest.approx(run_loop["clips_per_s"] / reference["clips_per_s"])
    assert result["matmul_tflops"] > 0 and result["train_gflops_per_clip"] > 0


def test_speed_settings_default_on_for_cuda_off_for_the_cpu():
    on_gpu = resolve_settings(TrainSection(), CUDA)
    assert (on_gpu.bf16, on_gpu.channels_last, on_gpu.fused_optimizer) == (True, True, True)
    assert on_gpu.cudnn_benchmark and not on_gpu.compile
    assert resolve_settings(TrainSection(), CPU) == StepSettings.reference()
    asked = resolve_settings(TrainSection(bf16=False, deterministic=True), CUDA)
    assert not asked.bf16 and asked.deterministic and not asked.cudnn_benchmark
    assert resolve_settings(TrainSection(channels_last=True), CPU).channels_last


def test_backend_flags_are_restored_after_a_deterministic_trial():
    before = (torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled())
    settings = StepSettings(deterministic=True, cudnn_benchmark=True)
    with backend_flags(settings, CPU):
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
    assert (torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled()) == before


def test_the_benchmarks_fp32_reference_turns_tf32_off_and_restores_it():
    """cuDNN convolves fp32 in TF32 by default on a GPU: the plain-fp32 loop the speed-up is
    measured against must not, and a run after it keeps torch's default."""
    default = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    assert default[0], "torch's default: TF32 convolutions"
    assert resolve_settings(TrainSection(), CUDA).ieee_fp32 is False
    with backend_flags(StepSettings.reference(), CPU):
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == default


def test_the_global_batch_must_divide_among_the_ranks():
    two = distributed.Group(0, 2, CPU)
    assert distributed.rank_batch(8, two) == 4
    with pytest.raises(ConfigError, match="train.batch_size 9 .* multiple of 2"):
        distributed.rank_batch(9, two)


def test_loader_workers_follow_the_spec_else_the_cores(monkeypatch):
    assert loader_workers(3, CUDA) == 3
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert loader_workers(None, CUDA) == 7  # 16 cores over 2 ranks, one left for the loop
    monkeypatch.setenv("HARNESS_CONCURRENT_TRIALS", "4")
    assert loader_workers(None, CUDA) == 1
    assert loader_workers(None, CPU) == 2


def _hold_a_gpu(folder: str, seconds: float, log) -> None:
    with claimed_gpu(["uuid-a", "uuid-b"], folder=Path(folder), poll=0.02) as gpu:
        log.put(("start", gpu, time.monotonic()))
        time.sleep(seconds)
        log.put(("end", gpu, time.monotonic()))


def test_four_workers_share_two_gpus_one_trial_at_a_time(tmp_path):
    context = multiprocessing.get_context("fork")
    log = context.Queue()
    workers = [context.Process(target=_hold_a_gpu, args=(str(tmp_path), 0.5, log))
               for _ in range(4)]  # fmt: skip
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    events = sorted((log.get(timeout=5) for _ in range(8)), key=lambda e: e[2])
    holders: dict[int, int] = {0: 0, 1: 0}
    for kind, gpu, _ in events:
        holders[gpu] += 1 if kind == "start" else -1
        assert holders[gpu] <= 1, events  # never two trials on one GPU
    assert {gpu for kind, gpu, _ in events if kind == "start"} == {0, 1}


def test_per_gpu_slots_let_trials_share_when_asked(tmp_path):
    with claimed_gpu(["uuid-a"], per_gpu=2, folder=tmp_path) as first:
        with claimed_gpu(["uuid-a"], per_gpu=2, folder=tmp_path) as second:
            assert first == second == 0


class _Waits(Exception):
    """Raised by a claim's `waiting` callback: the claim found no GPU it may join."""


def _joins(folder: Path, per_gpu: int) -> bool:
    """Whether a trial allowing `per_gpu` per GPU gets GPU a at once (False: it would wait)."""

    def give_up() -> None:
        raise _Waits

    try:
        with claimed_gpu(["uuid-a"], per_gpu=per_gpu, folder=folder, waiting=give_up):
            return True
    except _Waits:
        return False


def test_sweeps_with_different_per_gpu_respect_each_others_limits(tmp_path):
    """Two sweeps side by side: a trial of a one-per-GPU sweep shares its GPU with none, and a
    sharing sweep's trials join only up to the smallest limit among those already there."""
    with claimed_gpu(["uuid-a"], per_gpu=1, folder=tmp_path):
        assert not _joins(tmp_path, per_gpu=3)  # the first asked for the GPU to itself
    with claimed_gpu(["uuid-a"], per_gpu=3, folder=tmp_path):
        assert not _joins(tmp_path, per_gpu=1)  # it wants the GPU to itself: not while shared
        with claimed_gpu(["uuid-a"], per_gpu=2, folder=tmp_path):  # 1 < 2 and 1 < 3: joins
            assert not _joins(tmp_path, per_gpu=3)  # 2 holders: the per_gpu=2 one allows no 3rd
        assert _joins(tmp_path, per_gpu=3)
    assert _joins(tmp_path, per_gpu=1)  # every claim released


def test_a_claim_names_the_physical_gpu_not_its_index(tmp_path):
    """A sweep under CUDA_VISIBLE_DEVICES=1 sees GPU b as its index 0; a sweep beside it that
    sees both gets a (its index 0) and no trial goes to b meanwhile; a third waits, saying so."""
    waits: list = []
    with claimed_gpu(["uuid-b"], folder=tmp_path) as masked:
        with claimed_gpu(["uuid-a", "uuid-b"], folder=tmp_path) as unmasked:
            assert (masked, unmasked) == (0, 0)  # index 0 of each: two different GPUs
            waiter = threading.Thread(target=_claim_once, args=(tmp_path, waits))
            waiter.start()
            waiter.join(0.5)
            assert waiter.is_alive() and waits == ["waiting"]  # a and b both held
    waiter.join(5)
    assert waits == ["waiting", 0]  # a, once its holder ended


@pytest.mark.gpu
@requires_gpu()
def test_gpus_are_named_by_uuid():
    names = gpu_names()
    assert len(set(names)) == len(names) == torch.cuda.device_count()
    assert not any(name.startswith("index") for name in names), names  # the driver gave none


def _claim_once(folder: Path, log: list) -> None:
    with claimed_gpu(["uuid-a", "uuid-b"], folder=folder, poll=0.02,
                     waiting=lambda: log.append("waiting")) as gpu:  # fmt: skip
        log.append(gpu)


@pytest.mark.parametrize("channels_last", [False, True])  # True: the layout a GPU trains in
def test_bf16_conv3d_check_measures_agreement_and_speed(channels_last):
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    check = conv3d_check(CPU, channels=8, frames=4, side=8, repeats=1, channels_last=channels_last)
    assert 0 < check.relative_error < BF16_TOLERANCE and check.agrees
    assert check.speedup > 0
    assert torch.equal(torch.rand(3), expected)  # a trial's draws do not depend on the check


def test_a_programming_error_stops_the_sweep_with_its_traceback_saved(tmp_path, monkeypatch):
    def broken(self, batch, mark=None):
        raise TypeError("a bug in the step")

    monkeypatch.setattr(Stepper, "step", broken)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TypeError, match="a bug in the step"):
        main(["run", QUICKSTART, "--smoke", "--no-progress", "--trial", "*-none-*",
              "--trial", "*-se-*"])  # fmt: skip
    store, runs = _runs(tmp_path)
    assert [run.info.status for run in runs] == ["FAILED"]  # the second trial never started
    saved = Path(
        store.client.download_artifacts(runs[0].info.run_id, TRACEBACK_ARTIFACT, str(tmp_path))
    )
    text = saved.read_text()
    assert "Traceback" in text and "TypeError: a bug in the step" in text


def test_out_of_memory_names_the_trial_frees_memory_and_the_next_trial_runs(
    tmp_path, monkeypatch, capsys
):
    original, calls = Stepper.step, []

    def exhausted(self, batch, mark=None):  # the first trial (none, before se) runs out
        calls.append(1)
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, batch, mark)

    monkeypatch.setattr(Stepper, "step", exhausted)
    monkeypatch.chdir(tmp_path)
    code = main(["run", QUICKSTART, "--smoke", "--no-progress", "--trial", "*-none-*",
                 "--trial", "*-se-*"])  # fmt: skip
    output = capsys.readouterr().out
    assert code == 1, output
    assert "1 finished, 0 skipped (already finished), 1 failed" in output
    assert "out of memory on cpu" in output and "train.batch_size 4" in output
    assert "resnet3d_10-none-stage_output" in output.split("out of memory")[1]


def test_a_model_whose_parameters_sit_out_steps_runs_fused_sgd_as_foreach(tmp_path, monkeypatch):
    """AARM's STAM convolutions get no gradient on a step that takes the highlight branch: fused
    SGD with momentum (a GPU's default; the CPU has the kernel too) then stopped at a later step
    with "expected Tensor as element k in argument 2", as 12 AARM specs' smoke runs did on an
    H100. The run steps with the foreach kernel and logs the kernel it used."""
    monkeypatch.chdir(tmp_path)
    spec = str(ROOT / "experiments" / "aarm_table2.yaml")
    assert main(["run", spec, "--smoke", "--no-progress", "--trial", "*alpha=0.1-in_channels=3*",
                 "--set", "train.fused_optimizer=true"]) == 0  # fmt: skip
    _, (run,) = _runs(tmp_path, "aarm_table2_ucf101_smoke")
    assert run.info.status == "FINISHED"
    assert run.data.params["train.fused_optimizer"] == "False"


def test_fused_kernels_are_kept_where_every_parameter_steps_every_time():
    from harness.train.optim import fused_kernel_fits
    from registry import build_model

    stam = build_model("resnet2d_18", attention="aarm", placement="block", num_classes=5)
    no_highlight = build_model("resnet2d_18", attention="aarm", placement="block",
                               num_classes=5, chi=0.0)  # fmt: skip
    eam = build_model("resnet3d_10", attention="eam", placement="stage_output", num_classes=5)
    assert not fused_kernel_fits(stam, TrainSection())
    assert fused_kernel_fits(stam, TrainSection(optimizer="adamw"))
    assert fused_kernel_fits(stam, TrainSection(momentum=0.0))
    assert fused_kernel_fits(no_highlight, TrainSection())
    assert fused_kernel_fits(eam, TrainSection())


@requires_gpu()
@pytest.mark.gpu
def test_a_cuda_trial_logs_its_stack_and_gpu_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", QUICKSTART, "--smoke", "--no-progress", "--trial", "*-eam-*"]) == 0
    _, (run,) = _runs(tmp_path)
    assert run.data.tags["device"].startswith("cuda: ")
    assert run.data.tags["cuda_version"] == torch.version.cuda
    assert run.data.tags["bf16_conv3d_agrees"] == "true"
    for setting in ("bf16", "channels_last", "fused_optimizer", "cudnn_benchmark"):
        assert run.data.params[f"train.{setting}"] == "True"
    assert run.data.params["loader.pin_memory"] == "True"


@requires_gpu()
@pytest.mark.gpu
def test_torchrun_one_rank_on_nccl_trains_and_evaluates(tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1",
               "--master-port", "29541", "-m", "harness", "run", QUICKSTART, "--smoke",
               "--no-progress", "--trial", "*-none-*"]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    _, (run,) = _runs(tmp_path)
    assert run.info.status == "FINISHED" and "video_top1" in run.data.metrics
    assert run.data.metrics["ddp_world_size"] == 1  # the NCCL group's collectives ran
    assert run.data.tags["ddp_params_identical"] == "true"


def test_more_torchrun_ranks_than_gpus_is_a_config_error_before_nccl(monkeypatch):
    """NCCL needs a GPU per rank: rank 1 of 2 on a one-GPU machine stops with both numbers,
    before `set_device` fails with "invalid device ordinal"."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for name, value in {"RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                        "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=r"started 2 ranks .* has 1 GPU\(s\).*--nproc-per-node 1"):
        distributed.init_from_env()


def test_optimiser_state_takes_the_resumed_parameters_layout():
    """A resume file written on the CPU (contiguous momentum) read by a channels-last model (a
    GPU's run settings): the momentum takes the parameter's layout, values unchanged, as CUDA's
    fused SGD needs."""
    from harness.train.checkpoint import match_parameter_layouts

    def conv():
        torch.manual_seed(0)
        return torch.nn.Conv3d(3, 4, 3)

    saved = conv()
    optimizer = torch.optim.SGD(saved.parameters(), lr=0.1, momentum=0.9)
    saved(torch.randn(1, 3, 4, 6, 6)).sum().backward()
    optimizer.step()
    resumed = conv().to(memory_format=torch.channels_last_3d)
    again = torch.optim.SGD(resumed.parameters(), lr=0.1, momentum=0.9)
    again.load_state_dict(optimizer.state_dict())
    weight, momentum = resumed.weight, again.state[resumed.weight]["momentum_buffer"]
    assert momentum.stride() != weight.stride()  # what load_state_dict alone leaves
    match_parameter_layouts(again)
    moved = again.state[resumed.weight]["momentum_buffer"]
    assert moved.stride() == weight.stride() and torch.equal(moved, momentum)


def _linear_with_adamw(device: str = "cpu", *, fused: bool):
    """A small model, its AdamW (fused or not) and a constant schedule, from seed 0."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, fused=fused)
    return model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)


def test_a_resume_keeps_the_optimiser_kernel_of_this_run(tmp_path):
    """A resume file written by an unfused optimiser (a CPU run) read by a fused one (a GPU's
    run settings): `load_state_dict` alone would put the file's `fused=None` back."""
    from harness.train.checkpoint import load_checkpoint, save_checkpoint

    model, optimizer, schedule = _linear_with_adamw(fused=False)
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    path = tmp_path / "last.pt"
    save_checkpoint(path, model, optimizer, schedule, 0, owner="o", config_hash="h")
    model, optimizer, schedule = _linear_with_adamw(fused=True)
    loaded = []  # what torch read: its `fused` decides where AdamW's `step` goes (CUDA: there)
    load = optimizer.load_state_dict
    optimizer.load_state_dict = lambda state: loaded.append(state["param_groups"]) or load(state)
    assert load_checkpoint(path, model, optimizer, schedule, owner="o", config_hash="h") == 0
    assert [group["fused"] for group in loaded[0]] == [True]
    assert optimizer.param_groups[0]["fused"] is True
    assert optimizer.param_groups[0]["lr"] == 0.1 and optimizer.state  # the rest is the file's


@requires_gpu()
@pytest.mark.gpu
def test_a_cpu_resume_file_steps_a_fused_adamw_on_the_gpu(tmp_path):
    """A run started on the CPU and resumed on a GPU: CUDA's fused AdamW takes its `step`."""
    from harness.train.checkpoint import load_checkpoint, save_checkpoint

    model, optimizer, schedule = _linear_with_adamw("cpu", fused=False)
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    path = tmp_path / "last.pt"
    save_checkpoint(path, model, optimizer, schedule, 0, owner="o", config_hash="h")
    model, optimizer, schedule = _linear_with_adamw("cuda", fused=True)
    assert load_checkpoint(path, model, optimizer, schedule, owner="o", config_hash="h") == 0
    model(torch.randn(3, 4, device="cuda")).sum().backward()
    optimizer.step()
    torch.cuda.synchronize()
    assert optimizer.state[model.weight]["step"].device.type == "cuda"


@requires_gpu()
@pytest.mark.gpu
@pytest.mark.parametrize("attention", ["eam", "cbam", "aarm"])
def test_deterministic_cuda_steps_repeat_bit_for_bit(attention):
    """`train.deterministic` on a GPU with the GPU's speed settings: no op warns that it has no
    deterministic kernel (pytest makes the warning an error), and two runs of three steps from
    the same seed end with the same weights, to the bit."""
    from registry import build_model

    cuda = torch.device("cuda")
    settings = StepSettings(bf16=True, channels_last=True, fused_optimizer=True,
                            deterministic=True)  # fmt: skip

    def weights_after_three_steps() -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = build_model("resnet3d_10", attention=attention, placement="stage_output",
                            num_classes=5)  # fmt: skip
        model = model.to(cuda, memory_format=torch.channels_last_3d)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
        stepper = Stepper(model, optimizer, settings, cuda)
        clips = torch.randn(4, 3, 8, 32, 32, generator=torch.Generator().manual_seed(1))
        batch = {"clip": clips, "label": torch.tensor([0, 1, 2, 3])}
        for _ in range(3):
            stepper.step(batch)
        return [p.detach().cpu() for p in model.parameters()]

    with backend_flags(settings, cuda):
        first, second = weights_after_three_steps(), weights_after_three_steps()
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize(
    ("backbone", "attention", "head", "clip"),
    [("resnet3d_10", "se", "fc", (3, 8, 32, 32)), ("c3d", "none", "fc8", (3, 16, 112, 112)),
     ("vgg16", "se", "classifier.6", (3, 32, 32)), ("resnet2d_18", "se", "fc", (3, 32, 32))],
)  # fmt: skip
def test_under_bf16_the_classifier_computes_in_fp32(backbone, attention, head, clip):
    """The classifier alone (the backbone's registered one) leaves bf16: logits in fp32 from the
    bf16 features, not rounded to 8 bits (steps of 0.0625 between 8 and 16: exact ties between
    classes). SE's own linear layers stay under autocast; the state dict is unchanged."""
    model = build_model(backbone, attention=attention, placement="stage_output", num_classes=7)
    keys = list(model.state_dict())
    assert float32_classifier(model) == head
    classifier = model.get_submodule(head)
    assert isinstance(classifier, Float32Linear) and list(model.state_dict()) == keys
    assert float32_classifier(model) == head  # again: the same one, nothing else changed
    assert sum(isinstance(m, Float32Linear) for m in model.modules()) == 1
    features = []
    classifier.register_forward_pre_hook(lambda module, args: features.append(args[0]))
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(torch.randn(2, *clip))
    assert logits.dtype == torch.float32  # autocast would give bf16
    expected = torch.nn.functional.linear(features[0].float(), classifier.weight, classifier.bias)
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)


def test_prepare_model_makes_the_classifier_fp32_only_for_bf16():
    model = build_model("resnet3d_10", num_classes=5)
    prepare_model(model, StepSettings.reference(), CPU)
    assert type(model.fc) is torch.nn.Linear
    prepare_model(model, replace(StepSettings.reference(), bf16=True), CPU)
    assert type(model.fc) is Float32Linear
