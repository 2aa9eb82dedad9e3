"""How channels flow through a jaxpr: the axis propagation behind
:func:`jaxcomp.prune.groups.dependency_groups`.

A union-find over *axis nodes* (``_Nodes``); :func:`analyze` walks a jaxpr and,
per primitive, joins the axes that must share one channel index (elementwise ops,
``dot_general``, convolutions, reshapes as factor lists) and blocks those that are
unsafe to shrink (reductions, concatenations, slices, gathers, unknown primitives).
See the ``groups`` module docstring for the rules.

Example:
    >>> "dot_general" in CALLS, "add" in ELEMENTWISE
    (False, True)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

Desc = tuple[int, ...]  # one axis: its factor nodes, major to minor (size-1 factors dropped)

# Shape-preserving elementwise primitives (every operand has the output's rank or is a scalar).
ELEMENTWISE = frozenset("""
neg exp exp2 log log1p expm1 tanh logistic sin cos tan asin acos atan sinh cosh asinh acosh
atanh abs sign sqrt rsqrt cbrt integer_pow square convert_element_type floor ceil round
is_finite not erf erfc erf_inv copy copy_p reduce_precision real imag conj lgamma digamma
add sub mul div max min pow atan2 rem eq ne lt le gt ge and or xor select_n clamp nextafter
add_any stop_gradient optimization_barrier
""".split())
REDUCTIONS = frozenset("reduce_sum reduce_max reduce_min reduce_prod reduce_and reduce_or "
                       "reduce_xor argmax argmin".split())
CALLS = frozenset("jit pjit closed_call core_call custom_jvp_call custom_vjp_call "
                  "custom_vjp_call_jaxpr remat checkpoint custom_lin".split())


class _Nodes:
    """Union-find over axis nodes; a root may be *blocked* or *aliased* to a factor list."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []
        self.blocked: list[bool] = []
        self.alias: dict[int, Desc] = {}

    def new(self, size: int, blocked: bool = False) -> int:
        self.parent.append(len(self.parent))
        self.size.append(int(size))
        self.blocked.append(blocked)
        return len(self.parent) - 1

    def fresh(self, shape: Sequence[int], blocked: bool = False) -> tuple[Desc, ...]:
        return tuple(((self.new(d, blocked),) if d != 1 else ()) for d in shape)

    def find(self, n: int) -> int:
        root = n
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[n] != root:
            self.parent[n], n = root, self.parent[n]
        return root

    def expand(self, desc: Desc) -> Desc:
        out: list[int] = []
        for n in desc:
            r = self.find(n)
            out.extend(self.expand(self.alias[r]) if r in self.alias else (n,))
        return tuple(out)

    def block(self, desc: Desc) -> None:
        for n in self.expand(desc):
            self.blocked[self.find(n)] = True

    def _union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
            self.blocked[ra] = self.blocked[ra] or self.blocked[rb]

    def unify(self, a: Desc, b: Desc) -> None:
        a, b = self.expand(a), self.expand(b)
        sa, sb = [self.size[n] for n in a], [self.size[n] for n in b]
        if sa == sb:
            for x, y in zip(a, b, strict=True):
                self._union(x, y)
        elif len(a) == 1 and math.prod(sb) == sa[0]:
            self._alias(a[0], b)
        elif len(b) == 1 and math.prod(sa) == sb[0]:
            self._alias(b[0], a)
        else:  # incompatible factorizations: give up on both
            self.block(a)
            self.block(b)

    def _alias(self, n: int, desc: Desc) -> None:
        r = self.find(n)
        self.alias[r] = desc
        if self.blocked[r]:
            self.block(desc)


@dataclasses.dataclass
class Frame:
    """The axis descriptors of one jaxpr invocation (and of the calls inside it)."""

    env: dict[Any, tuple[Desc, ...]]
    children: dict[int, Frame]


