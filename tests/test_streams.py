"""Networks of several streams: named inputs and `from:`, cross-attention, T5's relative position
bias and tied tables across streams.

- hand-computed rows of cross-attention (q and o over T positions, k and v over S) and of a
  relative bias (num_buckets × heads, 0 MACs), and the totals of a small encoder-decoder;
- PyTorch as the oracle: nn.MultiheadAttention(kdim=, vdim=) params and forward, T5's bucket
  function, a T5 attention with its relative bias; the shipped T5-small and Whisper-tiny configs
  against transformers' models (meta device, eager attention), in total and module by module;
- verify: every check of a small encoder-decoder passes, and a wrong gradient into the encoder's
  output (the stream cross-attention reads) fails it;
- bad streams: one line naming file, line and layer, exit 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from layercalc import analyse
from layercalc.verify import verify
from layercalc.layers.attention import Attention, RelativeBias, relative_buckets
from layercalc.layers.numerics import stream_key

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
ROOT = Path(__file__).resolve().parent.parent

# a small encoder-decoder: encoder of width 8 over S = 6 positions, decoder of width 8 over T = 5
SMALL = {
    "name": "small_streams",
    "input": {"enc": [6, 8], "dec": [5]},
    "layers": [
        {"linear": {"out_features": 8}, "name": "encoder", "from": "enc"},
        {"embedding": {"num_embeddings": 11, "embedding_dim": 8}, "name": "embed", "from": "dec"},
        {"sequential": {"layers": [
            {"attention": {"num_heads": 2, "relative_bias": {"num_buckets": 8, "max_distance": 16,
                                                             "bidirectional": False}}, "name": "first"},
            {"attention": {"num_heads": 2}, "name": "later"},
            {"attention": {"num_heads": 2, "cross": "encoder"}, "name": "cross"},
        ]}, "name": "decoder"},
        {"linear": {"out_features": 11, "bias": False, "tied_to": "embed"}, "name": "head"},
    ],
}


def _rows(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in analyse(config).rows()}


def test_cross_attention_by_hand() -> None:
    rows = _rows(SMALL)
    # cross: q 8·8, k 8·8, v 8·8, o 8·8 = 256 params (no bias); MACs q and o over T = 5 positions
    # (2·5·64 = 640), k and v over S = 6 (2·6·64 = 768), q·kᵀ and A·v 2·N·h·T·S·d = 2·2·5·6·4 = 480
    assert rows["cross"]["params"] == 256
    assert rows["cross"]["macs"] == 640 + 768 + 480
    assert rows["cross"]["input_shape"] == [1, 5, 8]  # what it read: the flow, not the encoder
    # first: 4·64 + the 8 × 2 relative bias table = 272; the bias adds no MACs: 4·5·64 + 2·2·25·4
    assert rows["first"]["params"] == 256 + 16
    assert rows["first"]["macs"] == 4 * 5 * 64 + 2 * 2 * 25 * 4
    assert rows["later"]["params"] == 256  # reads first's table: counted there
    assert rows["embed"]["input_shape"] == [1, 5] and rows["encoder"]["input_shape"] == [1, 6, 8]
    report = analyse(SMALL)
    assert report.total["params"] == 72 + 88 + 272 + 256 + 256  # the head's weight is embed's
    assert report.output_shape == (1, 5, 11)
    # KV cache: first and later keep 2·2·5·4 each (causal), cross keeps S = 6 positions: 2·2·6·4
    assert report.total["kv_cache_bytes"] == 4 * (80 + 80 + 96)
    # input memory: the encoder's 48 float32 values and the decoder's 5 int64 ids
    assert report.total["input_bytes"] == 48 * 4 + 5 * 8


def test_relative_bias_owned_by_each_copy_of_a_repeat_that_declares_it() -> None:
    config = {"input": [5, 8], "layers": [{"attention": {"num_heads": 2, "relative_bias": {"num_buckets": 8}}},
                                           {"attention": {"num_heads": 2, "relative_bias": {"num_buckets": 8}},
                                            "repeat": 3}]}
    assert analyse(config).total["params"] == 4 * (256 + 16)


def test_multiheadattention_cross_params_and_forward_match_torch() -> None:
    torch = pytest.importorskip("torch")
    config = {"input": {"enc": [6, 12], "dec": [5, 8]},
              "layers": [{"identity": None, "name": "memory", "from": "enc"},
                         {"multiheadattention": {"num_heads": 2, "cross": "memory"}, "from": "dec", "name": "mha"}]}
    report = analyse(config)
    mha = torch.nn.MultiheadAttention(8, 2, kdim=12, vdim=12, batch_first=True)
    assert report.total["params"] == sum(p.numel() for p in mha.parameters())
    row = _rows(config)["mha"]
    # q and o over T = 5 positions of E 8; k and v over S = 6 positions of E_mem 12; 2·h·T·S·d
    assert row["macs"] == 2 * 5 * 64 + 2 * 6 * 12 * 8 + 2 * 2 * 5 * 6 * 4
    layer = report.entries[1].layer
    params = {k: v.detach().double().numpy() for k, v in mha.named_parameters()}
    x, mem = np.random.default_rng(0).standard_normal((2, 5, 8)), np.random.default_rng(1).standard_normal((2, 6, 12))
    ours, _ = layer.forward(x, {**params, stream_key("memory"): mem})
    mha.double()
    theirs, _ = mha(torch.tensor(x), torch.tensor(mem), torch.tensor(mem), need_weights=False)
    assert np.allclose(ours, theirs.detach().numpy(), atol=1e-10)


def test_relative_buckets_match_t5() -> None:
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import torch

    bucket = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket
    for queries, keys in ((300, 300), (7, 400), (129, 1)):
        rel = torch.arange(keys)[None, :] - torch.arange(queries)[:, None]
        for bidirectional in (True, False):
            for buckets, distance in ((32, 128), (16, 40)):
                want = bucket(rel, bidirectional=bidirectional, num_buckets=buckets, max_distance=distance).numpy()
                got = relative_buckets(queries, keys, RelativeBias(buckets, distance, bidirectional))
                assert (got == want).all(), (queries, keys, bidirectional, buckets)


def test_relative_bias_forward_matches_t5_attention() -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    t5 = transformers.T5Config(d_model=8, d_kv=4, num_heads=2, relative_attention_num_buckets=8,
                               relative_attention_max_distance=16, dropout_rate=0.0, is_decoder=False)
    torch.manual_seed(0)
    theirs = transformers.models.t5.modeling_t5.T5Attention(t5, has_relative_attention_bias=True).double().eval()
    ours = Attention(num_heads=2, head_dim=4, causal=False, relative_bias=RelativeBias(8, 16, True))
    # T5 does not scale q·kᵀ by 1/√d (its initialisation does): q's weight times √d gives its logits
    params = {"q_proj.weight": theirs.q.weight.detach().numpy() * 2.0, "k_proj.weight": theirs.k.weight.detach().numpy(),
              "v_proj.weight": theirs.v.weight.detach().numpy(), "o_proj.weight": theirs.o.weight.detach().numpy(),
              "relative_attention_bias.weight": theirs.relative_attention_bias.weight.detach().numpy()}
    x = np.random.default_rng(2).standard_normal((2, 7, 8))
    want = theirs(torch.tensor(x))[0].detach().numpy()
    got, _ = ours.forward(x, params)
    assert np.allclose(got, want, atol=1e-10)


def _flops(model: Any, **inputs: Any) -> dict[str, int]:
    """MACs (FlopCounterMode / 2) by module name, the model's class name dropped."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(**inputs)
    return {name.split(".", 1)[1] if "." in name else "": sum(ops.values()) // 2
            for name, ops in counter.get_flop_counts().items()}


