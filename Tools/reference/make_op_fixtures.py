#!/usr/bin/env python3
"""Generate golden op fixtures for Lathe's Swift tests from PyTorch.

Writes Tests/Fixtures/ops.json (relative to the repository root).  The Swift
tests only read that file; this script is run by hand to regenerate it (see
Tools/reference/README.md).

File format
-----------
    {"generator": "...", "torch_version": "...", "cases": [case, ...]}

Each case:
    {"name":          unique string,
     "op":            op name (the contract with the Swift side),
     "args":          op arguments (names are part of the contract),
     "inputs":        [tensor, ...],
     "requires_grad": [bool per input],
     "outputs":       [tensor, ...],
     "grad_outputs":  [tensor or null per output]  (seed gradient passed to
                      backward; null for non-differentiable outputs),
     "grads":         [tensor or null per input]   (d(sum_i <seed_i, out_i>)/d input)}
Dtype round-trip cases ("to_float16"/"to_bfloat16") carry an extra "bits"
field: the raw uint16 bit patterns of the converted values, flat row-major.

A tensor is {"dtype": "float32"|"int64"|"bool", "shape": [...],
"data": [flat row-major values]}.  Float values are written with the shortest
decimal string that round-trips the float32 value; the generator checks that
parsing each string as a double and rounding to float32 gives back the exact
bits (otherwise the exact double value is written).  Non-finite values are
written as the strings "nan", "inf", "-inf".

Everything is float32 and deterministic: each case seeds torch with a CRC of
its name, so adding or removing a case does not change the others.
"""

import json
import math
import os
import sys
import zlib
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT_PATH = os.path.join(REPO_ROOT, "Tests", "Fixtures", "ops.json")
GENERATOR = "Tools/reference/make_op_fixtures.py"

torch.set_default_dtype(torch.float32)
torch.use_deterministic_algorithms(True)


# ---------------------------------------------------------------------------
# Op registry: op name -> fn(inputs: list[Tensor], args: dict) -> Tensor | tuple
# The args dict is the single source of truth for the op's parameters, so the
# same registry is used both to generate and to re-check the fixtures.
# ---------------------------------------------------------------------------

OPS = {}


def op(name):
    def register(fn):
        OPS[name] = fn
        return fn
    return register


# Unary ops without arguments.
_UNARY = {
    "neg": torch.neg,
    "abs": torch.abs,
    "exp": torch.exp,
    "log": torch.log,
    "sqrt": torch.sqrt,
    "rsqrt": torch.rsqrt,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "silu": F.silu,
    "softplus": F.softplus,  # beta=1, threshold=20 (PyTorch defaults)
    "erf": torch.erf,
    "sin": torch.sin,
    "cos": torch.cos,
    "square": torch.square,
    "reciprocal": torch.reciprocal,
}
for _name, _fn in _UNARY.items():
    OPS[_name] = (lambda f: lambda xs, a: f(xs[0]))(_fn)

OPS["gelu"] = lambda xs, a: F.gelu(xs[0], approximate=a["approximate"])
OPS["clamp"] = lambda xs, a: torch.clamp(xs[0], min=a["min"], max=a["max"])
OPS["pow_scalar"] = lambda xs, a: torch.pow(xs[0], a["exponent"])

# Binary elementwise ops with broadcasting.
OPS["add"] = lambda xs, a: torch.add(xs[0], xs[1])
OPS["sub"] = lambda xs, a: torch.sub(xs[0], xs[1])
OPS["mul"] = lambda xs, a: torch.mul(xs[0], xs[1])
OPS["div"] = lambda xs, a: torch.div(xs[0], xs[1])
OPS["pow"] = lambda xs, a: torch.pow(xs[0], xs[1])
OPS["maximum"] = lambda xs, a: torch.maximum(xs[0], xs[1])
OPS["minimum"] = lambda xs, a: torch.minimum(xs[0], xs[1])
OPS["mul_same"] = lambda xs, a: xs[0] * xs[0]          # gradient accumulation
OPS["add_chain"] = lambda xs, a: xs[0] * 2 + xs[0].exp()  # x used on two paths

# Comparisons: recorded as float32 1.0 / 0.0.
for _name, _fn in {"eq": torch.eq, "ne": torch.ne, "lt": torch.lt,
                   "le": torch.le, "gt": torch.gt, "ge": torch.ge}.items():
    OPS[_name] = (lambda f: lambda xs, a: f(xs[0], xs[1]).float())(_fn)

OPS["where"] = lambda xs, a: torch.where(xs[0], xs[1], xs[2])
OPS["masked_fill"] = lambda xs, a: xs[0].masked_fill(xs[1], a["value"])

# Reductions.
OPS["sum"] = lambda xs, a: torch.sum(xs[0], dim=a["dims"], keepdim=a["keepdim"])
OPS["mean"] = lambda xs, a: torch.mean(xs[0], dim=a["dims"], keepdim=a["keepdim"])
OPS["max_dim"] = lambda xs, a: tuple(torch.max(xs[0], dim=a["dim"], keepdim=a["keepdim"]))
OPS["min_dim"] = lambda xs, a: tuple(torch.min(xs[0], dim=a["dim"], keepdim=a["keepdim"]))
OPS["max_all"] = lambda xs, a: torch.max(xs[0])
OPS["min_all"] = lambda xs, a: torch.min(xs[0])
OPS["argmax"] = lambda xs, a: torch.argmax(xs[0], dim=a["dim"], keepdim=a["keepdim"])
OPS["argmin"] = lambda xs, a: torch.argmin(xs[0], dim=a["dim"], keepdim=a["keepdim"])
OPS["var"] = lambda xs, a: torch.var(xs[0], dim=a["dims"], correction=a["correction"],
                                     keepdim=a["keepdim"])
OPS["std"] = lambda xs, a: torch.std(xs[0], dim=a["dims"], correction=a["correction"],
                                     keepdim=a["keepdim"])
OPS["logsumexp"] = lambda xs, a: torch.logsumexp(xs[0], dim=a["dims"], keepdim=a["keepdim"])
OPS["softmax"] = lambda xs, a: torch.softmax(xs[0], dim=a["dim"])
OPS["log_softmax"] = lambda xs, a: torch.log_softmax(xs[0], dim=a["dim"])
OPS["cumsum"] = lambda xs, a: torch.cumsum(xs[0], dim=a["dim"])
OPS["topk"] = lambda xs, a: tuple(torch.topk(xs[0], a["k"], dim=a["dim"], largest=a["largest"],
                                             sorted=a["sorted"]))
