"""A faster evaluation copy of a classifier for the attack loop: BatchNorm folded into convolutions.

During an attack the model is in eval mode, where every BatchNorm is a per-channel affine map
``y = (x - mean) / sqrt(var + eps) * gamma + beta``. When it directly follows a convolution, the map
can be folded into that convolution's weight and bias (conv-BN folding), which removes the
BatchNorm's forward and backward pass from every attack step. The result is the same function up to
float rounding (the fold is computed in float64 and rounded once to the model's dtype).

The user's model is never modified: :func:`build_eval_copy` folds a deep copy. Hooks travel with the
copy (``copy.deepcopy`` copies the hook dictionaries); closures in those hooks that refer to the
original model or its modules (e.g. :class:`~medadv_lib.models.FeatureModel`'s feature taps) are
re-pointed to the copy's objects, so feature taps keep working on the copy. A pair is folded only
when it is provably safe:

* exact types ``Conv{1,2,3}d`` followed by ``BatchNorm{1,2,3}d`` with running statistics (a
  BatchNorm without them normalises with batch statistics even in eval mode, which is no affine map);
* neither module carries hooks (a hook on the convolution would see the folded output; a tap on the
  BatchNorm would vanish) and neither is registered twice in the module tree;
* inside a plain ``nn.Sequential`` the two are consecutive; in any other module, a shallow
  ``torch.fx`` trace of that module's own ``forward`` (children as leaves) shows the convolution
  called once, its output used only by the BatchNorm, and the BatchNorm called once on it. A module
  whose ``forward`` cannot be traced is left alone; a module (or its weights) used by any other
  traced forward is left alone.

On the CPU the copy is also stored channels-last (``torch.channels_last``) when it has 2-D
convolutions: oneDNN then skips the layout reorders around every convolution and max-pool (measured
on ResNet-18, 32 px, batch 64, one thread: 1.15x per attack step from folding alone, 1.23x with
channels-last as well), again with the same results up to float rounding. A ReLU that directly
follows a folded pair inside an ``nn.Sequential`` is made in-place (``smallcnn``: 1.7x in all).

:class:`EvalCopyCache` keeps one copy per model (weakly keyed) and rebuilds it whenever the
model's modules, hooks, parameters or buffers change: identities, storage pointers and autograd
version counters catch re-assignment, ``.to()`` and in-place updates (optimiser steps,
``load_state_dict``, BatchNorm running statistics); a per-tensor sum additionally catches writes
through ``.data`` that bypass the version counters.

A model that changes between *every* pair of calls (a training loop that attacks each mini-batch:
every optimiser step bumps the version counters) would make the cache rebuild a deep copy, a
``torch.fx`` trace and the fold on every call, costing more than folding saves. The cache therefore
counts copies that were replaced before any reuse; after :attr:`EvalCopyCache.max_wasted_builds`
such copies in a row it stops building for that model (the attack runs unfused; one ``logger.info``
line says so) until the model is seen unchanged on :attr:`EvalCopyCache.stable_calls` consecutive
calls (training has stopped), when a copy is built again.
"""
from __future__ import annotations

import copy
import itertools
import logging
import threading
import types
import warnings
import weakref
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["EvalCopy", "EvalCopyCache", "build_eval_copy", "fold_conv_bn_"]

logger = logging.getLogger(__name__)

_PAIRS = {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Conv3d: nn.BatchNorm3d}
_BATCHNORMS = frozenset(_PAIRS.values())
_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
               "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called")


@dataclass
class EvalCopy:
    """A folded evaluation copy and what was done to it (for logs and the benchmark)."""

    model: nn.Module
    folded: int
    channels_last: bool
    inplace_relus: int = 0

    def describe(self) -> str:
        parts = [f"{self.folded} BatchNorm(s) folded into convolutions"]
        if self.inplace_relus:
            parts.append(f"{self.inplace_relus} ReLU(s) after them made in-place")
        if self.channels_last:
            parts.append("channels-last weights")
        return ", ".join(parts)


