"""Where EAM's training-step overhead goes on a GPU, and what each way of writing it costs.

EAM at the stage outputs of 3D ResNet-50 cost +18.7 % wall time per step on an H100 (issue 19's
first GPU session, before `GlobalAvgMaxPool`; target <= 5 %). This times EAM's forward plus
backward alone, at each stage output's shape (batch 32, 16x112x112 clips, bf16, channels-last: as
`harness bench train` runs it), for the ways of writing its pooled descriptor below, and prints
the top kernels of the module as
the registry writes it:

- `registry`: `registry.attention.eam.EAM` as it is (its descriptor `GlobalAvgMaxPool`, one
  autograd function with a two-pass backward);
- `autograd`: the same descriptor as `mean + amax`, differentiated by autograd (six passes);
- `compiled`: the registry's module under `torch.compile` (the fused floor, for reference);
- `none`: the identity (the cost of the casts and the timing itself).

    python tools/gpu/eam_profile.py [--batch 32] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from registry.attention.eam import EAM

# (channels, frames, height, width) at the four stage outputs of 3D ResNet-50, 16x112x112 input
STAGES = {
    "layer1": (256, 8, 28, 28),
    "layer2": (512, 4, 14, 14),
    "layer3": (1024, 2, 7, 7),
    "layer4": (2048, 1, 4, 4),
}


def _timed_ms(step, repeats: int = 30) -> float:
    """Median milliseconds of `step()` on the GPU, after warm-up."""
    for _ in range(5):
        step()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _inputs(shape: tuple[int, ...], batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    v = torch.randn(batch, *shape, device="cuda").relu()  # stage outputs follow a ReLU
    v = v.to(memory_format=torch.channels_last_3d).requires_grad_()
    grad = torch.randn_like(v).to(memory_format=torch.channels_last_3d)
    return v, grad


def _step(module, v: torch.Tensor, grad: torch.Tensor):
    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = module(v.to(torch.bfloat16))
        out.backward(grad.to(out.dtype))
        v.grad = None

    return step


def _mean_amax(v, dims):
    return v.mean(dims) + v.amax(dims)


def _eam_with(descriptor):
    """EAM's `st` forward (eqs. 1-3) with `descriptor(v, dims)` as GAP + GMP, no transposes."""

    def forward(self, v):
        conv_c, conv_t = self.spatial.gate.conv, self.temporal.gate.conv
        w_c = torch.sigmoid(conv_c(descriptor(v, (2, 3, 4)).unsqueeze(1)).squeeze(1))
        s = v * w_c[:, :, None, None, None]
        w_t = torch.sigmoid(conv_t(descriptor(s, (1, 3, 4)).unsqueeze(1)).squeeze(1))
        return v + s * w_t[:, None, :, None, None]

    return forward


def _variants() -> dict[str, object]:
    """Name → a function building the module for `channels`."""

    def swapped(descriptor):
        def build(channels):
            module = EAM(channels)
            module.forward = _eam_with(descriptor).__get__(module)
            return module

        return build

    return {
        "registry": lambda channels: EAM(channels),
        "autograd": swapped(_mean_amax),
        "compiled": lambda channels: torch.compile(EAM(channels)),
        "none": lambda channels: torch.nn.Identity(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--json", help="also write the timings here")
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    timings: dict[str, dict[str, float]] = {}
    for name, build in _variants().items():
        timings[name] = {}
        try:
            for stage, shape in STAGES.items():
                v, grad = _inputs(shape, args.batch)
                module = build(shape[0]).cuda()
                timings[name][stage] = _timed_ms(_step(module, v, grad))
        except Exception as error:  # noqa: BLE001 -- e.g. no compiler for `compiled`; go on
            print(f"{name:>10}: failed: {type(error).__name__}: {str(error)[:300]}")
            continue
        timings[name]["all stages"] = sum(timings[name].values())
        print(f"{name:>10}: " + "  ".join(f"{k} {t:6.3f} ms" for k, t in timings[name].items()))
    _profile_registry(args.batch)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(timings, file, indent=2)


def _profile_registry(batch: int) -> None:
    v, grad = _inputs(STAGES["layer1"], batch)
    step = _step(EAM(STAGES["layer1"][0]).cuda(), v, grad)
    for _ in range(5):
        step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profile:
        for _ in range(10):
            step()
        torch.cuda.synchronize()
    print("registry EAM at layer1, 10 steps:")
    print(profile.key_averages().table(sort_by="cuda_time_total", row_limit=18))


if __name__ == "__main__":
    main()