OPS["sort"] = lambda xs, a: tuple(torch.sort(xs[0], dim=a["dim"], descending=a["descending"]))
OPS["argsort"] = lambda xs, a: torch.argsort(xs[0], dim=a["dim"], descending=a["descending"])

# Movement.
OPS["reshape"] = lambda xs, a: xs[0].reshape(a["shape"])
OPS["permute"] = lambda xs, a: xs[0].permute(a["dims"])
OPS["transpose"] = lambda xs, a: xs[0].transpose(a["dim0"], a["dim1"])
OPS["expand"] = lambda xs, a: xs[0].expand(a["shape"])
OPS["cat"] = lambda xs, a: torch.cat(xs, dim=a["dim"])
OPS["stack"] = lambda xs, a: torch.stack(xs, dim=a["dim"])
OPS["split"] = lambda xs, a: tuple(torch.split(xs[0], a["split_size"], dim=a["dim"]))
OPS["pad"] = lambda xs, a: F.pad(xs[0], a["pad"], mode="constant", value=a["value"])


@op("slice")
def _slice(xs, a):
    # x[..., start:end:step] along `dim` (Python slice semantics; step > 0).
    x = xs[0]
    dim = a["dim"] % x.dim()
    index = (slice(None),) * dim + (slice(a["start"], a["end"], a["step"]),)
    return x[index]


# Indexing.
OPS["gather"] = lambda xs, a: torch.gather(xs[0], a["dim"], xs[1])
OPS["scatter_add"] = lambda xs, a: torch.scatter_add(xs[0], a["dim"], xs[1], xs[2])
OPS["index_select"] = lambda xs, a: torch.index_select(xs[0], a["dim"], xs[1])
OPS["one_hot"] = lambda xs, a: F.one_hot(xs[0], num_classes=a["num_classes"])
OPS["embedding"] = lambda xs, a: F.embedding(xs[1], xs[0])  # inputs [weight, indices]

# Linear algebra / convolution / pooling.
OPS["matmul"] = lambda xs, a: torch.matmul(xs[0], xs[1])
OPS["conv2d"] = lambda xs, a: F.conv2d(
    xs[0], xs[1], xs[2] if len(xs) > 2 else None, stride=a["stride"],
    padding=a["padding"], dilation=a["dilation"], groups=a["groups"])
OPS["conv_transpose2d"] = lambda xs, a: F.conv_transpose2d(
    xs[0], xs[1], xs[2] if len(xs) > 2 else None, stride=a["stride"],
    padding=a["padding"], output_padding=a["output_padding"], groups=a["groups"],
    dilation=a["dilation"])
OPS["max_pool2d"] = lambda xs, a: F.max_pool2d(
    xs[0], a["kernel"], stride=a["stride"], padding=a["padding"],
    dilation=a["dilation"], ceil_mode=a["ceil_mode"])
OPS["avg_pool2d"] = lambda xs, a: F.avg_pool2d(
    xs[0], a["kernel"], stride=a["stride"], padding=a["padding"],
    count_include_pad=a["count_include_pad"])
OPS["adaptive_avg_pool2d"] = lambda xs, a: F.adaptive_avg_pool2d(xs[0], a["output_size"])

# Dtype round trips: value after x.to(dtype), widened back to float32.
OPS["to_float16"] = lambda xs, a: xs[0].to(torch.float16).float()
OPS["to_bfloat16"] = lambda xs, a: xs[0].to(torch.bfloat16).float()
_HALF_DTYPES = {"to_float16": torch.float16, "to_bfloat16": torch.bfloat16}


def half_bits(op_name, x):
    """Raw uint16 bit patterns of x converted to the op's 16-bit dtype."""
    h = x.to(_HALF_DTYPES[op_name]).contiguous()
    return [int(b) & 0xFFFF for b in h.view(torch.int16).reshape(-1).tolist()]


# ---------------------------------------------------------------------------
# Input helpers (all use the global torch RNG, seeded per case).
# ---------------------------------------------------------------------------

def randn(*shape):
    return torch.randn(shape)


def positive(*shape):
    """Values in [0.5, inf): safe for log / sqrt / rsqrt / pow bases."""
    return torch.randn(shape).abs() + 0.5


def nonzero(*shape, margin=0.5):
    """Random sign, magnitude >= margin: safe denominators / kinks at zero."""
    x = torch.randn(shape)
    return torch.where(x < 0, x - margin, x + margin)


def away_from(x, points, margin=0.05):
    """Push values that are within `margin` of any kink point out of that band."""
    for p in points:
        d = x - p
        near = d.abs() < margin
        x = torch.where(near, p + torch.where(d < 0, -margin, margin) * 2, x)
    return x


def distinct(*shape):
    """Pairwise-distinct values (no ties, gaps >= 1.4/n) in about [-1.75, 1.75], shuffled."""
    n = int(np.prod(shape)) if shape else 1
    ranks = torch.randperm(n).float() + 0.2 + 0.6 * torch.rand(n)  # one value per unit bin
    return ((ranks - n / 2) / max(n / 3.5, 1.0)).reshape(shape)


def rounded(*shape):
    """Half-integers in a small range, so comparisons see many equal values."""
    return torch.round(torch.randn(shape) * 2) / 2


def ints(high, *shape):
    return torch.randint(0, high, shape, dtype=torch.int64)


# ---------------------------------------------------------------------------
# Serialisation
# ---------------------------------------------------------------------------

def float_str(v):
    """Shortest decimal that round-trips the float32 value v (via double)."""
    f = np.float32(v)
    if math.isnan(f):
        return '"nan"'
    if math.isinf(f):
        return '"inf"' if f > 0 else '"-inf"'
    s = str(f)  # numpy's shortest repr for float32, e.g. "0.1", "1e-08"
    if np.float32(float(s)).view(np.uint32) != f.view(np.uint32):
        s = repr(float(f))  # exact double value of the float32 (always safe)
    return s


