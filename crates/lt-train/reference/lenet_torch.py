"""The paper's LeNet-300-100 protocol in PyTorch, for comparing accuracy with `lt train`.

Same network (xtask/torch/nets.py; PyTorch from xtask/torch/setup.sh), Kaiming-normal weights, Adam 1.2e-3, batch 60,
50,000 iterations, inputs normalized with the dataset's mean/std (datasets/*.toml), no
augmentation, each epoch shuffled without replacement; test accuracy every 5,000 iterations.

usage: python lenet_torch.py [--dir /usr/share/datasets/fashion-mnist] [--mean 0.2860 --std 0.3530] [--seed 0]
"""
import argparse, gzip, json, os, sys, time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '../../../xtask/torch'))
import nets  # noqa: E402


def idx(path):
    with gzip.open(path) as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--dir', default='/usr/share/datasets/fashion-mnist')
    ap.add_argument('--mean', type=float, default=0.2860)
    ap.add_argument('--std', type=float, default=0.3530)
    ap.add_argument('--iterations', type=int, default=50_000)
    ap.add_argument('--seed', type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    load = lambda name: idx(os.path.join(args.dir, name))
    norm = lambda x: torch.from_numpy(((x.astype(np.float32) / 255.0) - args.mean) / args.std).unsqueeze(1)
    xtr, ytr = norm(load('train-images-idx3-ubyte.gz')), torch.from_numpy(load('train-labels-idx1-ubyte.gz').astype(np.int64))
    xte, yte = norm(load('t10k-images-idx3-ubyte.gz')), torch.from_numpy(load('t10k-labels-idx1-ubyte.gz').astype(np.int64))
    model = nets.LeNet()
    model.apply(nets.kaiming)
    opt = torch.optim.Adam(model.parameters(), lr=1.2e-3)
    n, b, t, start = len(xtr), 60, 0, time.time()
    while t < args.iterations:
        perm = torch.randperm(n)
        for i in range(0, n, b):
            if t == args.iterations:
                break
            idx_ = perm[i:i + b]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(xtr[idx_]), ytr[idx_]).backward()
            opt.step()
            t += 1
            if t % 5000 == 0:
                with torch.no_grad():
                    acc = (model(xte).argmax(1) == yte).float().mean().item()
                print(json.dumps({'iteration': t, 'test_accuracy': round(acc, 4), 'elapsed_s': round(time.time() - start, 1)}), flush=True)


if __name__ == '__main__':
    main()