# ---------------------------------------------------------------------------------------------- copy
def _has_hooks(module: nn.Module) -> bool:
    return any(getattr(module, name, None) for name in ("_forward_hooks", "_forward_pre_hooks",
                                                           "_backward_hooks", "_backward_pre_hooks"))


def _repoint(fn, memo: dict):
    """``fn`` with closure cells that hold deep-copied objects pointing at their copies."""
    if not isinstance(fn, types.FunctionType) or not fn.__closure__:
        return fn
    cells, changed = [], False
    for cell in fn.__closure__:
        try:
            content = cell.cell_contents
        except ValueError:  # empty cell
            cells.append(cell)
            continue
        replacement = memo.get(id(content), content)
        if replacement is not content:
            cells.append(types.CellType(replacement))
            changed = True
        else:
            cells.append(cell)
    if not changed:
        return fn
    new = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, tuple(cells))
    new.__kwdefaults__ = fn.__kwdefaults__
    new.__dict__.update(fn.__dict__)
    new.__qualname__ = fn.__qualname__
    return new


def deepcopy_with_hooks(model: nn.Module) -> nn.Module:
    """``copy.deepcopy(model)`` whose hook closures refer to the copy instead of the original."""
    memo: dict = {}
    clone = copy.deepcopy(model, memo)
    for module in clone.modules():
        for name in _HOOK_DICTS:
            hooks = module.__dict__.get(name)
            if not hooks or name.endswith(("_with_kwargs", "_always_called")):
                continue  # the last two map hook ids to flags
            for key, fn in list(hooks.items()):
                hooks[key] = _repoint(fn, memo)
    return clone


# ---------------------------------------------------------------------------------------------- fold
class _ShallowTracer(torch.fx.Tracer):
    """Traces one module's own ``forward``; every submodule call stays a ``call_module`` node."""

    def is_leaf_module(self, module, qualified_name):
        return True


def _module_of(root: nn.Module, target: str):
    try:
        return root.get_submodule(target)
    except AttributeError:
        return None


def _owner_of_attr(root: nn.Module, target: str):
    module_path, _, _ = target.rpartition(".")
    return _module_of(root, module_path) if module_path else root


def _foldable(conv, bn, uses: Counter) -> bool:
    if _PAIRS.get(type(conv)) is not type(bn) or type(bn) not in _BATCHNORMS:
        return False
    if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
        return False
    if bn.num_features != conv.out_channels or not conv.weight.is_floating_point():
        return False
    if _has_hooks(conv) or _has_hooks(bn):
        return False
    return uses[id(conv)] == 1 and uses[id(bn)] == 1


def _candidate_pairs(root: nn.Module):
    """(parent, conv_name, bn_name) for every safely foldable pair, plus modules used elsewhere."""
    uses = Counter(id(m) for _, m in root.named_modules(remove_duplicate=False))
    pairs, external = [], Counter()  # external: calls / weight reads of a module from a traced forward
    for parent in root.modules():
        children = dict(parent.named_children())
        if not children:
            continue
        if type(parent) in (nn.Sequential, nn.ModuleList, nn.ModuleDict):
            if type(parent) is nn.Sequential:
                names = list(children)
                pairs += [(parent, a, b) for a, b in itertools.pairwise(names)
                          if _foldable(children[a], children[b], uses)]
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                graph = _ShallowTracer().trace(parent)
        except Exception as err:  # noqa: BLE001 - any untraceable forward just keeps its BatchNorms
            logger.debug("BN folding: cannot trace %s (%s)", type(parent).__name__, err)
            continue
        calls = Counter()
        for node in graph.nodes:
            if node.op == "call_module":
                calls[node.target] += 1
                module = _module_of(parent, node.target)
                if module is not None and "." in node.target:  # a grandchild called directly
                    external[id(module)] += 1
            elif node.op == "get_attr":
                owner = _owner_of_attr(parent, node.target)
                if owner is not None and owner is not parent:
                    external[id(owner)] += 1
        for node in graph.nodes:
            if node.op != "call_module" or type(children.get(node.target)) not in _BATCHNORMS:
                continue
            if len(node.args) != 1 or node.kwargs:
                continue
            src = node.args[0]
            if not isinstance(src, torch.fx.Node) or src.op != "call_module" or src.target not in children:
                continue
            if len(src.users) != 1 or calls[src.target] != 1 or calls[node.target] != 1:
                continue
            if _foldable(children[src.target], children[node.target], uses):
                pairs.append((parent, src.target, node.target))
    return [p for p in pairs if not external[id(getattr(p[0], p[1]))] and not external[id(getattr(p[0], p[2]))]]