def tensor_json(t):
    """Tensor -> dict with an already-formatted data list (see dump_json)."""
    t = t.detach().contiguous()
    shape = list(t.shape)
    flat = t.reshape(-1)
    if t.dtype == torch.float32:
        data = RawList(float_str(v) for v in flat.numpy())
        dtype = "float32"
    elif t.dtype == torch.int64:
        data = RawList(str(int(v)) for v in flat.tolist())
        dtype = "int64"
    elif t.dtype == torch.bool:
        data = RawList("true" if v else "false" for v in flat.tolist())
        dtype = "bool"
    else:
        raise TypeError(f"unsupported dtype {t.dtype}")
    return {"dtype": dtype, "shape": shape, "data": data}


class RawList(list):
    """A list of pre-formatted JSON scalars, written verbatim by dump_json."""


def dump_json(obj):
    """Minimal compact JSON writer (needed to control float formatting)."""
    if isinstance(obj, RawList):
        return "[" + ",".join(obj) + "]"
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "true" if obj else "false"
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, float):
        assert math.isfinite(obj)
        return repr(obj)
    if isinstance(obj, str):
        return json.dumps(obj)
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(dump_json(v) for v in obj) + "]"
    if isinstance(obj, dict):
        return "{" + ",".join(json.dumps(k) + ":" + dump_json(v) for k, v in obj.items()) + "}"
    raise TypeError(type(obj))


# ---------------------------------------------------------------------------
# Generic case runner
# ---------------------------------------------------------------------------

CASES = []


def seed_for(name):
    return zlib.crc32(name.encode())


def as_outputs(result):
    return list(result) if isinstance(result, (tuple, list)) else [result]


def evaluate(op_name, args, inputs, requires_grad, grad_outputs=None):
    """Run op forward + backward.

    inputs: list of tensors (detached); requires_grad: bool per input.
    grad_outputs: list (tensor or None per output) or None to draw fresh
    random normal seeds from the current RNG.
    Returns (outputs, grad_outputs, grads).
    """
    leaves = [x.detach().clone().requires_grad_(rg) for x, rg in zip(inputs, requires_grad)]
    outputs = as_outputs(OPS[op_name](leaves, args))
    if grad_outputs is None:
        grad_outputs = [torch.randn(o.shape) if o.requires_grad else None for o in outputs]
    diff = [(o, g) for o, g in zip(outputs, grad_outputs) if g is not None]
    if diff:
        torch.autograd.backward([o for o, _ in diff], grad_tensors=[g for _, g in diff])
    grads = []
    for leaf, rg in zip(leaves, requires_grad):
        if not rg:
            grads.append(None)
        else:  # an input that requires grad but got none has a zero gradient
            grads.append(leaf.grad if leaf.grad is not None else torch.zeros_like(leaf))
    return [o.detach() for o in outputs], grad_outputs, grads


def case(name, op_name, make_inputs, args=None, requires_grad=None):
    """Build one fixture case.

    make_inputs: zero-argument callable returning the list of input tensors;
    it is called right after seeding, so inputs are reproducible.
    requires_grad: list of bools; default = True for float inputs.
    """
    args = {} if args is None else args
    torch.manual_seed(seed_for(name))
    inputs = [t.detach().contiguous() for t in make_inputs()]
    if requires_grad is None:
        requires_grad = [t.dtype == torch.float32 for t in inputs]
    outputs, grad_outputs, grads = evaluate(op_name, args, inputs, requires_grad)
    entry = {
        "name": name,
        "op": op_name,
        "args": args,
        "inputs": [tensor_json(t) for t in inputs],
        "requires_grad": list(requires_grad),
        "outputs": [tensor_json(t) for t in outputs],
        "grad_outputs": [None if g is None else tensor_json(g) for g in grad_outputs],
        "grads": [None if g is None else tensor_json(g) for g in grads],
    }
    if op_name in _HALF_DTYPES:
        entry["bits"] = half_bits(op_name, inputs[0])
    CASES.append(entry)


def shape_name(shape):
    return "x".join(str(s) for s in shape) if len(shape) else "scalar"


# ---------------------------------------------------------------------------
# Case definitions
# ---------------------------------------------------------------------------

def unary_cases():
    # (op, input maker, args); each op gets two shapes (plus extras below).
    makers = {
        "neg": randn, "exp": randn, "tanh": randn, "sigmoid": randn,
        "silu": randn, "erf": randn, "sin": randn, "cos": randn, "square": randn,
        "abs": lambda *s: away_from(randn(*s), [0.0]),
        "relu": lambda *s: away_from(randn(*s), [0.0]),
        "softplus": lambda *s: randn(*s) * 4,  # reaches the linear region too
        "log": positive, "sqrt": positive, "rsqrt": positive,
        "reciprocal": nonzero,
    }
    for name, make in makers.items():
        for shape in [(3, 5), (2, 1, 7)]:
            case(f"{name}_{shape_name(shape)}", name, lambda: [make(*shape)])
    # 0-d tensors.
    case("exp_scalar", "exp", lambda: [randn()])
    case("neg_scalar", "neg", lambda: [randn()])
    # softplus above its threshold (20): identity branch.
    case("softplus_large", "softplus", lambda: [torch.tensor([-30.0, -5.0, 0.5, 19.0, 21.0, 40.0])])

    for approx in ["none", "tanh"]:
        for shape in [(3, 5), (4, 1, 3)]:
            case(f"gelu_{approx}_{shape_name(shape)}", "gelu",
                 lambda: [randn(*shape) * 2], {"approximate": approx})

    for lo, hi, shape in [(-0.5, 0.5, (3, 5)), (-1.0, 0.25, (2, 7)), (0.0, 1.5, (11,))]:
        case(f"clamp_{lo}_{hi}_{shape_name(shape)}", "clamp",
             lambda: [away_from(randn(*shape) * 1.5, [lo, hi])], {"min": lo, "max": hi})

    for exponent in [2.0, 0.5, -1.5, 3.0]:
        case(f"pow_scalar_{exponent}_3x4", "pow_scalar", lambda: [positive(3, 4)],
             {"exponent": exponent})
    # Integer exponents are defined for negative bases as well.
    case("pow_scalar_3.0_negbase_7", "pow_scalar", lambda: [randn(7)], {"exponent": 3.0})
    case("pow_scalar_2.0_negbase_2x3", "pow_scalar", lambda: [randn(2, 3)], {"exponent": 2.0})