def _read(env, v, nodes: _Nodes) -> tuple[Desc, ...]:
    if isinstance(v, jax.extend.core.Literal) or v not in env:
        return nodes.fresh(np.shape(getattr(v, "val", np.zeros(v.aval.shape))), blocked=True)
    return env[v]


def sub_jaxpr(eqn) -> Any:
    """The called jaxpr of a call-like equation (``jit``, ``custom_jvp_call`` ...), or None."""
    if eqn.primitive.name not in CALLS:
        return None
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        j = eqn.params.get(key)
        if isinstance(j, jax.extend.core.ClosedJaxpr | jax.extend.core.Jaxpr):
            return j
    return None


def analyze(jaxpr, in_descs: Sequence[tuple[Desc, ...]], nodes: _Nodes) -> tuple[list, Frame]:
    """Propagate axis descriptors through ``jaxpr``; returns (output descs, frame)."""
    closed = jaxpr if isinstance(jaxpr, jax.extend.core.ClosedJaxpr) else None
    jx = closed.jaxpr if closed is not None else jaxpr
    env: dict[Any, tuple[Desc, ...]] = {}
    frame = Frame(env, {})
    for v in jx.constvars:
        env[v] = nodes.fresh(v.aval.shape, blocked=True)
    for v, d in zip(jx.invars, in_descs, strict=True):
        env[v] = d
    for i, eqn in enumerate(jx.eqns):
        ins = [_read(env, v, nodes) for v in eqn.invars]
        sub = sub_jaxpr(eqn)
        if sub is not None and len(getattr(sub, "jaxpr", sub).invars) == len(ins):
            outs, frame.children[i] = analyze(sub, ins, nodes)
        else:
            outs = _rule(eqn, ins, nodes)
        for v, d in zip(eqn.outvars, outs, strict=True):
            env[v] = d
    return [_read(env, v, nodes) for v in jx.outvars], frame


def _shape(v) -> tuple[int, ...]:
    return tuple(getattr(v.aval, "shape", ()))


def _rule(eqn, ins: list[tuple[Desc, ...]], nodes: _Nodes) -> list[tuple[Desc, ...]]:
    name, p = eqn.primitive.name, eqn.params
    out_shapes = [_shape(v) for v in eqn.outvars]
    in_shapes = [_shape(v) for v in eqn.invars]
    if name in ELEMENTWISE and len(out_shapes) == 1:
        shape = out_shapes[0]
        result = list(nodes.fresh(shape))
        for d, s in zip(ins, in_shapes, strict=True):
            if len(s) != len(shape):
                if len(s):  # rank-changing "elementwise" op: be safe
                    return _opaque(ins, out_shapes, nodes)
                continue
            for ax, (dim, od) in enumerate(zip(s, shape, strict=True)):
                if dim == od and dim != 1:
                    nodes.unify(result[ax], d[ax])
        return [tuple(result)]
    if name == "broadcast_in_dim":
        shape = out_shapes[0]
        result = list(nodes.fresh(shape))
        for i, ax in enumerate(p["broadcast_dimensions"]):
            if in_shapes[0][i] == shape[ax]:
                result[ax] = ins[0][i]
        return [tuple(result)]
    if name == "reshape" and p.get("dimensions") is None:
        return [_reshape(ins[0], out_shapes[0], nodes)]
    if name == "squeeze":
        dims = {d % len(in_shapes[0]) for d in p["dimensions"]}
        return [tuple(d for i, d in enumerate(ins[0]) if i not in dims)]
    if name == "transpose":
        return [tuple(ins[0][i] for i in p["permutation"])]
    if name == "dot_general":
        return [_dot(ins, p, nodes)]
    if name == "conv_general_dilated":
        return [_conv(ins, in_shapes, out_shapes[0], p, nodes)]
    if name in REDUCTIONS:
        axes = set(p["axes"])
        for ax in axes:
            nodes.block(ins[0][ax])
        kept = tuple(d for i, d in enumerate(ins[0]) if i not in axes)
        return [kept for _ in out_shapes]
    if name.startswith("reduce_window"):
        dims, strides = p["window_dimensions"], p["window_strides"]
        pads = p.get("padding", [(0, 0)] * len(dims))
        outs = []
        for d_in, shape in zip(ins, out_shapes, strict=False):
            fresh = nodes.fresh(shape)
            outs.append(tuple(d if (w == 1 and s == 1 and tuple(pd) == (0, 0)) else f
                              for d, f, w, s, pd in zip(d_in, fresh, dims, strides, pads,
                                                        strict=True)))
        return outs
    if name in ("cumsum", "cumprod", "cummax", "cummin", "cumlogsumexp"):
        nodes.block(ins[0][p["axis"]])
        return [ins[0]]
    if name == "slice" and all(s is None or s == 1 for s in (p.get("strides") or [1])):
        shape = out_shapes[0]
        result = list(nodes.fresh(shape, blocked=True))
        for ax, (a, b, n) in enumerate(zip(p["start_indices"], p["limit_indices"],
                                           in_shapes[0], strict=True)):
            if a == 0 and b == n:
                result[ax] = ins[0][ax]
            else:
                nodes.block(ins[0][ax])
        return [tuple(result)]
    return _opaque(ins, out_shapes, nodes)


