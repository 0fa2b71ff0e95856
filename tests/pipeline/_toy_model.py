"""A toy trained model for the pipeline tests (two classes of 8x8 grey images, a smallcnn); imported by file name."""
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from medadv_lib.data import ImageSplit
from medadv_lib.models import build_model


def _toy(n, g):
    y = torch.randint(0, 2, (n,), generator=g)
    x = (0.42 + 0.16 * y.float()[:, None, None, None] + 0.12 * torch.randn(n, 1, 8, 8, generator=g)).clamp(0, 1)
    return ImageSplit((x * 255).round().to(torch.uint8), y)


def toy_trained_model(n_train: int = 200, n_test: int = 80, *, dropout: float = 0.3, steps: int = 30):
    """A ``TrainedModel``-shaped namespace: model, dataset name, train/test splits, cache key (seeded)."""
    g = torch.Generator().manual_seed(0)
    train, test = _toy(n_train, g), _toy(n_test, g)
    torch.manual_seed(0)
    model = build_model("smallcnn", in_channels=1, num_classes=2, image_size=8, dropout=dropout)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xf = train.float()
    for _ in range(steps):
        idx = torch.randint(0, n_train, (32,), generator=g)
        loss = F.cross_entropy(model(xf[idx]), train.labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return SimpleNamespace(model=model, dataset=SimpleNamespace(name="toy"), train=train, test=test,
                           cache=SimpleNamespace(key="model-toy0000000000"))