BROADCAST_PATTERNS = [((3, 5), (3, 5)), ((3, 1, 4), (2, 4)), ((5,), (3, 5)),
                      ((), (2, 3)), ((4, 1), (1, 6))]


def binary_cases():
    makers = {
        "add": (randn, randn), "sub": (randn, randn), "mul": (randn, randn),
        "div": (randn, nonzero),
        "pow": (positive, randn),  # positive base, any exponent
        "maximum": (distinct, distinct), "minimum": (distinct, distinct),
    }
    for name, (ma, mb) in makers.items():
        for sa, sb in BROADCAST_PATTERNS:
            case(f"{name}_broadcast_{shape_name(sa)}_{shape_name(sb)}" if sa != sb
                 else f"{name}_{shape_name(sa)}", name, lambda: [ma(*sa), mb(*sb)])
    # The reversed pattern once for sub/div (order matters for those).
    case("sub_broadcast_2x3_scalar", "sub", lambda: [randn(2, 3), randn()])
    case("div_broadcast_3x5_5", "div", lambda: [randn(3, 5), nonzero(5)])

    case("mul_self", "mul_same", lambda: [randn(3, 4)])
    case("mul_self_7", "mul_same", lambda: [randn(7)])
    case("add_chain", "add_chain", lambda: [randn(2, 5)])
    case("add_chain_3x1x2", "add_chain", lambda: [randn(3, 1, 2)])


def comparison_cases():
    patterns = [((3, 5), (3, 5)), ((3, 1, 4), (2, 4)), ((4, 1), (1, 6))]
    for name in ["eq", "ne", "lt", "le", "gt", "ge"]:
        for sa, sb in patterns:
            case(f"{name}_{shape_name(sa)}_{shape_name(sb)}", name,
                 lambda: [rounded(*sa), rounded(*sb)], requires_grad=[False, False])


def where_cases():
    case("where_3x4", "where",
         lambda: [torch.rand(3, 4) > 0.5, randn(3, 4), randn(3, 4)],
         requires_grad=[False, True, True])
    case("where_broadcast_3x1_3x4_4", "where",
         lambda: [torch.rand(3, 1) > 0.5, randn(3, 4), randn(4)],
         requires_grad=[False, True, True])
    case("where_broadcast_2x3x4_scalar_1x4", "where",
         lambda: [torch.rand(2, 3, 4) > 0.5, randn(), randn(1, 4)],
         requires_grad=[False, True, True])

    case("masked_fill_3x5", "masked_fill", lambda: [randn(3, 5), torch.rand(3, 5) > 0.5],
         {"value": -1.5}, requires_grad=[True, False])
    case("masked_fill_broadcast_2x3x5_1x5", "masked_fill",
         lambda: [randn(2, 3, 5), torch.rand(1, 5) > 0.5], {"value": 0.25},
         requires_grad=[True, False])
    case("masked_fill_broadcast_4x3_4x1", "masked_fill",
         lambda: [randn(4, 3), torch.rand(4, 1) > 0.5], {"value": 3.0},
         requires_grad=[True, False])


def reduction_cases():
    no_grad = [False]
    for name in ["sum", "mean"]:
        for shape, dims, keep in [((3, 5), None, False), ((3, 5), None, True),
                                  ((3, 5), [1], True), ((3, 4, 5), [0, 2], False),
                                  ((3, 4, 5), [-1], False), ((2, 3, 4, 5), [1, 3], True)]:
            dn = "all" if dims is None else "_".join(str(d) for d in dims)
            case(f"{name}_{shape_name(shape)}_dims{dn}_keep{int(keep)}", name,
                 lambda: [randn(*shape)], {"dims": dims, "keepdim": keep})

    for name in ["max_dim", "min_dim"]:
        for shape, dim, keep in [((3, 5), 1, False), ((3, 5), 0, True),
                                 ((2, 3, 4), -1, False), ((2, 3, 4), 1, True)]:
            case(f"{name}_{shape_name(shape)}_dim{dim}_keep{int(keep)}", name,
                 lambda: [distinct(*shape)], {"dim": dim, "keepdim": keep})
    for name in ["max_all", "min_all"]:
        for shape in [(3, 5), (2, 3, 4), (7,)]:
            case(f"{name}_{shape_name(shape)}", name, lambda: [distinct(*shape)])

    for name in ["argmax", "argmin"]:
        for shape, dim, keep in [((3, 5), 1, False), ((3, 5), 0, True), ((2, 3, 4), -1, False)]:
            case(f"{name}_{shape_name(shape)}_dim{dim}_keep{int(keep)}", name,
                 lambda: [distinct(*shape)], {"dim": dim, "keepdim": keep},
                 requires_grad=no_grad)

    for name in ["var", "std"]:
        for shape, dims, corr, keep in [((3, 5), [1], 1, False), ((3, 5), [0], 0, True),
                                        ((3, 4, 5), [0, 2], 1, False),
                                        ((2, 3, 4, 5), [1, 3], 0, True),
                                        ((3, 4, 5), [-1], 1, True)]:
            dn = "_".join(str(d) for d in dims)
            case(f"{name}_{shape_name(shape)}_dims{dn}_corr{corr}_keep{int(keep)}", name,
                 lambda: [randn(*shape)], {"dims": dims, "correction": corr, "keepdim": keep})

    for shape, dims, keep in [((3, 5), [1], False), ((3, 4, 5), [0, 2], True),
                              ((2, 3, 4), [-1], False)]:
        dn = "_".join(str(d) for d in dims)
        case(f"logsumexp_{shape_name(shape)}_dims{dn}_keep{int(keep)}", "logsumexp",
             lambda: [randn(*shape) * 3], {"dims": dims, "keepdim": keep})

    for name in ["softmax", "log_softmax"]:
        for shape, dim in [((3, 5), -1), ((3, 5), 0), ((2, 3, 4), 1)]:
            case(f"{name}_{shape_name(shape)}_dim{dim}", name,
                 lambda: [randn(*shape) * 3], {"dim": dim})

    for shape, dim in [((7,), 0), ((3, 5), 1), ((2, 3, 4), -1), ((2, 3, 4), 0)]:
        case(f"cumsum_{shape_name(shape)}_dim{dim}", "cumsum", lambda: [randn(*shape)], {"dim": dim})

    for shape, k, dim, largest in [((3, 7), 3, -1, True), ((3, 7), 2, 1, False),
                                   ((5, 4), 2, 0, True), ((2, 3, 5), 1, 1, False)]:
        case(f"topk_{shape_name(shape)}_k{k}_dim{dim}_{'largest' if largest else 'smallest'}",
             "topk", lambda: [distinct(*shape)],
             {"k": k, "dim": dim, "largest": largest, "sorted": True})

    for shape, dim, desc in [((3, 7), -1, False), ((3, 7), 0, True), ((2, 3, 4), 1, False),
                             ((9,), 0, True)]:
        case(f"sort_{shape_name(shape)}_dim{dim}_{'desc' if desc else 'asc'}", "sort",
             lambda: [distinct(*shape)], {"dim": dim, "descending": desc})
    for shape, dim, desc in [((3, 7), -1, False), ((4, 3), 0, True), ((2, 3, 4), 1, True)]:
        case(f"argsort_{shape_name(shape)}_dim{dim}_{'desc' if desc else 'asc'}", "argsort",
             lambda: [distinct(*shape)], {"dim": dim, "descending": desc},
             requires_grad=no_grad)


