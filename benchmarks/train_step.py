"""CPU train step: yolojax beside a plain PyTorch transcription of the same network, in one run.

  python benchmarks/train_step.py [--models tiny_yolov2_voc,yolov2_voc] [--image_size 416] [--batch 8]
      [--steps 3] [--repeats 2] [--profile]

For each model (the configs of the same name: Tiny YOLOv2 and YOLOv2 with the passthrough, VOC's 125 outputs) it
times, alternating so that a busy machine slows all alike, on one fixed batch of float32 images in [0, 1]:

  * yolojax, full: the training step as ``experiments/train.py`` runs it (forward, darknet's region loss with its
    targets, backward, the config's SGD with momentum and weight decay, the finiteness check);
  * yolojax, net + MSE: the same Flax model and update with a mean squared error against a fixed random target of
    the output's shape instead of the region loss;
  * PyTorch, net + MSE: the network transcribed below in plain torch (conv without bias + BatchNorm2d + LeakyReLU
    0.1, darknet's max pools, the passthrough's 1x1 conv and space-to-depth), the same loss and
    torch.optim.SGD(momentum, weight_decay); NCHW and channels_last, the faster one counted.

The parameter counts of both networks are printed and must be equal. The ratio is yolojax net + MSE images/s over
PyTorch's (>= 1: yolojax is faster). ``--profile`` adds a jax.profiler trace of the yolojax full step and prints
its most expensive XLA operations. torch is a benchmark-only dependency (the ``bench`` extra).
"""
from __future__ import annotations

import argparse
import collections
import functools
import glob
import gzip
import json
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from torch import nn

from yolojax import cli
from yolojax.config import files
from yolojax.models import build_model
from yolojax.training import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------------------------------------
# The PyTorch transcription (darknet's yolov2-tiny-voc.cfg and yolov2-voc.cfg).


def conv_bn(c_in: int, c_out: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False), nn.BatchNorm2d(c_out, momentum=0.01),
                         nn.LeakyReLU(0.1))


class PoolKeepSize(nn.Module):
    """darknet's size-2 stride-1 maxpool: one -inf row and column at the bottom and right."""

    def forward(self, x):
        return nn.functional.max_pool2d(nn.functional.pad(x, (0, 1, 0, 1), value=float("-inf")), 2, 1)


class TinyYoloV2(nn.Module):
    def __init__(self, outputs: int = 125):
        super().__init__()
        layers, c = [], 3
        for i, f in enumerate((16, 32, 64, 128, 256, 512)):
            layers += [conv_bn(c, f, 3), nn.MaxPool2d(2, 2) if i < 5 else PoolKeepSize()]
            c = f
        self.body = nn.Sequential(*layers, conv_bn(512, 1024, 3), conv_bn(1024, 1024, 3))
        self.head = nn.Conv2d(1024, outputs, 1)

    def forward(self, x):
        return self.head(self.body(x))


class YoloV2(nn.Module):
    def __init__(self, outputs: int = 125):
        super().__init__()
        spec = [(32, 3), "M", (64, 3), "M", (128, 3), (64, 1), (128, 3), "M", (256, 3), (128, 1), (256, 3), "M",
                (512, 3), (256, 1), (512, 3), (256, 1), (512, 3)]
        layers, c = [], 3
        for s in spec:
            if s == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(conv_bn(c, s[0], s[1]))
                c = s[0]
        self.trunk26 = nn.Sequential(*layers)
        self.trunk13 = nn.Sequential(nn.MaxPool2d(2, 2), conv_bn(512, 1024, 3), conv_bn(1024, 512, 1),
                                     conv_bn(512, 1024, 3), conv_bn(1024, 512, 1), conv_bn(512, 1024, 3),
                                     conv_bn(1024, 1024, 3), conv_bn(1024, 1024, 3))
        self.passthrough = conv_bn(512, 64, 1)
        self.head = nn.Sequential(conv_bn(1024 + 256, 1024, 3), nn.Conv2d(1024, outputs, 1))

    def forward(self, x):
        x26 = self.trunk26(x)
        reorg = nn.functional.pixel_unshuffle(self.passthrough(x26), 2)  # space-to-depth: darknet reorg's cost
        return self.head(torch.cat([reorg, self.trunk13(x26)], dim=1))