def _t5_name(path: str) -> str:
    """Our path -> T5's module name: encoder.block0.1.body.DenseReluDense -> encoder.block.0.layer.1.DenseReluDense,
    encoder.block.2.0.body.SelfAttention -> encoder.block.3.layer.0.SelfAttention."""
    parts = [p for p in path.split(".") if p != "body"]
    if len(parts) >= 2 and parts[1] == "block0":
        parts = [parts[0], "block", "0", *parts[2:]]
    elif len(parts) >= 3 and parts[1] == "block":
        parts = [parts[0], "block", str(int(parts[2]) + 1), *parts[3:]]
    if len(parts) >= 4 and parts[1] == "block":
        parts = [*parts[:3], "layer", *parts[3:]]
    return ".".join(parts)


def _compare(config: dict[str, Any], model: Any, flops: dict[str, int], name: Any, prefix: str,
             holds_table: tuple[str, ...] = ()) -> set[str]:
    """Every row whose module the model has: params (the module's own, ties aside; not of the
    modules that also hold the shared table, `holds_table`) and MACs."""
    import torch

    params = {n.removeprefix(prefix): sum(p.numel() for p in m.parameters()) for n, m in model.named_modules()
              if not isinstance(m, torch.nn.ModuleList)}
    macs = {n.removeprefix(prefix): v for n, v in flops.items()}
    compared = set()
    for row in analyse(config).rows():
        theirs = name(row["path"])
        if theirs in params and row["type"] != "repeat":
            assert row["macs"] == macs.get(theirs, 0), theirs
            if "tied_to" not in row["arguments"] and not theirs.endswith("embed_tokens") and theirs not in holds_table:
                assert row["params"] == params[theirs], theirs
            compared.add(theirs)
    return compared


