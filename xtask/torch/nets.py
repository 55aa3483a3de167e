"""The paper's three small networks in PyTorch, with the same parameter names as lt-models.

LeNet-300-100, CIFAR ResNet-20 (the paper's "ResNet-18") and CIFAR VGG-19, as OpenLTH defines
them. The `state_dict` keys are the names lt-models gives its tensors (`fc_layers.0.weight`,
`blocks.3.shortcut.0.weight`, `layers.7.running_mean`, ...), so weights move between the two by
name. Used by bench_step.py, the step fixtures (crates/lt-train/tests/fixtures) and the LeNet
reference run (crates/lt-train/reference).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class LeNet(nn.Module):
    """Fully connected: 784 -> 300 -> 100 -> 10, ReLU between."""

    def __init__(self, hidden=(300, 100), classes=10):
        super().__init__()
        widths = [784, *hidden]
        self.fc_layers = nn.ModuleList([nn.Linear(i, o) for i, o in zip(widths[:-1], widths[1:])])
        self.fc = nn.Linear(widths[-1], classes)

    def forward(self, x):
        h = x.flatten(1)
        for layer in self.fc_layers:
            h = F.relu(layer(h))
        return self.fc(h)


def conv3x3(cin, cout, stride=1, bias=False):
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=bias)


class Block(nn.Module):
    """Two 3x3 convolutions with BatchNorm; a 1x1 strided projection when the shape changes."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, kernel_size=1, stride=2, bias=False), nn.BatchNorm2d(cout))
        else:
            self.shortcut = nn.Sequential()

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet-D: a stem, three stages of (D-2)/6 blocks at widths w, 2w, 4w, global average pool."""

    def __init__(self, depth=20, width=16, classes=10):
        super().__init__()
        per_stage = (depth - 2) // 6
        self.conv = conv3x3(3, width)
        self.bn = nn.BatchNorm2d(width)
        blocks, cin = [], width
        for stage in range(3):
            cout = width * 2 ** stage
            for i in range(per_stage):
                blocks.append(Block(cin, cout, 2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        h = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(h.mean(dim=(2, 3)))


VGG19 = (64, 64, 'pool', 128, 128, 'pool', 256, 256, 256, 256, 'pool', 512, 512, 512, 512, 'pool',
         512, 512, 512, 512)


class CifarVgg(nn.Module):
    """CIFAR VGG: (3x3 conv with bias, BatchNorm, ReLU) per entry, 2x2 max pools, a 2x2 average pool, one linear layer."""

    def __init__(self, plan=VGG19, classes=10):
        super().__init__()
        modules, cin = [], 3
        for entry in plan:
            if entry == 'pool':
                modules.append(nn.MaxPool2d(2))
                continue
            modules += [conv3x3(cin, entry, bias=True), nn.BatchNorm2d(entry), nn.ReLU()]
            cin = entry
        self.layers = nn.Sequential(*modules)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(F.avg_pool2d(self.layers(x), 2).flatten(1))


def kaiming(module):
    """Kaiming-normal weights for conv and linear layers (PyTorch's defaults elsewhere)."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(module.weight)


def forward_flops(model, shape):
    """2 x multiply-adds of the conv and linear layers in one example's forward pass."""
    counted = []

    def count(module, _inputs, output):
        if isinstance(module, nn.Conv2d):
            counted.append(2 * module.weight[0].numel() * output[0].numel())
        else:
            counted.append(2 * module.weight.numel())

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *shape))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return sum(counted)