def movement_cases():
    for shape, new in [((3, 4), [4, 3]), ((2, 3, 4), [6, -1]), ((2, 3, 4), [-1]),
                       ((6,), [1, 2, 1, 3]), ((), [1])]:
        case(f"reshape_{shape_name(shape)}_to_{shape_name(new)}", "reshape",
             lambda: [randn(*shape)], {"shape": new})

    for shape, dims in [((3, 5), [1, 0]), ((2, 3, 4), [2, 0, 1]), ((2, 3, 4, 5), [0, 3, 1, 2]),
                        ((2, 3, 4), [-1, 1, 0])]:
        case(f"permute_{shape_name(shape)}_{'_'.join(map(str, dims))}", "permute",
             lambda: [randn(*shape)], {"dims": dims})

    for shape, d0, d1 in [((3, 5), 0, 1), ((2, 3, 4), 0, 2), ((2, 3, 4), -1, 1)]:
        case(f"transpose_{shape_name(shape)}_{d0}_{d1}", "transpose",
             lambda: [randn(*shape)], {"dim0": d0, "dim1": d1})

    for shape, dim, start, end, step in [((7, 3), 0, 1, 5, 1), ((7, 3), 0, 0, 7, 2),
                                         ((2, 9, 3), 1, 1, 8, 3), ((3, 8), -1, -5, 8, 2),
                                         ((4, 5), 1, 2, 3, 1)]:
        case(f"slice_{shape_name(shape)}_dim{dim}_{start}_{end}_{step}", "slice",
             lambda: [randn(*shape)], {"dim": dim, "start": start, "end": end, "step": step})

    for shape, new in [((3, 1), [3, 4]), ((3, 1), [2, 3, 4]), ((1, 4, 1), [-1, 4, 5]),
                       ((), [2, 3]), ((2, 1, 3), [2, -1, -1])]:
        case(f"expand_{shape_name(shape)}_to_{'_'.join(map(str, new))}", "expand",
             lambda: [randn(*shape)], {"shape": new})

    case("cat_dim0_2x3_1x3_4x3", "cat", lambda: [randn(2, 3), randn(1, 3), randn(4, 3)], {"dim": 0})
    case("cat_dim1_2x3_2x5", "cat", lambda: [randn(2, 3), randn(2, 5)], {"dim": 1})
    case("cat_dimneg1_2x3x1_2x3x4", "cat", lambda: [randn(2, 3, 1), randn(2, 3, 4)], {"dim": -1})
    case("cat_dim1_2x1x4_2x3x4_2x2x4", "cat",
         lambda: [randn(2, 1, 4), randn(2, 3, 4), randn(2, 2, 4)], {"dim": 1})

    case("stack_dim0_3x4_x2", "stack", lambda: [randn(3, 4), randn(3, 4)], {"dim": 0})
    case("stack_dim1_3x4_x3", "stack", lambda: [randn(3, 4), randn(3, 4), randn(3, 4)], {"dim": 1})
    case("stack_dimneg1_2x3_x2", "stack", lambda: [randn(2, 3), randn(2, 3)], {"dim": -1})

    case("split_7x2_size3_dim0", "split", lambda: [randn(7, 2)], {"split_size": 3, "dim": 0})
    case("split_2x6_size2_dim1", "split", lambda: [randn(2, 6)], {"split_size": 2, "dim": 1})
    case("split_2x3x7_list_dimneg1", "split", lambda: [randn(2, 3, 7)],
         {"split_size": [1, 4, 2], "dim": -1})

    case("pad_3x4_last_1_2", "pad", lambda: [randn(3, 4)], {"pad": [1, 2], "value": 0.0})
    case("pad_1x2x3x4_2d", "pad", lambda: [randn(1, 2, 3, 4)], {"pad": [1, 0, 2, 1], "value": -0.5})
    case("pad_2x3x2_3d", "pad", lambda: [randn(2, 3, 2)], {"pad": [0, 1, 1, 1, 2, 0], "value": 1.5})


def indexing_cases():
    case("gather_3x5_dim1", "gather", lambda: [randn(3, 5), ints(5, 3, 4)], {"dim": 1})
    case("gather_4x3_dim0", "gather", lambda: [randn(4, 3), ints(4, 2, 3)], {"dim": 0})
    case("gather_2x3x4_dimneg1_smaller", "gather", lambda: [randn(2, 3, 4), ints(4, 2, 2, 6)],
         {"dim": -1})

    case("scatter_add_3x5_dim1", "scatter_add",
         lambda: [randn(3, 5), torch.tensor([[0, 1, 1, 4], [2, 2, 2, 0], [3, 0, 4, 3]]), randn(3, 4)],
         {"dim": 1})
    case("scatter_add_4x3_dim0", "scatter_add",
         lambda: [randn(4, 3), ints(4, 5, 3), randn(5, 3)], {"dim": 0})
    # index smaller than x in a non-scatter dim (src has the index's shape: PyTorch's
    # scatter_add backward requires that when src needs a gradient).
    case("scatter_add_2x3x4_dimneg1_index_2x2x6", "scatter_add",
         lambda: [randn(2, 3, 4), ints(4, 2, 2, 6), randn(2, 2, 6)], {"dim": -1})

    case("index_select_5x3_dim0", "index_select",
         lambda: [randn(5, 3), torch.tensor([4, 0, 0, 2])], {"dim": 0})
    case("index_select_2x4x3_dim1", "index_select",
         lambda: [randn(2, 4, 3), torch.tensor([3, 1, 3, 3, 0, 2])], {"dim": 1})
    case("index_select_3x5_dimneg1", "index_select",
         lambda: [randn(3, 5), torch.tensor([1])], {"dim": -1})

    case("one_hot_5_c6", "one_hot", lambda: [torch.tensor([0, 5, 2, 2, 3])], {"num_classes": 6})
    case("one_hot_2x3_c4", "one_hot", lambda: [ints(4, 2, 3)], {"num_classes": 4})

    case("embedding_7x3", "embedding",
         lambda: [randn(7, 3), torch.tensor([[1, 6, 1], [0, 1, 6]])], requires_grad=[True, False])
    case("embedding_4x5", "embedding",
         lambda: [randn(4, 5), torch.tensor([[3, 3, 3], [0, 2, 3]])], requires_grad=[True, False])