def test_t5_small_against_transformers() -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = yaml.safe_load((CONFIGS / "t5_small.yaml").read_text())
    config["input"] = {"input_ids": [32], "decoder_input_ids": [16]}  # S = 32 encoder tokens, T = 16 decoder
    with torch.device("meta"):
        model = transformers.T5ForConditionalGeneration(transformers.T5Config(attn_implementation="eager")).eval()
    ids = torch.zeros((1, 32), dtype=torch.long, device="meta")
    dec = torch.zeros((1, 16), dtype=torch.long, device="meta")
    flops = _flops(model, input_ids=ids, decoder_input_ids=dec)
    report = analyse(config)
    assert report.total["params"] == sum(p.numel() for p in model.parameters()) == 60_506_624
    assert report.total["buffers"] == 0 == sum(b.numel() for b in model.buffers())
    assert report.total["macs"] == flops[""]
    # T5's encoder and decoder modules each hold the shared table as their embed_tokens
    compared = _compare(config, model, flops, _t5_name, "", holds_table=("encoder", "decoder"))
    for stack, sublayers in (("encoder", ("SelfAttention", "DenseReluDense")),
                             ("decoder", ("SelfAttention", "EncDecAttention", "DenseReluDense"))):
        for i in range(6):
            for j, sub in enumerate(sublayers):
                assert f"{stack}.block.{i}.layer.{j}.{sub}" in compared
    assert {"shared", "encoder", "decoder", "lm_head", "encoder.final_layer_norm"} <= compared


def _whisper_name(path: str) -> str:
    """encoder.layers.2.0.body.self_attn -> encoder.layers.2.self_attn; decoder.layers.1.1.body.encoder_attn too."""
    parts = path.split(".")
    if len(parts) >= 5 and parts[1] == "layers":
        parts = parts[:3] + parts[5:]
    return ".".join(parts)


