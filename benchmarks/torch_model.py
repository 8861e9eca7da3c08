"""The course's TransformerLM written in PyTorch, for side-by-side speed measurements only.

Same architecture and sizes as ``course.model.TransformerLM`` with the
reference blocks: token embedding scaled by sqrt(d_model) plus the sinusoidal
encoding, pre-norm decoder blocks (LayerNorm eps 1e-6 as in Flax, multi-head
attention with biased projections, GELU with the tanh approximation), a final
LayerNorm and an output projection. Requires ``torch`` (the ``bench`` extra).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal(seq_len: int, d_model: int) -> torch.Tensor:
    position = torch.arange(seq_len, dtype=torch.float32)[:, None]
    angles = position / 10000.0 ** (torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(seq_len, d_model)


class Block(nn.Module):
    def __init__(self, d_model: int, num_heads: int, d_ff: int):
        super().__init__()
        self.num_heads = num_heads
        self.ln1, self.ln2 = nn.LayerNorm(d_model, eps=1e-6), nn.LayerNorm(d_model, eps=1e-6)
        self.query, self.key, self.value, self.out = (nn.Linear(d_model, d_model) for _ in range(4))
        self.up, self.down = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = (p(x).view(B, T, self.num_heads, -1).transpose(1, 2) for p in (self.query, self.key, self.value))
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
        return self.out((weights @ v).transpose(1, 2).reshape(B, T, D))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.ln1(x))
        return x + self.down(nn.functional.gelu(self.up(self.ln2(x)), approximate="tanh"))


class TorchTransformerLM(nn.Module):
    def __init__(self, vocab_size: int, max_seq_len: int, d_model: int, num_heads: int, num_layers: int, d_ff: int):
        super().__init__()
        self.scale = math.sqrt(d_model)
        self.embed = nn.Embedding(vocab_size, d_model)
        self.register_buffer("positions", sinusoidal(max_seq_len, d_model))
        self.blocks = nn.ModuleList(Block(d_model, num_heads, d_ff) for _ in range(num_layers))
        self.ln_f = nn.LayerNorm(d_model, eps=1e-6)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) * self.scale + self.positions[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def train_step(model: TorchTransformerLM, optimizer: torch.optim.Optimizer, tokens: torch.Tensor) -> torch.Tensor:
    """One AdamW step on the next-token loss, like the training exercise's ``train_step``."""
    logits = model(tokens)
    loss = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()
