"""Token layers: embedding (ids -> vectors), posembedding (a learned position table added) and
clstoken (a learned token prepended), as language models and vision transformers begin.

Sequences flow batch first, (N, T, E). None of these multiplies anything: their MACs are 0.
"""

from __future__ import annotations

from typing import Any

from ..errors import SchemaError, ShapeError
from ..lazy import np
from .base import Arg, Index, Int, Layer, Name, Opt, Shape, fmt_shape, register
from .peers import EMBED, row, rules


@register
class Embedding(Layer):
    type_name = "embedding"
    summary = "a lookup table: integer token ids (N, *) -> vectors (N, *, embedding_dim)"
    args = (
        Arg("num_embeddings", Int()),
        Arg("embedding_dim", Int()),
        Arg("padding_idx", Opt(Index()), None, "this id's row gets no gradient; negative counts back"),
        Arg("tied_to", Opt(Name()), None, "an earlier embedding's name (another stream's too): use its table, adding no params"),
    )
    shape_rule = "(N, *) integer ids in [0, num_embeddings) -> (N, *, embedding_dim); the network's first layer"
    params_rule = "weight num_embeddings·embedding_dim; a tied_to table is the owner's and adds none"
    macs_rule = "0 (a lookup)"
    peer_rules = rules(torchinfo="N·num_embeddings·embedding_dim (params × output.shape[0])")
    inert_args = ("padding_idx",)
    example = ([6], {"num_embeddings": 10, "embedding_dim": 4})

    num_embeddings: int
    embedding_dim: int
    padding_idx: int | None
    tied_to: str | None

    def shared_params(self) -> dict[str, str]:
        # T5 reads one table for the encoder's tokens, the decoder's and the output head
        return {"weight": self.tied_to} if self.tied_to else {}

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        pad, v = self.padding_idx, self.num_embeddings
        if pad is not None and not -v <= pad < v:
            raise SchemaError(f"padding_idx: {pad} is outside [-{v}, {v - 1}] (num_embeddings {v})", value=pad)
        # a negative index counts back from the end, as nn.Embedding stores it
        self.pad_row: int | None = None if pad is None else pad % v

    def input_ids(self) -> int | None:
        return self.num_embeddings

    def frozen_rows(self) -> dict[str, tuple[tuple[int, ...], str]]:
        # nn.Embedding's padding_idx: that row is read by the lookup like any other, but "never updated"
        return {} if self.pad_row is None else {"weight": ((self.pad_row,), "padding_idx, never trained")}

    def needed_ids(self) -> tuple[int, ...]:
        return () if self.pad_row is None else (self.pad_row,)

    def output_shape(self, x: Shape) -> Shape:
        return (*x, self.embedding_dim)

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        return {"weight": (self.num_embeddings, self.embedding_dim)}

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        # torchinfo charges every module with a `weight` output.shape[0] x its parameter count;
        # the other tools see a lookup (aten::embedding), not arithmetic
        return [row(EMBED, torchinfo=x[0] * self.num_embeddings * self.embedding_dim)]

    def init_params(self, x: Shape, rng: Any) -> dict[str, Any]:
        weight = rng.standard_normal((self.num_embeddings, self.embedding_dim))
        if self.pad_row is not None:
            weight[self.pad_row] = 0.0  # nn.Embedding zeroes the padding row at construction
        return {"weight": weight}

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        ids = np.asarray(x).astype(np.int64)
        # F.embedding: the padding row is read like any other (zero at construction); padding_idx
        # changes only its gradient (see backward)
        return params["weight"][ids], ids

    def backward(self, dy: Any, params: dict[str, Any], ids: Any) -> tuple[Any, dict[str, Any]]:
        # each output row came from one table row: scatter-add dy back (an id used twice gets
        # both rows' gradients); ids are integers, so there is no input gradient
        dw = np.zeros_like(params["weight"])
        np.add.at(dw, ids.reshape(-1), dy.reshape(-1, dy.shape[-1]))
        if self.pad_row is not None:
            dw[self.pad_row] = 0.0  # the padding row is never trained: zero by definition, as PyTorch's
        return None, {"weight": dw}


class _Sequence(Layer):
    """A layer on batch-first sequences (N, T, E)."""

    def check_sequence(self, x: Shape) -> None:
        """Raise ShapeError unless x is (N, T, E)."""
        self.expect_rank(x, 3, layout="(N, T, E)")


@register
class PosEmbedding(_Sequence):
    type_name = "posembedding"
    summary = "adds a learned table's rows offset..offset+T-1 to (N, T, E)"
    args = (
        Arg("num_positions", Opt(Int()), None, "null = T + offset"),
        Arg("offset", Int(low=0), 0, "the first row read (OPT reads from row 2)"),
    )
    shape_rule = "unchanged: (N, T, E); T + offset <= num_positions"
    params_rule = "pos_embedding num_positions·E (num_positions null = T + offset)"
    macs_rule = "0 (an addition)"
    peer_rules = rules()
    example = ([5, 4], {})

    num_positions: int | None
    offset: int

    def output_shape(self, x: Shape) -> Shape:
        self.check_sequence(x)
        if self.num_positions is not None and x[1] + self.offset > self.num_positions:
            past = f" + offset {self.offset}" if self.offset else ""
            raise ShapeError(
                f"sequence length {x[1]}{past} exceeds num_positions {self.num_positions} (input {fmt_shape(x)})",
                value=x[1],
            )
        return x

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        return {"pos_embedding": (self.num_positions or x[1] + self.offset, x[2])}

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        rows = params["pos_embedding"]
        return x + rows[self.offset : self.offset + x.shape[1]], rows.shape[0]

    def backward(self, dy: Any, params: dict[str, Any], rows: Any) -> tuple[Any, dict[str, Any]]:
        # rows offset..offset+T-1 are added to every sample; the others get no gradient
        dtable = np.zeros((rows, dy.shape[2]), dtype=dy.dtype)
        dtable[self.offset : self.offset + dy.shape[1]] = dy.sum(axis=0)
        return dy, {"pos_embedding": dtable}


@register
class ClsToken(_Sequence):
    type_name = "clstoken"
    summary = "prepends one learned token: (N, T, E) -> (N, T+1, E)"
    shape_rule = "(N, T, E) -> (N, T + 1, E)"
    params_rule = "class_token E"
    macs_rule = "0 (a concatenation)"
    peer_rules = rules()
    example = ([5, 4], {})

    def output_shape(self, x: Shape) -> Shape:
        self.check_sequence(x)
        return (x[0], x[1] + 1, x[2])

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        return {"class_token": (1, 1, x[2])}

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        token = np.broadcast_to(params["class_token"], (x.shape[0], 1, x.shape[2]))
        return np.concatenate([token, x], axis=1), None

    def backward(self, dy: Any, params: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        # position 0 is the shared token (its gradient sums over the batch); the rest is x
        return dy[:, 1:], {"class_token": dy[:, :1].sum(axis=0, keepdims=True)}