def test_whisper_tiny_against_transformers() -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = yaml.safe_load((CONFIGS / "whisper_tiny.yaml").read_text())
    config["input"]["decoder_input_ids"] = [16]
    with torch.device("meta"):
        model = transformers.WhisperForConditionalGeneration(
            transformers.WhisperConfig(attn_implementation="eager")).eval()
    feats = torch.zeros((1, 80, 3000), device="meta")
    dec = torch.zeros((1, 16), dtype=torch.long, device="meta")
    flops = _flops(model, input_features=feats, decoder_input_ids=dec)
    report = analyse(config)
    assert report.total["params"] == sum(p.numel() for p in model.parameters()) == 37_760_640
    # the encoder's sinusoidal table is a parameter transformers freezes, not a buffer
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert report.total["frozen_params"] == frozen == 1500 * 384
    assert report.total["buffers"] == 0 == sum(b.numel() for b in model.buffers())
    assert report.total["macs"] == flops[""]
    compared = _compare(config, model, flops, _whisper_name, "model.")
    for i in range(4):
        assert {f"encoder.layers.{i}.self_attn", f"decoder.layers.{i}.encoder_attn",
                f"decoder.layers.{i}.self_attn", f"encoder.layers.{i}.fc1"} <= compared
    assert {"encoder.conv1", "encoder.conv2", "decoder.embed_positions", "proj_out"} <= compared


def test_verify_small_encoder_decoder() -> None:
    result = verify(analyse(SMALL))
    assert result.checks and all(c.passed for c in result.checks)
    # the encoder's output gets its gradient from cross-attention: checked in the network's pass
    # and as an input of the cross layer's own check
    assert any("encoder" in c.note or "encoder" in c.check for c in result.checks if c.name == "cross")


def test_verify_catches_a_wrong_gradient_into_the_other_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    backward = Attention.backward

    def halved(self: Attention, dy: Any, params: dict[str, Any], cache: Any) -> Any:
        dx, grads = backward(self, dy, params, cache)
        for key in grads:
            if key.startswith("stream:"):
                grads[key] = grads[key] * 0.5
        return dx, grads

    monkeypatch.setattr(Attention, "backward", halved)
    result = verify(analyse(SMALL))
    failed = {c.path or "(network)" for c in result.checks if not c.passed}
    assert "decoder.cross" in failed and "(network)" in failed


def test_named_input_override() -> None:
    report = analyse(SMALL, input=["enc=4x8", "dec=3"])
    rows = {row["name"]: row for row in report.rows()}
    assert rows["cross"]["macs"] == 2 * 3 * 64 + 2 * 4 * 64 + 2 * 2 * 3 * 4 * 4


BAD = [
    ("cross-later", [{"attention": {"num_heads": 2, "cross": "later"}, "from": "dec"},
                     {"linear": {"out_features": 8}, "name": "later"}], "names no input and no earlier top-level entry"),
    ("from-nothing", [{"linear": {"out_features": 8}, "from": "nowhere"}], "from: 'nowhere' names no input"),
    ("cross-width", [{"identity": None, "name": "memory", "from": "enc"},
                     {"multiheadattention": {"num_heads": 2, "cross": "memory", "kdim": 4}, "from": "dec"}],
     "kdim 4 does not match the keys' width 8"),
    ("causal-cross", [{"identity": None, "name": "memory", "from": "enc"},
                      {"attention": {"num_heads": 2, "cross": "memory", "causal": True}, "from": "dec"}],
     "never causal"),
    ("ids-twice", [{"embedding": {"num_embeddings": 5, "embedding_dim": 8}, "from": "ids"},
                   {"linear": {"out_features": 8}, "from": "ids"}], "one input feeds one kind of stream"),
    ("no-from", [{"linear": {"out_features": 8}}], "the first entry names the one it reads with from:"),
]


@pytest.mark.parametrize("case, layers, message", BAD, ids=[b[0] for b in BAD])
def test_bad_streams(tmp_path: Path, case: str, layers: list[Any], message: str) -> None:
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump({"input": {"enc": [6, 8], "dec": [5, 8], "ids": [5]}, "layers": layers},
                                   sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "layercalc", "summary", str(path)], capture_output=True, text=True,
                          env=env, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert lines[0].startswith(f"error: {path}:") and "layers[" in lines[0] and "(" in lines[0]