@torch.no_grad()
def _fold_pair(conv: nn.Module, bn: nn.Module) -> None:
    weight = conv.weight
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    bias = conv.bias.double() * scale if conv.bias is not None else 0.0
    new_weight = weight.double() * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    conv.weight = nn.Parameter(new_weight.to(weight.dtype), requires_grad=False)
    conv.bias = nn.Parameter((bias + shift).to(device=weight.device, dtype=weight.dtype), requires_grad=False)


def fold_conv_bn_(model: nn.Module, *, inplace_relu: bool = False) -> tuple[int, int]:
    """Fold, in place and in eval semantics, every safe conv->BatchNorm pair.

    Each folded BatchNorm is replaced by ``nn.Identity`` (so ``nn.Sequential`` indices and module
    names stay valid). Only call this on a copy in eval mode: in train mode the BatchNorms would
    have normalised with batch statistics. With ``inplace_relu``, a hook-free, unshared ``nn.ReLU``
    that follows a folded pair inside an ``nn.Sequential`` is made in-place: its input is then the
    convolution's output, which nothing else sees (the convolution has no hooks) and whose autograd
    node does not need it (torchvision's ResNets use in-place ReLUs already).

    Returns
    -------
    (folded, inplace) : tuple of int
        Numbers of folded pairs and of ReLUs made in-place.
    """
    pairs = _candidate_pairs(model)
    uses = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
    inplace = 0
    for parent, conv_name, bn_name in pairs:
        conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
        _fold_pair(conv, bn)
        if isinstance(parent, nn.Sequential):
            names = list(parent._modules)
            at = names.index(bn_name)
            parent[at] = nn.Identity()
            after = parent[at + 1] if at + 1 < len(names) else None
            if (inplace_relu and type(after) is nn.ReLU and not after.inplace and not _has_hooks(after)
                    and uses[id(after)] == 1):
                after.inplace = True
                inplace += 1
        else:
            setattr(parent, bn_name, nn.Identity())
    return len(pairs), inplace


def _on_cpu(model: nn.Module) -> bool:
    tensors = [*model.parameters(), *model.buffers()]
    return bool(tensors) and all(t.device.type == "cpu" for t in tensors)


def build_eval_copy(model: nn.Module, *, channels_last: bool | None = None) -> EvalCopy | None:
    """A folded eval-mode copy of ``model`` with frozen parameters, or ``None`` when nothing folds.

    Parameters
    ----------
    model : nn.Module
        Left untouched.
    channels_last : bool, optional
        Store the copy's 4-D weights channels-last; ``None`` (default) does so on the CPU when the
        model has 2-D convolutions.
    """
    if not any(type(m) in _BATCHNORMS for m in model.modules()):
        return None
    clone = deepcopy_with_hooks(model)
    clone.eval()
    folded, inplace = fold_conv_bn_(clone, inplace_relu=True)
    if not folded:
        return None
    for p in clone.parameters():
        p.requires_grad_(False)
    if channels_last is None:
        channels_last = _on_cpu(clone) and any(type(m) is nn.Conv2d for m in clone.modules())
    if channels_last:
        clone = clone.to(memory_format=torch.channels_last)
    return EvalCopy(clone, folded, bool(channels_last), inplace)


