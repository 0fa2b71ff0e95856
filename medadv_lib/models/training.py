"""Seeded training loop and evaluation (accuracy, per-class recall, AUROC, confusion matrix)."""
from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import confusion_matrix, roc_auc_score
from torch import nn
from tqdm import tqdm

log = logging.getLogger(__name__)


def _as_float(images: torch.Tensor) -> torch.Tensor:
    return images.float().div(255) if images.dtype == torch.uint8 else images.float()


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global generator and return a dedicated CPU generator for shuffling/augmentation."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return torch.Generator().manual_seed(seed)


def _augment(x: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random shift by up to ``pad`` pixels (reflect padding) and horizontal flip, per image."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h)).to(x.device)
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w)).to(x.device)
    out = padded[torch.arange(n, device=x.device).view(n, 1, 1, 1), torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1),
                 rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
    flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
    return torch.where(flip.view(n, 1, 1, 1), out.flip(-1), out)


def train_model(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, epochs: int = 10,
                batch_size: int = 64, lr: float = 0.05, weight_decay: float = 5e-4, momentum: float = 0.9,
                augment: bool = True, seed: int = 0, device: str | torch.device = "cpu",
                val: tuple[torch.Tensor, torch.Tensor] | None = None, progress: bool = True) -> list[dict]:
    """Train ``model`` in place with SGD, momentum and cosine decay; return the per-epoch history.

    Parameters
    ----------
    images : torch.Tensor
        uint8 (0-255) or float ([0, 1]) images (N, C, H, W); batches are moved to ``device`` lazily.
    labels : torch.Tensor
        int64 class indices (N,).
    augment : bool
        Random 2-pixel shifts and horizontal flips.
    val : (images, labels), optional
        Evaluated after every epoch (accuracy in the history).

    Returns
    -------
    list of dict
        One entry per epoch: ``epoch``, ``loss``, ``train_accuracy`` and, with ``val``, ``val_accuracy``.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if len(images) < 2:
        raise ValueError("need at least 2 training images")
    gen = seed_everything(seed)
    device = torch.device(device)
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True)
    steps_per_epoch = math.ceil(len(images) / batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                    pct_start=0.15, anneal_strategy="cos")
    history = []
    bar = tqdm(total=epochs * steps_per_epoch, desc="train", disable=not progress, leave=False)
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(images), generator=gen)
        total_loss, correct, seen = 0.0, 0, 0
        for start in range(0, len(images), batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < 2:
                continue  # BatchNorm cannot train on a single image
            x = _as_float(images[idx]).to(device, non_blocking=True)
            y = labels[idx].to(device, non_blocking=True)
            if augment:
                x = _augment(x, gen)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.detach() * len(idx)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(idx)
            bar.update(1)
        entry = {"epoch": epoch, "loss": float(total_loss) / seen, "train_accuracy": float(correct) / seen}
        if val is not None:
            entry["val_accuracy"] = evaluate(model, *val, device=device)["accuracy"]
        history.append(entry)
        bar.set_postfix(loss=f"{entry['loss']:.3f}", acc=f"{entry['train_accuracy']:.3f}")
        log.info("epoch %d: %s", epoch, entry)
    bar.close()
    model.eval()
    return history


@torch.no_grad()
def predict_proba(model: nn.Module, images: torch.Tensor, *, batch_size: int = 256,
                  device: str | torch.device | None = None) -> torch.Tensor:
    """Softmax probabilities (N, K) on the CPU, in eval mode (the model's mode is restored)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = [F.softmax(model(_as_float(images[i:i + batch_size]).to(device)), 1).cpu()
               for i in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out)


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 256,
             device: str | torch.device | None = None) -> dict:
    """Accuracy, per-class recall, AUROC (one-vs-rest macro for K > 2) and the confusion matrix."""
    probs = predict_proba(model, images, batch_size=batch_size, device=device).double().numpy()
    y = labels.numpy()
    k = probs.shape[1]
    pred = probs.argmax(1)
    cm = confusion_matrix(y, pred, labels=list(range(k)))
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(cm.sum(1) > 0, np.diag(cm) / cm.sum(1), np.nan)
    present = np.unique(y)
    if len(present) < 2:
        auroc = float("nan")
    elif k == 2:
        auroc = float(roc_auc_score(y, probs[:, 1]))
    else:
        probs = probs / probs.sum(1, keepdims=True)  # float rounding can break sklearn's sum-to-one check
        auroc = float(roc_auc_score(y, probs, multi_class="ovr", average="macro", labels=list(range(k))))
    return {"accuracy": float((pred == y).mean()), "balanced_accuracy": float(np.nanmean(recall)),
            "per_class_recall": recall.tolist(), "auroc": auroc, "confusion": cm.tolist(), "n": int(len(y))}
