"""PyTorch reference models for Lathe (the Swift side mirrors these exactly).

The module structure (attribute names) *is* the contract: Lathe re-implements the
same architectures with the same state_dict keys and loads the weights written by
make_model_fixtures.py. Initialisation is PyTorch's default; the Swift side loads
the initial weights, so its own initialisers do not have to match.

Models
------
DigitsMLP    Linear(64,128) ReLU Linear(128,64) ReLU Linear(64,10); input [B, 64].
             It *is* an nn.Sequential, so keys are 0.*, 2.*, 4.*.
DigitsCNN    conv/bn/relu/pool x2, fc1, dropout, fc2; input [B, C, image, image].
SmallResNet  stem conv/bn/relu, two BasicBlocks (second strided with a 1x1
             downsample), global average pool, fc; input [B, C, H, W].
CharGPT      pre-norm decoder-only transformer with RoPE (or learned positions);
             input int64 token ids [B, T], output logits [B, T, vocab].

All float32. Nothing here consumes the RNG in forward except nn.Dropout with p > 0.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "DigitsMLP",
    "DigitsCNN",
    "BasicBlock",
    "SmallResNet",
    "Attention",
    "MLP",
    "Block",
    "CharGPT",
    "rope_cos_sin",
    "rotate_half",
    "apply_rope",
]


# ---------------------------------------------------------------------------
# MLP
# ---------------------------------------------------------------------------

class DigitsMLP(nn.Sequential):
    """nn.Sequential(Linear(in,hidden), ReLU, Linear(hidden,hidden2), ReLU, Linear(hidden2,classes)).

    Keys: 0.weight [hidden,in], 0.bias, 2.weight [hidden2,hidden], 2.bias,
    4.weight [classes,hidden2], 4.bias.
    """

    def __init__(self, in_features=64, hidden=128, classes=10, hidden2=64):
        super().__init__(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden2),
            nn.ReLU(),
            nn.Linear(hidden2, classes),
        )
        self.config = dict(in_features=in_features, hidden=hidden, classes=classes, hidden2=hidden2)


# ---------------------------------------------------------------------------
# CNN
# ---------------------------------------------------------------------------

class DigitsCNN(nn.Module):
    """Two conv(3x3, pad 1)/BatchNorm/ReLU/maxpool(2) stages, then fc1/ReLU/dropout/fc2.

    image=8 (sklearn digits) gives fc1 in = 64*2*2; image=28 (Fashion-MNIST) gives 64*7*7.
    max_pool2d(kernel 2) uses stride 2, no padding, floor mode.
    """

    def __init__(self, in_channels=1, classes=10, dropout=0.0, image=8):
        super().__init__()
        side = image // 2 // 2
        self.conv1 = nn.Conv2d(in_channels, 32, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(64)
        self.fc1 = nn.Linear(64 * side * side, 128)
        self.fc2 = nn.Linear(128, classes)
        self.dropout = nn.Dropout(dropout)
        self.config = dict(in_channels=in_channels, classes=classes, dropout=dropout, image=image)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = torch.flatten(x, 1)  # NCHW order: index = c*side*side + h*side + w
        x = self.dropout(F.relu(self.fc1(x)))
        return self.fc2(x)


# ---------------------------------------------------------------------------
# ResNet
# ---------------------------------------------------------------------------

class BasicBlock(nn.Module):
    """out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).

    shortcut is identity, or downsample = Sequential(Conv2d(in,out,1,stride,bias=False),
    BatchNorm2d(out)) when stride != 1 or in != out (keys downsample.0.*, downsample.1.*).
    """

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        else:
            self.downsample = None

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class SmallResNet(nn.Module):
    """conv1(3x3, no bias)/bn1/relu -> layer1 (w0->w0, stride 1) -> layer2 (w0->w1, stride 2,
    1x1 downsample) -> adaptive_avg_pool2d(1) -> flatten -> fc."""

    def __init__(self, in_channels=1, classes=10, widths=(16, 32)):
        super().__init__()
        w0, w1 = widths
        self.conv1 = nn.Conv2d(in_channels, w0, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w0)
        self.layer1 = BasicBlock(w0, w0, stride=1)
        self.layer2 = BasicBlock(w0, w1, stride=2)
        self.fc = nn.Linear(w1, classes)
        self.config = dict(in_channels=in_channels, classes=classes, widths=list(widths))

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        x = F.adaptive_avg_pool2d(x, 1)
        x = torch.flatten(x, 1)
        return self.fc(x)


# ---------------------------------------------------------------------------
# GPT
# ---------------------------------------------------------------------------

def rope_cos_sin(T, head_dim, base=10000.0, dtype=torch.float32, device=None):
    """cos, sin of shape [T, head_dim] ("rotate half" layout: frequencies repeated twice).

    inv_freq[i] = 1 / base**(2i/head_dim), i < head_dim/2 (computed in float32)
    freqs[t, i] = t * inv_freq[i];  emb = cat(freqs, freqs, -1)
    """
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))
    t = torch.arange(T, dtype=torch.float32, device=device)
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    """cat(-x[..., hd/2:], x[..., :hd/2])."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x, cos, sin):
    """x: [B, H, T, hd]; cos/sin: [T, hd] (broadcast). x*cos + rotate_half(x)*sin."""
    return x * cos + rotate_half(x) * sin


