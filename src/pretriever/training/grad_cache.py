"""Gradient caching (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory
Limited Setup", GradCache).

A contrastive loss needs every embedding of the batch at once, but its gradient with respect to
the encoder factors through those embeddings. So: embed the batch in chunks without keeping
activations, compute the loss and its gradient with respect to the embeddings only, then embed
each chunk again with activations and back-propagate that chunk's cached embedding gradient.
Memory is bounded by one chunk; the gradient is the full batch's. The random state (dropout) of
each chunk's first pass is replayed in its second, so both passes see the same masks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def _rng_state(device: str) -> tuple[Any, Any, str]:
    import torch

    # the generator of this process's own GPU (cuda:LOCAL_RANK under torchrun), not the current one
    cuda = torch.cuda.get_rng_state(device) if device.startswith("cuda") else None
    return torch.get_rng_state(), cuda, device


def _set_rng_state(state: tuple[Any, Any, str]) -> None:
    import torch

    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], state[2])


def cached_backward(groups: Sequence[tuple[Callable[[list[str]], Any], list[str]]],
                    loss_of: Callable[[list[Any]], Any], chunk: int, device: str = "cpu") -> Any:
    """Back-propagate ``loss_of([embeddings of each group])`` into the encoder, ``chunk`` texts at
    a time. ``groups`` pairs an embedding function (texts -> [n, d], with gradients) with its
    texts. Returns the loss, detached: the gradients are already accumulated."""
    import torch

    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    reps, states = [], []
    for encode, texts in groups:
        parts, group_states = [], []
        for start in range(0, len(texts), chunk):
            group_states.append(_rng_state(device))
            with torch.no_grad():
                parts.append(encode(texts[start : start + chunk]))
        reps.append(torch.cat(parts).detach().requires_grad_())
        states.append(group_states)
    loss = loss_of(reps)
    loss.backward()
    after = _rng_state(device)
    for (encode, texts), rep, group_states in zip(groups, reps, states, strict=True):
        for i, start in enumerate(range(0, len(texts), chunk)):
            _set_rng_state(group_states[i])
            encode(texts[start : start + chunk]).backward(rep.grad[start : start + chunk])
    _set_rng_state(after)
    return loss.detach()


def embedded_loss(groups: Sequence[tuple[Callable[[list[str]], Any], list[str]]],
                  loss_of: Callable[[list[Any]], Any], chunk: int, device: str = "cpu") -> Any:
    """``loss_of([embeddings of each group])``: the whole batch at once when ``chunk`` is 0, else
    through ``cached_backward`` (gradients already accumulated, the loss returned detached; the
    training loop skips its own backward for such a loss)."""
    if chunk:
        return cached_backward(groups, loss_of, chunk, device)
    return loss_of([encode(texts) for encode, texts in groups])