TORCH_NETS = {"tiny_yolov2": TinyYoloV2, "yolov2": YoloV2}


# ----------------------------------------------------------------------------------------------------------


def _best_rate(fn, steps: int, batch: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return batch * steps / (time.perf_counter() - start)


def yolojax_steps(config, images: np.ndarray, target_shape: tuple[int, ...]):
    """(full step thunk, net + MSE step thunk, parameter count, first-step seconds of each)."""
    mesh = train.make_mesh()
    schedule = lambda step: config.optim.base_lr  # noqa: E731  (the schedule does not change the cost)
    exp_state = train.create_train_state(config, build_model(config.model),
                                         train.make_optimizer(config.optim, schedule), mesh, images.shape[1])
    steps = train.make_steps(config, mesh, exp_state, schedule)
    rng = np.random.default_rng(0)
    b, m = images.shape[0], config.data.max_boxes
    xy, wh = rng.uniform(0.0, 0.6, (b, m, 2)), rng.uniform(0.05, 0.4, (b, m, 2))
    batch = train.shard_batch({"image": images, "boxes": np.concatenate([xy, xy + wh], -1).astype(np.float32),
                               "classes": rng.integers(0, config.model.num_classes, (b, m)).astype(np.int32),
                               "mask": np.arange(m)[None].repeat(b, 0) < 3}, mesh)
    num_params = sum(x.size for x in jax.tree.leaves(exp_state.params))

    tx = optax.chain(optax.add_decayed_weights(config.optim.weight_decay),
                     optax.sgd(config.optim.base_lr, momentum=config.optim.momentum))

    @functools.partial(jax.jit, donate_argnums=(0,))
    def mse_step(carry, images, target):
        params, stats, opt = carry

        def loss_fn(p):
            out, mutated = exp_state.apply_fn({"params": p, "batch_stats": stats}, images, train=True,
                                              mutable=["batch_stats"])
            return jnp.mean((out.astype(jnp.float32).reshape(target.shape) - target) ** 2), mutated["batch_stats"]

        (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt = tx.update(grads, opt, params)
        return (optax.apply_updates(params, updates), new_stats, opt), loss

    target = jnp.asarray(rng.normal(size=target_shape).astype(np.float32))
    dev_images = jnp.asarray(images)
    own = jax.tree.map(jnp.copy, (exp_state.params, exp_state.batch_stats))  # the full step donates its state
    holder = {"state": exp_state, "carry": (*own, tx.init(own[0]))}

    def full():
        holder["state"], metrics = steps.train(holder["state"], batch)
        jax.block_until_ready(metrics)

    def mse():
        holder["carry"], loss = mse_step(holder["carry"], dev_images, target)
        jax.block_until_ready(loss)

    firsts = []
    for fn in (full, mse):
        start = time.perf_counter()
        fn()
        firsts.append(time.perf_counter() - start)
    return full, mse, num_params, firsts, holder, steps, batch


def torch_steps(name: str, config, images: np.ndarray, target_shape: tuple[int, ...]):
    """{"NCHW": thunk, "channels_last": thunk}, parameter count."""
    torch.manual_seed(0)
    thunks = {}
    for layout in ("NCHW", "channels_last"):
        net = TORCH_NETS[name](target_shape[-1]).train()
        x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        target = torch.from_numpy(np.random.default_rng(0).normal(size=target_shape).astype(np.float32))
        target = target.permute(0, 3, 1, 2).contiguous()
        if layout == "channels_last":
            net = net.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.SGD(net.parameters(), lr=config.optim.base_lr, momentum=config.optim.momentum,
                              weight_decay=config.optim.weight_decay)

        def step(net=net, x=x, target=target, opt=opt):
            opt.zero_grad(set_to_none=True)
            loss = torch.mean((net(x) - target) ** 2)
            loss.backward()
            opt.step()

        step()  # first step (allocations)
        thunks[layout] = step
    return thunks, sum(p.numel() for p in net.parameters())


def profile_top(thunk, steps: int, top: int = 15) -> None:
    """jax.profiler trace of ``steps`` calls of ``thunk``; prints the XLA operations by time per step."""
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            for _ in range(steps):
                thunk()
        trace = json.load(gzip.open(glob.glob(f"{d}/**/*.trace.json.gz", recursive=True)[0]))
    per_op, kinds = collections.Counter(), collections.Counter()
    for e in trace["traceEvents"]:
        name = e.get("name", "")
        if e.get("ph") != "X" or name.startswith(("ThunkExecutor", "$", "Pjit", "Slinky", "CommonPjRt")):
            continue
        per_op[name] += e["dur"] / steps / 1e3
        kinds[name.rstrip("0123456789.")] += e["dur"] / steps / 1e3
    print(f"  profile: XLA operations {sum(per_op.values()):.0f} ms per step; by kind: "
          + ", ".join(f"{k} {v:.0f}" for k, v in kinds.most_common(6)))
    for name, ms in per_op.most_common(top):
        print(f"    {ms:7.1f} ms  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny_yolov2_voc,yolov2_voc")
    parser.add_argument("--image_size", type=int, default=416)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="steps per timing")
    parser.add_argument("--repeats", type=int, default=2, help="timings per variant (the best counts)")
    parser.add_argument("--profile", action="store_true", help="print the top XLA operations of the yolojax step")
    args = parser.parse_args()
    cli.keep_freed_memory()  # as the entry points do, before JAX starts its threads (both sides get it)
    print(f"{os.cpu_count()} CPUs, jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); load average {os.getloadavg()[0]:.1f}")
    for name in args.models.split(","):
        config = files.load(os.path.join(REPO, "configs", f"{name}.py"))
        with config.unlocked():
            config.batch_size, config.data.image_size = args.batch, args.image_size
        grid = args.image_size // 32
        target_shape = (args.batch, grid, grid, len(config.model.anchors) * (5 + config.model.num_classes))
        images = np.random.default_rng(1).uniform(0, 1, (args.batch, args.image_size, args.image_size, 3)
                                                  ).astype(np.float32)
        full, mse, jax_params, firsts, holder, steps, batch = yolojax_steps(config, images, target_shape)
        torch_thunks, torch_params = torch_steps(config.model.name, config, images, target_shape)
        variants = {"yolojax full": full, "yolojax net+MSE": mse,
                    **{f"torch net+MSE {k}": v for k, v in torch_thunks.items()}}
        rates = {k: 0.0 for k in variants}
        for _ in range(args.repeats):
            for k, fn in variants.items():
                rates[k] = max(rates[k], _best_rate(fn, args.steps, args.batch))
        torch_best = max(v for k, v in rates.items() if k.startswith("torch"))
        print(f"{name} at {args.image_size} px, batch {args.batch}: parameters yolojax {jax_params:,} / torch "
              f"{torch_params:,}{'' if jax_params == torch_params else '  (DIFFERENT)'}; yolojax first steps "
              f"{firsts[0]:.1f} s / {firsts[1]:.1f} s (compilation)")
        for k, v in rates.items():
            print(f"  {k:28s} {v:6.2f} images/s")
        print(f"  ratio yolojax net+MSE / best torch net+MSE = {rates['yolojax net+MSE'] / torch_best:.2f}; "
              f"yolojax full step / best torch net+MSE = {rates['yolojax full'] / torch_best:.2f}")
        if args.profile:
            profile_top(full, args.steps)


if __name__ == "__main__":
    main()
