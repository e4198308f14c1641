"""moe: a sparse mixture of experts (Mixtral's MixtralSparseMoeBlock), a block made of a router,
num_experts copies of one expert and an optional shared expert."""

from __future__ import annotations

from typing import Any

from ..errors import SchemaError, ShapeError
from ..lazy import np
from .base import Arg, Bool, Int, Layer, LayerList, Node, Shape, fmt_shape, numel, register
from .blocks import Sequential
from .linear import Linear
from .peers import ACT, row, rules

GATE, EXPERTS = "gate", "experts"  # Hugging Face's module names: the router and the expert list


@register
class Moe(Layer):
    type_name = "moe"
    summary = "sparse mixture of experts: a router picks top_k of num_experts experts per token (Mixtral)"
    args = (
        Arg("num_experts", Int()),
        Arg("top_k", Int()),
        Arg("expert", LayerList()),
        Arg("shared", LayerList(min_len=0), [], "[] = none; a shared expert every token runs through"),
        Arg("router_bias", Bool(), False),
    )
    shape_rule = ("(N, ..., E) -> the same; the router and the experts read the tokens flattened,"
                  " (N·T, E), and one expert must give (N·T, E) back")
    params_rule = ("gate E·num_experts (+ num_experts if router_bias) + num_experts × one expert's + the"
                   " shared expert's; active (what a token meets): num_experts − top_k experts fewer")
    buffers_rule = "num_experts × one expert's + the shared expert's"
    macs_rule = ("the gate's + top_k × one expert's over all N·T tokens + the shared expert's (each token"
                 " runs through top_k experts; the softmax, top-k and weighted sum: 0)")
    peer_rules = rules(
        "the gate's, top_k × an expert's and the shared expert's counts (each runs on the tokens routed to it)",
        ptflops="as the others, + N·T·num_experts for the router's F.softmax (functional, not divided by N)",
    )
    example = ([3, 4], {"num_experts": 4, "top_k": 2, "expert": [{"linear": {"out_features": 4}}]})

    num_experts: int
    top_k: int
    expert: list[Node]
    shared: list[Node]
    router_bias: bool

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        if self.top_k > self.num_experts:  # a token cannot pick more experts than there are
            raise SchemaError(f"top_k {self.top_k} exceeds num_experts {self.num_experts}", value=self.top_k)

    def sequences(self) -> list[tuple[str, list[Node]]]:
        # the router and the expert's group are made here, from the arguments as they are now (a
        # smaller copy for verify changes `expert`); a frozen moe freezes them as it does every child
        gate = Node(layer=Linear(out_features=self.num_experts, bias=self.router_bias), name=GATE, named=True)
        experts = Node(layer=Sequential(layers=self.expert), name=EXPERTS, named=True)
        return [("", [gate]), ("", [experts])] + ([("shared", self.shared)] if self.shared else [])

    def multiples(self) -> list[tuple[int, int]]:
        # every expert is held; over all the tokens, top_k of them run for each token
        return [(1, 1), (self.num_experts, self.top_k)] + ([(1, 1)] if self.shared else [])

    def inner_shape(self, x: Shape) -> Shape:
        self.expect_rank(x, *range(2, 9), layout="(N, ..., features)")
        return (numel(x[:-1]), x[-1])

    def combine(self, x: Shape, outs: list[Shape]) -> Shape:
        inner = self.inner_shape(x)
        for what, out in zip((EXPERTS, "shared"), outs[1:]):
            if out != inner:
                raise ShapeError(f"{what} gives {fmt_shape(out)} for tokens {fmt_shape(inner)}; an expert must keep"
                                 " the width (its output is added back per token)", value=out)
        return x

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        # the router's softmax over every token's logits: ptflops counts F.softmax by its input's size
        return [row(ACT, ptflops=(0, numel(x[:-1]) * self.num_experts))]

    # -- NumPy: the routing is a fixed choice per token (the top_k largest router probabilities) --
    def choice(self, logits: Any) -> Any:
        """The chosen expert ids (M, k): each token's top_k logits, the earlier expert first on a tie."""
        return np.argsort(-logits, axis=1, kind="stable")[:, : self.top_k]

    def route(self, logits: Any) -> tuple[Any, Any]:
        """(chosen expert ids (M, k), their weights (M, k)): softmax, top k, renormalised to sum 1,
        as Mixtral's router: the weights are a softmax over the chosen logits alone."""
        chosen = self.choice(logits)
        z = np.take_along_axis(logits, chosen, axis=1)
        w = np.exp(z - z.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        return chosen, w

    def routed_rows(self, k: int, outs: list[Any]) -> Any:
        # expert e (sequence 1 + e) runs on the tokens that chose it, as Mixtral's loop over experts;
        # the router and the shared expert on every token. Its output elsewhere stays zero: merge
        # weighs a token's unchosen experts by nothing, so that zero is never read
        e = k - 1
        if not 0 <= e < self.num_experts:
            return None
        return np.flatnonzero((self.choice(outs[0]) == e).any(axis=1))

    def merge(self, outs: list[Any]) -> Any:
        # y_t = Σ_j w_tj · expert_{c_tj}(x_t) (+ shared(x_t)): each token's chosen experts, weighted
        logits, experts = outs[0], outs[1: 1 + self.num_experts]
        chosen, w = self.route(logits)
        y = np.zeros_like(experts[0])
        for j in range(self.top_k):
            y += w[:, j: j + 1] * _pick(experts, chosen[:, j])
        for out in outs[1 + self.num_experts:]:
            y += out
        return y

    def split(self, dy: Any, outs: list[Any]) -> list[Any]:
        # ∂y/∂expert_e = w_te where token t chose e (else 0); ∂L/∂w_tj = <dy_t, expert_{c_tj}(x_t)>, and
        # through the softmax over the chosen logits ∂L/∂z_tj = w_tj (g_tj − Σ_i w_ti g_ti); other logits get 0
        logits, experts = outs[0], outs[1: 1 + self.num_experts]
        dy = dy.reshape(experts[0].shape)
        chosen, w = self.route(logits)
        weights = np.zeros((len(w), self.num_experts), dtype=w.dtype)  # w_te, 0 where t did not choose e
        np.put_along_axis(weights, chosen, w, axis=1)
        d_experts = [weights[:, e: e + 1] * dy for e in range(self.num_experts)]
        g = np.empty_like(w)
        for j in range(self.top_k):
            g[:, j] = np.einsum("te,te->t", dy, _pick(experts, chosen[:, j]))
        dz = w * (g - (w * g).sum(axis=1, keepdims=True))
        d_logits = np.zeros_like(logits)
        np.put_along_axis(d_logits, chosen, dz, axis=1)
        return [d_logits, *d_experts] + [dy] * (len(outs) - 1 - self.num_experts)


def _pick(experts: list[Any], ids: Any) -> Any:
    """Row t of experts[ids[t]] for every token t: (M, E)."""
    out = np.empty_like(experts[0])
    for e, arr in enumerate(experts):
        rows = ids == e
        out[rows] = arr[rows]
    return out