def _opaque(ins, out_shapes, nodes: _Nodes) -> list[tuple[Desc, ...]]:
    for d in ins:
        for ax in d:
            nodes.block(ax)
    return [nodes.fresh(s, blocked=True) for s in out_shapes]


def _reshape(desc: tuple[Desc, ...], shape: tuple[int, ...], nodes: _Nodes) -> tuple[Desc, ...]:
    factors = [f for d in desc for f in nodes.expand(d)]
    out, i = [], 0
    for dim in shape:
        acc: list[int] = []
        prod = 1
        while prod < dim and i < len(factors):
            acc.append(factors[i])
            prod *= nodes.size[factors[i]]
            i += 1
        if prod != dim:
            break
        out.append(tuple(acc))
    if len(out) != len(shape) or i != len(factors):
        for d in desc:
            nodes.block(d)
        return nodes.fresh(shape, blocked=True)
    return tuple(out)


def _dot(ins, p, nodes: _Nodes) -> tuple[Desc, ...]:
    (lc, rc), (lb, rb) = p["dimension_numbers"]
    lhs, rhs = ins
    for a, b in zip(list(lc) + list(lb), list(rc) + list(rb), strict=True):
        nodes.unify(lhs[a], rhs[b])
    lfree = [d for i, d in enumerate(lhs) if i not in lc and i not in lb]
    rfree = [d for i, d in enumerate(rhs) if i not in rc and i not in rb]
    return tuple([lhs[i] for i in lb] + lfree + rfree)


def _conv(ins, in_shapes, out_shape, p, nodes: _Nodes) -> tuple[Desc, ...]:
    lhs, rhs = ins
    dn = p["dimension_numbers"]
    lspec, rspec, ospec = dn.lhs_spec, dn.rhs_spec, dn.out_spec
    groups, cin = p["feature_group_count"], in_shapes[0][lspec[1]]
    out = list(nodes.fresh(out_shape))
    out[ospec[0]] = lhs[lspec[0]]
    if p.get("batch_group_count", 1) != 1:
        return _opaque(ins, [out_shape], nodes)[0]
    if groups == 1:
        nodes.unify(lhs[lspec[1]], rhs[rspec[1]])
        out[ospec[1]] = rhs[rspec[0]]
    elif groups == cin and in_shapes[1][rspec[1]] == 1 and in_shapes[1][rspec[0]] == cin:
        nodes.unify(lhs[lspec[1]], rhs[rspec[0]])  # depthwise: channels pass through
        out[ospec[1]] = lhs[lspec[1]]
    else:
        return _opaque(ins, [out_shape], nodes)[0]
    for ax in lspec[2:]:  # spatial input axes are never pruned
        nodes.block(lhs[ax])
    for ax in rspec[2:]:
        nodes.block(rhs[ax])
    return tuple(out)