def matmul_cases():
    for sa, sb in [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (3, 4, 2)),
                   ((1, 3, 4), (2, 4, 5)), ((4,), (4, 5)), ((3, 4), (4,)),
                   ((2, 3, 4), (2, 4, 5)), ((4,), (4,)), ((2, 3, 4), (4,)),
                   ((5,), (2, 5, 3)), ((1, 1), (1, 7)), ((17, 33), (33, 9))]:
        case(f"matmul_{shape_name(sa)}_{shape_name(sb)}", "matmul", lambda: [randn(*sa), randn(*sb)])


def conv_args(stride=1, padding=0, dilation=1, groups=1):
    pair = lambda v: list(v) if isinstance(v, (list, tuple)) else [v, v]
    return {"stride": pair(stride), "padding": pair(padding), "dilation": pair(dilation),
            "groups": groups}


def conv_cases():
    # (name, x shape, weight shape, bias?, args)
    specs = [
        ("basic_3x3", (1, 2, 5, 6), (3, 2, 3, 3), True, conv_args()),
        ("stride2_pad1", (1, 3, 7, 6), (4, 3, 3, 3), True, conv_args(stride=2, padding=1)),
        ("dilation2", (1, 2, 7, 7), (2, 2, 3, 3), True, conv_args(dilation=2)),
        ("groups2", (1, 4, 5, 5), (6, 2, 3, 3), True, conv_args(groups=2, padding=1)),
        ("depthwise", (1, 3, 6, 5), (3, 1, 3, 3), True, conv_args(groups=3, padding=1)),
        ("pointwise_1x1", (1, 3, 4, 5), (5, 3, 1, 1), True, conv_args()),
        ("kernel3x2_nonsquare", (1, 2, 7, 5), (3, 2, 3, 2), True,
         conv_args(stride=(2, 1), padding=(1, 0))),
        ("batch2_nobias", (2, 3, 5, 4), (2, 3, 3, 3), False, conv_args(padding=1)),
        ("batch2_mixed", (2, 2, 6, 7), (4, 2, 2, 3), True,
         conv_args(stride=(1, 2), padding=(0, 1), dilation=(2, 1))),
    ]
    for name, xs, ws, bias, args in specs:
        make = (lambda: [randn(*xs), randn(*ws) * 0.5, randn(ws[0])]) if bias else \
               (lambda: [randn(*xs), randn(*ws) * 0.5])
        case(f"conv2d_{name}", "conv2d", make, args)

    # conv_transpose2d: weight is [Cin, Cout/groups, kh, kw].
    tspecs = [
        ("basic_3x3", (1, 2, 4, 5), (2, 3, 3, 3), True, {}),
        ("stride2_outpad1", (1, 2, 3, 4), (2, 2, 3, 3), True,
         {"stride": [2, 2], "padding": [1, 1], "output_padding": [1, 1]}),
        ("groups2", (1, 4, 3, 3), (4, 1, 2, 2), True, {"groups": 2, "stride": [2, 2]}),
        ("dilation2_nobias", (1, 3, 4, 3), (3, 2, 2, 3), False, {"dilation": [2, 2]}),
        ("batch2_nonsquare", (2, 2, 3, 5), (2, 3, 3, 2), True,
         {"stride": [2, 1], "padding": [1, 0], "output_padding": [1, 0]}),
    ]
    for name, xs, ws, bias, over in tspecs:
        args = {"stride": [1, 1], "padding": [0, 0], "output_padding": [0, 0],
                "dilation": [1, 1], "groups": 1}
        args.update(over)
        cout = ws[1] * args["groups"]
        make = (lambda: [randn(*xs), randn(*ws) * 0.5, randn(cout)]) if bias else \
               (lambda: [randn(*xs), randn(*ws) * 0.5])
        case(f"conv_transpose2d_{name}", "conv_transpose2d", make, args)


def pool_cases():
    for name, xs, k, s, p, d in [
        ("k2s2", (1, 2, 6, 7), [2, 2], [2, 2], [0, 0], [1, 1]),
        ("k3s2p1", (2, 1, 7, 5), [3, 3], [2, 2], [1, 1], [1, 1]),
        ("k2s1_dil2", (1, 2, 6, 6), [2, 2], [1, 1], [0, 0], [2, 2]),
        ("k3x2_s2x1", (1, 3, 7, 4), [3, 2], [2, 1], [1, 0], [1, 1]),
    ]:
        case(f"max_pool2d_{name}", "max_pool2d", lambda: [distinct(*xs)],
             {"kernel": k, "stride": s, "padding": p, "dilation": d, "ceil_mode": False})

    for name, xs, k, s, p, cip in [
        ("k2s2", (1, 2, 6, 7), [2, 2], [2, 2], [0, 0], True),
        ("k3s2p1_incl", (2, 1, 7, 5), [3, 3], [2, 2], [1, 1], True),
        ("k3s2p1_excl", (2, 1, 7, 5), [3, 3], [2, 2], [1, 1], False),
        ("k2x3_s1x2_p1x1_excl", (1, 2, 5, 6), [2, 3], [1, 2], [1, 1], False),
    ]:
        case(f"avg_pool2d_{name}", "avg_pool2d", lambda: [randn(*xs)],
             {"kernel": k, "stride": s, "padding": p, "count_include_pad": cip})

    for xs, out in [((1, 2, 7, 5), [3, 2]), ((1, 1, 6, 6), [4, 4]), ((2, 2, 5, 7), [1, 1]),
                    ((1, 2, 3, 3), [5, 4]), ((1, 1, 8, 6), [2, 3])]:
        case(f"adaptive_avg_pool2d_{shape_name(xs)}_to_{shape_name(out)}", "adaptive_avg_pool2d",
             lambda: [randn(*xs)], {"output_size": out})


