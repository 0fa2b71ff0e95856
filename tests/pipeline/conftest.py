"""A toy trained model shared by the pipeline tests (two classes of 8x8 grey images, a smallcnn)."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from medadv_lib.data import ImageSplit
from medadv_lib.models import build_model


def _toy(n, g):
    y = torch.randint(0, 2, (n,), generator=g)
    x = (0.42 + 0.16 * y.float()[:, None, None, None] + 0.12 * torch.randn(n, 1, 8, 8, generator=g)).clamp(0, 1)
    return ImageSplit((x * 255).round().to(torch.uint8), y)


@pytest.fixture(scope="module")
def toy_tm():
    """A ``TrainedModel``-shaped namespace: model, dataset name, train/test splits, cache key."""
    g = torch.Generator().manual_seed(0)
    train, test = _toy(200, g), _toy(80, g)
    torch.manual_seed(0)
    model = build_model("smallcnn", in_channels=1, num_classes=2, image_size=8, dropout=0.3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xf = train.float()
    for _ in range(30):
        idx = torch.randint(0, 200, (32,), generator=g)
        loss = F.cross_entropy(model(xf[idx]), train.labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return SimpleNamespace(model=model, dataset=SimpleNamespace(name="toy"), train=train, test=test,
                           cache=SimpleNamespace(key="model-toy0000000000"))
