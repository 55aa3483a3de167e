"""Times PyTorch's training step and evaluation on the networks of nets.py, as `cargo xtask bench
train` times lt's: synthetic inputs of the dataset's shape, the paper's batch and optimizer, the
median of whole steps (zero_grad, forward, loss, backward, optimizer step, and the mask product
with --masked). Prints one JSON object per network.

usage: python bench_step.py [--threads 2] [--steps 20] [--warmup 3] [--models lenet,resnet20,vgg19] [--masked]
                      [--device cpu|cuda:N]
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # run by path (runpy) too
import nets  # noqa: E402

# Timings of the evaluation per run, of which the median counts (xtask/src/bench_train.rs: the same).
EVAL_REPEATS = 5

NETWORKS = {
    # name: (constructor, input shape, batch, optimizer, learning rate)
    'lenet': (nets.LeNet, (1, 28, 28), 60, 'adam', 1.2e-3),
    'resnet20': (nets.CifarResNet, (3, 32, 32), 128, 'sgd', 0.1),
    'vgg19': (nets.CifarVgg, (3, 32, 32), 64, 'sgd', 0.1),
}


def optimizer(kind, params, lr):
    if kind == 'adam':
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)


def time_network(name, args):
    make, shape, batch, kind, lr = NETWORKS[name]
    device = torch.device(args.device)
    model = make()
    model.apply(nets.kaiming)
    model.to(device)
    model.train()
    opt = optimizer(kind, model.parameters(), lr)
    masks = []
    if args.masked:
        # 80% of every conv and linear weight held at zero by a fixed mask.
        for p in model.parameters():
            if p.dim() > 1:
                m = (torch.rand_like(p) > 0.8).float()
                with torch.no_grad():
                    p.mul_(m)
                masks.append((p, m))
    x, y = torch.randn(batch, *shape).to(device), torch.randint(0, 10, (batch,)).to(device)

    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
    times = []
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        with torch.no_grad():
            for p, m in masks:
                p.mul_(m)
        sync()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    # Evaluation: forward passes over 1,000 examples in batches of 500, after one untimed pass;
    # the median of EVAL_REPEATS such timings (one is a few milliseconds for LeNet: noise).
    model.eval()
    xe = torch.randn(500, *shape).to(device)
    evals = []
    with torch.no_grad():
        model(xe)
        sync()
        for _ in range(EVAL_REPEATS):
            start = time.perf_counter()
            model(xe)
            model(xe)
            sync()
            evals.append(time.perf_counter() - start)
    eval_s = statistics.median(evals)
    flops = nets.forward_flops(model, shape)
    return dict(impl='torch', version=torch.__version__, model=name, masked=args.masked, threads=args.threads,
                device=args.device,
                batch=batch, params=sum(p.numel() for p in model.parameters()),
                step_ms_median=round(median * 1e3, 3), step_ms_min=round(min(times) * 1e3, 3),
                train_gflops=round(3 * flops * batch / median / 1e9, 2), eval_images_per_s=round(1000 / eval_s, 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--steps', type=int, default=20)
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--models', default='lenet,resnet20,vgg19')
    ap.add_argument('--masked', action='store_true', help='hold 80%% of each weight at zero with a fixed mask')
    ap.add_argument('--device', default='cpu', help='cpu or cuda:N (PyTorch\'s device string)')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for name in args.models.split(','):
        print(json.dumps(time_network(name, args)), flush=True)


if __name__ == '__main__':
    main()
