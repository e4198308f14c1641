"""The comparison point for `layercalc verify configs/resnet18.yaml`: torch.autograd.gradcheck
(fast_mode=True) on ResNet-18 in float64, batch 1 at 224x224, checking the input gradient alone.

torchvision cannot be installed beside this torch build, so ResNet-18 is written here in plain
torch.nn with torchvision's architecture (BasicBlock, [2, 2, 2, 2], 1x1 stride-2 downsample with
batchnorm, 7x7 stem, 3x3 max pool, 1000 classes): 11,689,512 parameters, as torchvision's.
Run: python bench/gradcheck_resnet18.py   (time the whole process from outside)
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """conv3x3-bn-relu-conv3x3-bn, plus the identity or a 1x1 stride-s conv-bn shortcut, then relu."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.downsample = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.downsample(x))


def resnet18() -> nn.Module:
    """torchvision.models.resnet18's architecture."""
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    c = 64
    for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [BasicBlock(c, c_out, stride), BasicBlock(c_out, c_out, 1)]
        c = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 1000)]
    return nn.Sequential(*layers)


def main() -> None:
    torch.manual_seed(0)
    model = resnet18().double().train()
    assert sum(p.numel() for p in model.parameters()) == 11_689_512
    x = torch.randn(1, 3, 224, 224, dtype=torch.float64, requires_grad=True)
    ok = torch.autograd.gradcheck(model, (x,), fast_mode=True, eps=1e-6, atol=1e-5, rtol=1e-3)
    print(f"gradcheck fast_mode resnet18 input gradient: {'passed' if ok else 'FAILED'}")


if __name__ == "__main__":
    main()