def dtype_cases():
    edge = [
        0.0, -0.0, 1.0, -1.0, 0.1, 1.0 / 3.0, -2.7182817,
        1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11,  # fp16 halfway: ties to even (down / up)
        1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8,    # bf16 halfway: ties to even (down / up)
        1.0 + 2.0 ** -9,                          # bf16 below halfway
        65504.0, 65519.0, 65520.0, 1.0e5, -1.0e5,  # fp16 max, just below/at overflow, overflow
        3.0e38, -3.3961776e38, 3.4028235e38,      # bf16 near max / overflow
        6.0e-8, 2.9e-8, 3.0e-8, 1.0e-8, 3.0e-5, -6.1e-5, 6.1035156e-05,  # fp16 subnormals / min normal
        1.0e-40, -1.0e-39, 1.1754944e-38,         # float32 subnormals / min normal
    ]
    for name in ["to_float16", "to_bfloat16"]:
        case(f"{name}_edge_values", name, lambda: [torch.tensor(edge, dtype=torch.float32)],
             requires_grad=[False])
        case(f"{name}_randn_3x5", name, lambda: [randn(3, 5)], requires_grad=[False])
        # Wide dynamic range: random mantissas scaled by 10^[-9, 6).
        case(f"{name}_wide_range_24", name,
             lambda: [randn(24) * torch.pow(10.0, torch.randint(-9, 6, (24,)).float())],
             requires_grad=[False])


# ---------------------------------------------------------------------------
# Self-check: reload the file and recompute every case from the stored data.
# ---------------------------------------------------------------------------

def load_tensor(t):
    if t is None:
        return None
    dtype = {"float32": torch.float32, "int64": torch.int64, "bool": torch.bool}[t["dtype"]]
    data = [float(v) if isinstance(v, str) else v for v in t["data"]]
    return torch.tensor(data, dtype=dtype).reshape(t["shape"])


def same(a, b):
    """Bit-exact comparison (recomputing with the same torch is deterministic, so
    this also proves that every stored float round-trips exactly)."""
    if a is None or b is None:
        return a is None and b is None
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == torch.float32:
        return torch.equal(a.contiguous().view(torch.int32), b.contiguous().view(torch.int32))
    return torch.equal(a, b)


def self_check(path):
    with open(path) as f:
        doc = json.load(f)
    names = [c["name"] for c in doc["cases"]]
    assert len(names) == len(set(names)), "duplicate case names"
    failures = []
    for c in doc["cases"]:
        inputs = [load_tensor(t) for t in c["inputs"]]
        gos = [load_tensor(g) for g in c["grad_outputs"]]
        outs, _, grads = evaluate(c["op"], c["args"], inputs, c["requires_grad"], gos)
        ok = len(outs) == len(c["outputs"]) and len(grads) == len(c["grads"])
        ok = ok and all(same(o, load_tensor(e)) for o, e in zip(outs, c["outputs"]))
        ok = ok and all(same(g, load_tensor(e)) for g, e in zip(grads, c["grads"]))
        if "bits" in c:
            ok = ok and half_bits(c["op"], inputs[0]) == c["bits"]
        if not ok:
            failures.append(c["name"])

    # A few independent (numpy / closed-form) checks of the op semantics.
    by = {c["name"]: c for c in doc["cases"]}
    npy = lambda t: load_tensor(t).numpy().astype(np.float64)

    c = by["add_broadcast_3x1x4_2x4"]
    a, b = npy(c["inputs"][0]), npy(c["inputs"][1])
    g = npy(c["grad_outputs"][0])
    assert np.allclose(a + b, npy(c["outputs"][0]), atol=1e-6)
    assert np.allclose(g.sum(axis=1, keepdims=True), npy(c["grads"][0]), atol=1e-5)
    assert np.allclose(g.sum(axis=0), npy(c["grads"][1]), atol=1e-5)

    c = by["matmul_2x1x3x4_3x4x2"]
    a, b, g = npy(c["inputs"][0]), npy(c["inputs"][1]), npy(c["grad_outputs"][0])
    assert np.allclose(np.matmul(a, b), npy(c["outputs"][0]), atol=1e-5)
    assert np.allclose((g @ np.swapaxes(b, -1, -2)).sum(axis=1, keepdims=True),
                       npy(c["grads"][0]), atol=1e-5)
    assert np.allclose((np.swapaxes(a, -1, -2) @ g).sum(axis=0), npy(c["grads"][1]), atol=1e-5)

    c = by["softmax_2x3x4_dim1"]
    x = npy(c["inputs"][0])
    e = np.exp(x - x.max(axis=1, keepdims=True))
    assert np.allclose(e / e.sum(axis=1, keepdims=True), npy(c["outputs"][0]), atol=1e-6)

    c = by["var_3x4x5_dims0_2_corr1_keep0"]
    assert np.allclose(npy(c["inputs"][0]).var(axis=(0, 2), ddof=1), npy(c["outputs"][0]), atol=1e-5)

    c = by["conv2d_stride2_pad1"]  # direct loop convolution
    x, w, bias = npy(c["inputs"][0]), npy(c["inputs"][1]), npy(c["inputs"][2])
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = npy(c["outputs"][0])
    ref = np.zeros_like(out)
    for o in range(out.shape[1]):
        for i in range(out.shape[2]):
            for j in range(out.shape[3]):
                ref[0, o, i, j] = (xp[0, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3] * w[o]).sum() + bias[o]
    assert np.allclose(ref, out, atol=1e-5)

    c = by["to_float16_edge_values"]
    x = load_tensor(c["inputs"][0]).numpy()
    with np.errstate(over="ignore"):  # values above the fp16 range overflow to inf
        assert np.array_equal(x.astype(np.float16).view(np.uint16).tolist(), c["bits"])
        assert np.array_equal(x.astype(np.float16).astype(np.float32),
                              load_tensor(c["outputs"][0]).numpy(), equal_nan=True)

    if failures:
        raise SystemExit(f"self-check FAILED for {len(failures)} cases: {failures}")
    return doc