# ---------------------------------------------------------------------------------------------- cache
def _state_key(model: nn.Module):
    """Identity of everything the copy depends on, without reading tensor contents."""
    modules = tuple((id(m), type(m), *(len(getattr(m, name, ()) or ()) for name in _HOOK_DICTS[:4]))
                    for m in model.modules())
    tensors = [*model.parameters(), *model.buffers()]
    return modules, tuple((id(t), t.data_ptr(), t._version, t.dtype, t.device, tuple(t.shape)) for t in tensors)


@torch.no_grad()
def _fingerprint(model: nn.Module) -> torch.Tensor | None:
    sums = [t.detach().sum().double().reshape(1) for t in (*model.parameters(), *model.buffers())
            if t.is_floating_point()]
    return torch.cat(sums).cpu() if sums else None


@dataclass
class _Entry:
    key: tuple
    fingerprint: torch.Tensor | None
    built: EvalCopy | None
    reused: bool = False  # has the current copy served a second call?
    wasted: int = 0  # copies in a row replaced before any reuse
    volatile: bool = False  # changes every call: build nothing until it is stable again
    unchanged: int = 0  # consecutive unchanged calls while volatile
    logged: bool = False


class EvalCopyCache:
    """One :class:`EvalCopy` per model, rebuilt when the model changes (see the module docstring).

    Attributes
    ----------
    max_wasted_builds : int, default 2
        Copies in a row that are replaced before a second use after which the model counts as
        changing between calls and runs unfused.
    stable_calls : int, default 2
        Consecutive calls that see such a model unchanged before a copy is built again.
    builds : int
        Number of copies built so far (for tests and the benchmark).
    """

    max_wasted_builds: int = 2
    stable_calls: int = 2

    def __init__(self):
        self._entries: weakref.WeakKeyDictionary[nn.Module, _Entry] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self.builds = 0

    def get(self, model: nn.Module, *, channels_last: bool | None = None) -> EvalCopy | None:
        try:
            key = (_state_key(model), channels_last)
            fingerprint = _fingerprint(model)
        except RuntimeError:  # e.g. inference tensors carry no version counter: do not optimise
            return None
        with self._lock:
            entry = self._entries.get(model)
        unchanged = entry is not None and entry.key == key and _same(entry.fingerprint, fingerprint)
        if unchanged and not entry.volatile:
            entry.reused = True
            entry.wasted = 0
            return entry.built
        if entry is not None and not entry.volatile:
            entry.wasted = entry.wasted + 1 if (entry.built is not None and not entry.reused) else 0
            if entry.wasted >= self.max_wasted_builds:
                entry.volatile = True
                if not entry.logged:
                    logger.info("BN folding off for %s: it changed between each of the last %d calls (a training "
                                "loop?); attacks on it run unfused until it stops changing.",
                                type(model).__name__, entry.wasted + 1)
                    entry.logged = True
        if entry is not None and entry.volatile:
            entry.unchanged = entry.unchanged + 1 if unchanged else 0
            entry.key, entry.fingerprint, entry.built = key, fingerprint, None
            if entry.unchanged < self.stable_calls:
                return None
            entry.volatile, entry.unchanged, entry.wasted = False, 0, 0  # stable again: fold
        built = self._build(model, channels_last)
        with self._lock:
            if entry is None:
                self._entries[model] = _Entry(key, fingerprint, built)
            else:
                entry.key, entry.fingerprint, entry.built, entry.reused = key, fingerprint, built, False
        return built

    def _build(self, model, channels_last):
        try:
            built = build_eval_copy(model, channels_last=channels_last)
        except Exception as err:  # noqa: BLE001 - e.g. a model deepcopy cannot handle: run unoptimised
            logger.debug("BN folding skipped for %s: %s", type(model).__name__, err)
            built = None
        self.builds += 1
        return built

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def _same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool(torch.equal(a, b))


#: process-wide cache shared by every attack (weakly keyed: dies with the model)
EVAL_COPIES = EvalCopyCache()