class Attention(nn.Module):
    """Causal multi-head self-attention, written out explicitly.

    q, k, v = qkv(x).split(d, -1)   (qkv.weight rows: [0,d) -> q, [d,2d) -> k, [2d,3d) -> v)
    each -> view [B,T,H,hd] -> transpose(1,2) -> [B,H,T,hd]  (head h = columns h*hd..(h+1)*hd)
    RoPE on q and k; att = softmax(q k^T / sqrt(hd) + causal(-inf above diagonal));
    y = att @ v -> transpose(1,2) -> [B,T,d] -> proj.
    """

    def __init__(self, d_model, heads, rope=True):
        super().__init__()
        assert d_model % heads == 0
        self.d_model = d_model
        self.heads = heads
        self.head_dim = d_model // heads
        assert not rope or self.head_dim % 2 == 0
        self.rope = rope
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x):
        B, T, C = x.shape
        H, hd = self.heads, self.head_dim
        q, k, v = self.qkv(x).split(C, dim=-1)
        q = q.reshape(B, T, H, hd).transpose(1, 2)
        k = k.reshape(B, T, H, hd).transpose(1, 2)
        v = v.reshape(B, T, H, hd).transpose(1, 2)
        if self.rope:
            cos, sin = rope_cos_sin(T, hd, dtype=x.dtype, device=x.device)
            q = apply_rope(q, cos, sin)
            k = apply_rope(k, cos, sin)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=1)
        att = att.masked_fill(mask, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = att @ v
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.proj(y)


class MLP(nn.Module):
    """proj(gelu(fc(x))), GELU in the exact erf form: 0.5*x*(1+erf(x/sqrt(2)))."""

    def __init__(self, d_model):
        super().__init__()
        self.fc = nn.Linear(d_model, 4 * d_model)
        self.act = nn.GELU(approximate="none")
        self.proj = nn.Linear(4 * d_model, d_model)

    def forward(self, x):
        return self.proj(self.act(self.fc(x)))


class Block(nn.Module):
    """Pre-norm: x = x + attn(ln1(x)); x = x + mlp(ln2(x)). LayerNorm eps 1e-5."""

    def __init__(self, d_model, heads, rope=True):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model, eps=1e-5)
        self.attn = Attention(d_model, heads, rope=rope)
        self.ln2 = nn.LayerNorm(d_model, eps=1e-5)
        self.mlp = MLP(d_model)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        x = x + self.mlp(self.ln2(x))
        return x


class CharGPT(nn.Module):
    """tok_emb (+ pos_emb when rope=False) -> blocks -> ln_f -> head (no bias).

    No dropout, no weight tying. Input idx [B, T] int64 with T <= context.
    """

    def __init__(self, vocab=65, context=64, d_model=128, heads=4, layers=4, rope=True):
        super().__init__()
        self.context = context
        self.rope = rope
        self.tok_emb = nn.Embedding(vocab, d_model)
        if not rope:
            self.pos_emb = nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList([Block(d_model, heads, rope=rope) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d_model, eps=1e-5)
        self.head = nn.Linear(d_model, vocab, bias=False)
        self.config = dict(vocab=vocab, context=context, d_model=d_model, heads=heads, layers=layers, rope=rope)

    def forward(self, idx):
        B, T = idx.shape
        assert T <= self.context, f"sequence length {T} > context {self.context}"
        x = self.tok_emb(idx)
        if not self.rope:
            x = x + self.pos_emb(torch.arange(T, device=idx.device))
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        return self.head(x)