# ---------------------------------------------------------------------------

# Losses and normalisation (torch.nn.functional), used by LatheNN.
OPS["cross_entropy"] = lambda xs, a: F.cross_entropy(
    xs[0], xs[1], weight=xs[2] if len(xs) > 2 else None, ignore_index=a["ignore_index"],
    label_smoothing=a["label_smoothing"], reduction=a["reduction"])
OPS["nll"] = lambda xs, a: F.nll_loss(xs[0], xs[1], ignore_index=a["ignore_index"],
                                      reduction=a["reduction"])
OPS["mse"] = lambda xs, a: F.mse_loss(xs[0], xs[1], reduction=a["reduction"])
OPS["l1"] = lambda xs, a: F.l1_loss(xs[0], xs[1], reduction=a["reduction"])
OPS["huber"] = lambda xs, a: F.huber_loss(xs[0], xs[1], delta=a["delta"], reduction=a["reduction"])
OPS["bce_with_logits"] = lambda xs, a: F.binary_cross_entropy_with_logits(
    xs[0], xs[1], pos_weight=xs[2] if len(xs) > 2 else None, reduction=a["reduction"])
OPS["kl_div"] = lambda xs, a: F.kl_div(xs[0], xs[1], reduction="batchmean", log_target=a["log_target"])
OPS["layer_norm"] = lambda xs, a: F.layer_norm(xs[0], a["normalized_shape"], xs[1], xs[2], eps=1e-5)
OPS["rms_norm"] = lambda xs, a: F.rms_norm(xs[0], [xs[0].shape[-1]], xs[1], eps=a["eps"])
OPS["batch_norm_train"] = lambda xs, a: F.batch_norm(
    xs[0], torch.zeros(xs[0].shape[1]), torch.ones(xs[0].shape[1]), xs[1], xs[2], training=True, eps=1e-5)


def loss_cases():
    for red in ["mean", "sum", "none"]:
        case(f"cross_entropy_6x5_{red}", "cross_entropy", lambda: [randn(6, 5), ints(5, 6)],
             {"ignore_index": -100, "label_smoothing": 0.0, "reduction": red})
    case("cross_entropy_weighted_smoothed_ignore", "cross_entropy",
         lambda: [randn(7, 4), torch.tensor([0, 3, 1, 1, 2, 3, 0]), positive(4)],
         {"ignore_index": 1, "label_smoothing": 0.1, "reduction": "mean"}, requires_grad=[True, False, False])
    case("cross_entropy_spatial_2x3x4", "cross_entropy", lambda: [randn(2, 3, 4), ints(3, 2, 4)],
         {"ignore_index": -100, "label_smoothing": 0.2, "reduction": "mean"})
    case("nll_5x4", "nll", lambda: [torch.log_softmax(randn(5, 4), 1), torch.tensor([0, 3, 2, 2, 1])],
         {"ignore_index": 2, "reduction": "mean"})
    for name in ["mse", "l1"]:
        case(f"{name}_3x4", name, lambda: [randn(3, 4), randn(3, 4)], {"reduction": "mean"})
    case("huber_4x5", "huber", lambda: [randn(4, 5) * 2, randn(4, 5)], {"delta": 1.0, "reduction": "mean"})
    case("bce_with_logits_3x4", "bce_with_logits", lambda: [randn(3, 4) * 3, torch.rand(3, 4)], {"reduction": "mean"},
         requires_grad=[True, False])
    case("bce_with_logits_posweight", "bce_with_logits", lambda: [randn(5, 3), torch.rand(5, 3), positive(3)],
         {"reduction": "sum"}, requires_grad=[True, False, False])
    case("kl_div_4x6", "kl_div", lambda: [torch.log_softmax(randn(4, 6), 1), torch.softmax(randn(4, 6), 1)],
         {"log_target": False})
    case("kl_div_log_target_3x5", "kl_div", lambda: [torch.log_softmax(randn(3, 5), 1), torch.log_softmax(randn(3, 5), 1)],
         {"log_target": True})
    case("layer_norm_2x3x8", "layer_norm", lambda: [randn(2, 3, 8), randn(8), randn(8)], {"normalized_shape": [8]})
    case("rms_norm_4x6", "rms_norm", lambda: [randn(4, 6), randn(6)], {"eps": 1e-6})
    case("batch_norm_train_4x3x2x5", "batch_norm_train", lambda: [randn(4, 3, 2, 5), randn(3), randn(3)], {})
    case("batch_norm_train_6x4", "batch_norm_train", lambda: [randn(6, 4), randn(4), randn(4)], {})


def main():
    for group in [unary_cases, binary_cases, comparison_cases, where_cases, reduction_cases,
                  movement_cases, indexing_cases, matmul_cases, conv_cases, pool_cases,
                  dtype_cases, loss_cases]:
        group()

    names = [c["name"] for c in CASES]
    dupes = [n for n, k in Counter(names).items() if k > 1]
    assert not dupes, f"duplicate case names: {dupes}"

    header = {"generator": GENERATOR, "torch_version": torch.__version__}
    lines = ["{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in header.items())
             + ',"cases":[']
    lines.append(",\n".join(dump_json(c) for c in CASES))
    lines.append("]}")
    os.makedirs(os.path.dirname(OUT_PATH), exist_ok=True)
    with open(OUT_PATH, "w") as f:
        f.write("\n".join(lines) + "\n")

    doc = self_check(OUT_PATH)

    counts = Counter(c["op"] for c in doc["cases"])
    print(f"{'op':<22}cases")
    for name, k in sorted(counts.items()):
        print(f"  {name:<20}{k}")
    size = os.path.getsize(OUT_PATH)
    print(f"{len(doc['cases'])} cases, {len(counts)} ops, {size} bytes "
          f"({size / 1e6:.2f} MB) -> {os.path.relpath(OUT_PATH, REPO_ROOT)}")
    print("self-check: every case recomputed from the file matches bit for bit")


if __name__ == "__main__":
    sys.exit(main())