def test_serve_t5_small() -> None:
    from layercalc.api import serve

    config = yaml.safe_load((CONFIGS / "t5_small.yaml").read_text())
    config["input"] = {"input_ids": [32], "decoder_input_ids": [16]}
    plan = serve(config, prompt=16, generate=4)
    # per generated position: 6 decoder self-attention layers keep k and v of 8 heads × 64, float32
    assert plan["memory"]["kv_cache_per_token"] == 6 * 2 * 512 * 4
    # the cache: 20 positions of that, and the 6 cross-attention layers' k and v of the S = 32 encoder tokens
    assert plan["memory"]["kv_cache"] == 20 * 6 * 2 * 512 * 4 + 6 * 2 * 32 * 512 * 4
    # the prefill runs the encoder on 32 tokens and the decoder on 16: FlopCounterMode's count of
    # T5ForConditionalGeneration at those lengths (2 × 1,331,167,232 MACs)
    assert plan["prefill"]["flops"] == 2 * 1_331_167_232


def test_peer_counts_of_cross_multiheadattention() -> None:
    """Each tool's count of nn.MultiheadAttention(64, 4, kdim=96, vdim=96) at T = 10 queries over S = 24
    keys, as the tools report it (measured on torch 2.13, fvcore, thop, ptflops and torchinfo): the
    projections 2·10·64² + 2·24·96·64 = 376,832 for FlopCounterMode and fvcore (no fast path: query
    and key differ; no count for the attention kernel), ptflops' own hook 620,160, thop and torchinfo 0."""
    from layercalc.api import report_data

    config = {"input": {"enc": [24, 96], "dec": [10, 64]},
              "layers": [{"identity": None, "name": "memory", "from": "enc"},
                         {"multiheadattention": {"num_heads": 4, "cross": "memory"}, "from": "dec"}]}
    want = {"torch": 376_832, "fvcore": 376_832, "ptflops": 620_160, "thop": 0, "torchinfo": 0}
    for convention, macs in want.items():
        assert report_data(analyse(config), convention=convention)["total"]["macs"] == macs, convention


def test_a_pass_over_a_block_that_reads_another_stream() -> None:
    """A block checked in one pass (as verify checks a large network's blocks) draws the stream its
    cross-attention reads, and checks its gradient as an input."""
    from layercalc.verify import Options
    from layercalc.verify.checks import check_network
    from layercalc.verify.execution import build, share_streams

    report = analyse(SMALL)
    decoder = next(e for e in report.entries if e.name == "decoder")
    inst = share_streams(build(decoder, decoder.seg, decoder.name, np.random.default_rng(0)))
    rows = dict(check_network(inst, Options(), np.random.default_rng(1), lambda b: True))
    checks = [c for cs in rows.values() for c in cs]
    assert checks and all(c.passed for c in checks)
    # x (1·5·8), every parameter array (784, and the 8 × 2 table `later` reads as its own) and the
    # encoder's output (1·6·8) move together in the block's numeric check
    assert any(c.note.startswith(f"{40 + 784 + 16 + 48} elements") for c in rows[inst])


def test_a_checks_own_forward_leaves_the_networks_streams_as_they_were() -> None:
    """A check run inside the network's pass draws its own values for the streams it reads (and
    its forward writes its entries' outputs there); the network's values come back afterwards,
    when it ends normally and when it raises, for the checks after it."""
    from layercalc.verify import Options, build_network
    from layercalc.verify.checks import streams_restored

    root = build_network(analyse("input: [4]\nlayers:\n  - linear: {out_features: 3}\n"), Options())
    root.streams.values.update({"memory": "the network's", "linear1": "its output"})
    with streams_restored(root) as values:
        values.update({"memory": "drawn", "other": "new"})
    assert root.streams.values == {"memory": "the network's", "linear1": "its output"}
    with pytest.raises(KeyboardInterrupt), streams_restored(root) as values:
        values.clear()
        raise KeyboardInterrupt
    assert root.streams.values == {"memory": "the network's", "linear1": "its output"}
