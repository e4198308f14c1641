"""The attention family: multiheadattention, attention (Llama-style) and transformerencoderlayer.

- hand-computed rows (shape, params, MACs), with the arithmetic written out;
- PyTorch: params, buffers and output shapes of random configs against torch.nn; the MAC formula
  against FlopCounterMode on a path where every matmul is visible (no fast path, explicit q·kᵀ
  and A·v); each peer convention against the real tool; --training against FlopCounterMode over
  a forward and backward pass; the NumPy forward and backward against torch autograd;
- verify catches three classic attention backward bugs passed with --impl, and names the layer;
- bad head counts: one line naming file, line and layer, exit 2.
"""

from __future__ import annotations

import csv
import json
import os
import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layercalc import analyse
from layercalc.conventions import Costing, training
from optional_torch import torch_models_or_skip, torch_or_skip
from test_layers import CASE_FIELDS, check_case

IMPLS = Path(__file__).resolve().parent / "impls"

try:  # the peer tools' own counts (skipped where torch is missing)
    from peer_tools import tool_total
except BaseException:  # pytest's skip is a BaseException  # noqa: BLE001
    tool_total = None

# (entry, input shape with batch, output shape, params, buffers, macs); MHA and attention MACs:
# projections as linear layers + q·kᵀ + A·v, each N·h·T·T·d
CASES = [
    # E 8, 2 heads (d 4), N 2, T 5: params 4·8² + 4·8 = 288;
    # macs 4·N·T·E² = 4·2·5·64 = 2560, + 2·N·h·T·T·d = 2·2·2·25·4 = 800
    ({"multiheadattention": {"num_heads": 2}}, (2, 5, 8), (2, 5, 8), 4 * 64 + 4 * 8, 0, 2560 + 800),
    # no bias: 4·8² = 256; causal changes nothing in the counts
    ({"multiheadattention": {"num_heads": 2, "bias": False, "causal": True}}, (2, 5, 8), (2, 5, 8), 256, 0, 3360),
    # ViT-B/16's attention: E 768, 12 heads (d 64), T 197: params 4·768² + 4·768 = 2,362,368;
    # macs 4·197·768² = 464,781,312 + 2·12·197·197·64 = 59,610,624
    ({"multiheadattention": {"num_heads": 12}}, (1, 197, 768), (1, 197, 768), 2_362_368, 0, 464_781_312 + 59_610_624),
    # grouped-query with rope and biases: E 8, h 4, kv 2, d 4 (q 16 wide, k and v 8 wide);
    # params q 8·16+16 = 144, k 8·8+8 = 72, v 72, o 16·8+8 = 136 -> 424;
    # macs N·T·(128 + 64 + 64 + 128) = 10·384 = 3840, + 2·N·h·T·T·d = 2·2·4·25·4 = 1600
    (
        {"attention": {"num_heads": 4, "num_kv_heads": 2, "head_dim": 4, "rope": True, "bias": True}},
        (2, 5, 8), (2, 5, 8), 144 + 72 + 72 + 136, 0, 3840 + 1600,
    ),
    # defaults: kv = h = 4, d = 16/4 = 4, no bias: 4·16·16 = 1024; macs 6·1024 = 6144 + 2·4·36·4 = 1152
    ({"attention": {"num_heads": 4}}, (1, 6, 16), (1, 6, 16), 1024, 0, 6144 + 1152),
    # Llama-3-8B's attention: E 4096, h 32, kv 8, d 128, T 16: params 4096·4096 + 2·4096·1024 +
    # 4096·4096 = 41,943,040; macs 16·41,943,040 = 671,088,640 + 2·32·16·16·128 = 2,097,152
    (
        {"attention": {"num_heads": 32, "num_kv_heads": 8, "rope": True, "rope_theta": 500000.0}},
        (1, 16, 4096), (1, 16, 4096), 41_943_040, 0, 671_088_640 + 2_097_152,
    ),
    # biases on some projections: E 8, h 2, kv 1, d 4 (q and o 8 wide, k and v 4 wide), N 1, T 3;
    # weights 64 + 32 + 32 + 64 = 192; macs 3·192 = 576 + 2·1·2·3·3·4 = 144 (biases add no MACs)
    # Qwen2's [q, k, v]: 192 + 8 + 4 + 4 = 208
    ({"attention": {"num_heads": 2, "num_kv_heads": 1, "bias": ["q", "k", "v"]}}, (1, 3, 8), (1, 3, 8), 208, 0, 720),
    # Whisper's [q, v, o]: 192 + 8 + 4 + 8 = 212
    ({"attention": {"num_heads": 2, "num_kv_heads": 1, "bias": ["q", "v", "o"]}}, (1, 3, 8), (1, 3, 8), 212, 0, 720),
    # partial rotary changes the function, not the counts: E 16, h 2 (d 8, 4 dims rotated), T 6;
    # params 4·16·16 = 1024; macs 6·1024 = 6144 + 2·2·36·8 = 1152
    ({"attention": {"num_heads": 2, "rope": True, "partial_rotary_factor": 0.5}}, (1, 6, 16), (1, 6, 16), 1024, 0, 7296),
    # a sliding window masks, it does not skip: E 8, h 2, d 4, N 2, T 5, W 3: 256 params;
    # macs 2·5·256 = 2560 + 2·2·2·25·4 = 800
    ({"attention": {"num_heads": 2, "sliding_window": 3}}, (2, 5, 8), (2, 5, 8), 256, 0, 3360),
    # encoder layer E 8, 2 heads, ff 16: attention 288 + linear1 8·16+16 = 144 + linear2 16·8+8 = 136
    # + 2 layernorms 2·16 = 32 -> 600; macs 3360 + 2·(N·T·8·16 = 1280) = 5920
    ({"transformerencoderlayer": {"nhead": 2, "dim_feedforward": 16, "dropout": 0.0}}, (2, 5, 8), (2, 5, 8), 600, 0, 5920),
    # bias false everywhere (layernorms keep their weight): 256 + 128 + 128 + 8 + 8 = 528
    (
        {"transformerencoderlayer": {"nhead": 2, "dim_feedforward": 16, "bias": False, "norm_first": True,
                                     "dropout": 0.0}},
        (2, 5, 8), (2, 5, 8), 528, 0, 5920,
    ),
    # BERT-base's layer, T 128: 2,362,368 + (768·3072 + 3072 = 2,362,368) + (3072·768 + 768 = 2,360,064)
    # + 4·768 = 7,087,872; macs 4·128·768² = 301,989,888 + 2·12·128·128·64 = 25,165,824
    # + 2·128·768·3072 = 603,979,776
    (
        {"transformerencoderlayer": {"nhead": 12, "dim_feedforward": 3072, "activation": "gelu", "dropout": 0.0}},
        (1, 128, 768), (1, 128, 768), 7_087_872, 0, 301_989_888 + 25_165_824 + 603_979_776,
    ),
]

LAYER_CASES = CASES  # test_layers checks that every layer type has a case somewhere
SMALL = [c for c in CASES if c[1][1] * c[1][2] <= 200]


@pytest.mark.parametrize(CASE_FIELDS, CASES, ids=lambda v: str(v)[:50])
def test_layer_numbers(entry: object, x: tuple, y: tuple, params: int, buffers: int, macs: int) -> None:
    check_case(entry, x, y, params, buffers, macs)


def test_kv_cache_bytes() -> None:
    """2 (k and v) · layers · kv_heads · head_dim · T · N · dtype size; encoders keep none."""
    decoder = {"input": [5, 8], "batch": 2, "dtype": "float16", "layers": [
        {"attention": {"num_heads": 4, "num_kv_heads": 2, "head_dim": 4}, "repeat": 3},
        {"multiheadattention": {"num_heads": 2, "causal": True}},
        {"transformerencoderlayer": {"nhead": 2, "dim_feedforward": 4, "causal": True}},
        {"multiheadattention": {"num_heads": 2}},  # not causal: an encoder layer, no cache
    ]}
    attention = 2 * 3 * 2 * 4 * 5 * 2 * 2  # 3 layers, 2 kv heads of 4, T 5, N 2, 2 bytes
    mha = 2 * 1 * 2 * 4 * 5 * 2 * 2  # 2 heads of 4
    assert analyse(decoder).total["kv_cache_bytes"] == attention + 2 * mha
    encoder = {"input": [5, 8], "layers": [{"transformerencoderlayer": {"nhead": 2}}]}
    assert "kv_cache_bytes" not in analyse(encoder).total


def test_kv_cache_in_footer_and_json(cli, write) -> None:
    path = write("dec.yaml", "input: [16, 64]\nlayers:\n  - attention: {num_heads: 4, num_kv_heads: 2}\n    repeat: 2\n")
    import json

    data = json.loads(cli("summary", path, "-f", "json").out)
    assert data["total"]["kv_cache_bytes"] == 2 * 2 * 2 * 16 * 16 * 1 * 4  # k,v · layers · kv · d · T · N · 4 B
    footer = [line for line in cli("summary", path, "-f", "table").out.splitlines() if line.startswith("KV cache")]
    assert len(footer) == 1 and "8.19 KB" in footer[0]  # 8,192 bytes
    encoder = write("enc.yaml", "input: [16, 64]\nlayers:\n  - multiheadattention: {num_heads: 4}\n")
    assert "KV cache" not in cli("summary", encoder, "-f", "table").out


@pytest.mark.parametrize(
    "layer, message",
    [
        ("multiheadattention: {num_heads: 3}", "num_heads 3 does not divide the embedding width 8"),
        ("attention: {num_heads: 3}", "num_heads 3 does not divide the embedding width 8"),
        ("attention: {num_heads: 4, num_kv_heads: 3}", "num_kv_heads 3 does not divide num_heads 4"),
        ("transformerencoderlayer: {nhead: 5}", "num_heads 5 does not divide the embedding width 8"),
        ("attention: {num_heads: 2, head_dim: 3, rope: true}", "head_dim 3 is odd"),
        ("attention: {num_heads: 2, bias: [q, x]}", "projections among q, k, v, o, not 'x'"),
        ("attention: {num_heads: 2, bias: [q, k, q]}", "projection q is listed twice"),
        ("attention: {num_heads: 2, bias: []}", "expected true, false or a list of the projections"),
        ("multiheadattention: {num_heads: 2, bias: [q, k, v]}", "expected true or false"),
        ("attention: {num_heads: 2, partial_rotary_factor: 0.5}", "partial_rotary_factor 0.5 needs rope: true"),
        ("attention: {num_heads: 2, rope: true, partial_rotary_factor: 0.25}",
         "int(head_dim 4 · partial_rotary_factor 0.25) = 1 is odd"),
        ("attention: {num_heads: 2, causal: false, sliding_window: 3}", "sliding_window 3 needs causal: true"),
        ("attention: {num_heads: 2, sliding_window: 0}", "expected an integer >= 1"),
    ],
)
def test_bad_head_counts(second_entry_refused, layer: str, message: str) -> None:
    assert message in second_entry_refused("[5, 8]", "linear: {out_features: 8}", layer)


# -- verify catches wrong attention backwards -----------------------------------------------------

DECODER = "input: [6, 8]\nbatch: 2\nlayers:\n  - attention: {num_heads: 2}\n    name: attn\n  - gelu\n"


@pytest.mark.parametrize("impl", ["attention_no_softmax_sum.py", "attention_backward_unmasked.py",
                                  "attention_scale_dropped.py"])
def test_wrong_attention_backward_is_caught_and_named(cli, write, impl: str) -> None:
    run = cli("verify", write("dec.yaml", DECODER), "--impl", str(IMPLS / impl), "-f", "tsv")
    assert run.status == 1, run.err
    failed = [r for r in csv.DictReader(io.StringIO(run.out), delimiter="\t") if r["passed"] != "True"]
    assert any(r["path"] == "attn" and r["check"] == "dL/dx" for r in failed), failed


def test_correct_attention_passes_verify(cli, write) -> None:
    config = ("input: [6, 8]\nbatch: 2\nlayers:\n"
              "  - attention: {num_heads: 4, num_kv_heads: 2, rope: true, bias: true}\n"
              "  - attention: {num_heads: 2, bias: [q, v, o]}\n"
              "  - multiheadattention: {num_heads: 2, causal: true}\n"
              "  - transformerencoderlayer: {nhead: 2, dim_feedforward: 12, activation: gelu, norm_first: true}\n"
              "  - transformerencoderlayer: {nhead: 2, dim_feedforward: 12, causal: true, bias: false}\n")
    run = cli("verify", write("ok.yaml", config), "-f", "tsv")
    assert run.status == 0, run.out
    # verify checks a layer's input and parameters along joint directions (one row naming them all)
    checks = " ".join(r["check"] for r in csv.DictReader(io.StringIO(run.out), delimiter="\t"))
    assert all(f" {name}" in checks or f"({name}" in checks
               for name in ("q_proj.weight", "in_proj_weight", "self_attn.in_proj_weight", "norm2.weight"))


# -- against PyTorch ------------------------------------------------------------------------------


@pytest.mark.parametrize("entry, x_shape", [(c[0], c[1]) for c in SMALL], ids=lambda v: str(v)[:50])
def test_forward_and_backward_match_torch(entry: object, x_shape: tuple[int, ...]) -> None:
    torch_models_or_skip()
    from test_reference_torch import test_forward_and_backward_match_torch as check

    # the reference runs torch in training mode, where the encoder layer's attention-weight dropout
    # (its `dropout`, default 0.1) would be live
    (kind, args), = entry.items()  # type: ignore[union-attr]
    args = {**args, "dropout": 0.0} if kind == "transformerencoderlayer" else args
    check({kind: args}, x_shape)
    if "sliding_window" not in args:  # a window is only causal
        check({kind: {**args, "causal": not args.get("causal", kind == "attention")}}, x_shape)


@st.composite
def sequence_config(draw: Any) -> dict[str, Any]:
    """A random stack of attention layers (and the layers around them) on (N, T, E)."""
    heads = draw(st.sampled_from([1, 2, 3, 4]))
    e = heads * draw(st.sampled_from([1, 2, 4]))
    layers: list[Any] = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["mha", "attention", "encoder", "encoder", "other"]))
        h = draw(st.sampled_from([d for d in (1, 2, 3, 4, 6) if e % d == 0]))
        causal = draw(st.booleans())
        if kind == "mha":
            layers.append({"multiheadattention": {"num_heads": h, "bias": draw(st.booleans()), "causal": causal}})
        elif kind == "attention":
            kv = draw(st.sampled_from([k for k in range(1, h + 1) if h % k == 0]))
            head_dim = draw(st.sampled_from([None, 2, 4]))
            rope = draw(st.booleans()) and (head_dim or e // h) % 2 == 0
            factor = draw(st.sampled_from([1.0, 0.5])) if rope and (head_dim or e // h) % 4 == 0 else 1.0
            window = draw(st.sampled_from([None, 1, 2, 4])) if causal else None
            bias = draw(st.one_of(st.booleans(), st.lists(st.sampled_from("qkvo"), min_size=1, max_size=4,
                                                           unique=True)))
            layers.append({"attention": {"num_heads": h, "num_kv_heads": kv, "head_dim": head_dim,
                                         "bias": bias, "causal": causal, "rope": rope,
                                         "partial_rotary_factor": factor, "sliding_window": window}})
        elif kind == "encoder":
            layers.append({"transformerencoderlayer": {
                "nhead": h, "dim_feedforward": draw(st.integers(1, 12)), "bias": draw(st.booleans()),
                "activation": draw(st.sampled_from(["relu", "gelu"])), "norm_first": draw(st.booleans()),
                "causal": causal}})
        else:
            layers.append(draw(st.sampled_from(["layernorm", "gelu", {"linear": {"out_features": e}}])))
    return {"input": [draw(st.integers(1, 6)), e], "batch": draw(st.integers(1, 3)), "layers": layers}


def explicit_macs(model: Any, shape: tuple[int, ...], backward: bool = False) -> int:
    """FlopCounterMode / 2 with every attention matmul visible (no fused fast path, explicit SDPA)."""
    torch = torch_or_skip()
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch_models_or_skip().explicit_attention(), counter:
        if backward:
            model(torch.randn(shape)).sum().backward()
        else:
            with torch.no_grad():
                model(torch.randn(shape))
    return counter.get_total_flops() // 2


@settings(max_examples=int(os.environ.get("ATTN_EXAMPLES", 40)), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequence_config())
def test_random_configs_match_pytorch(config: dict[str, Any]) -> None:
    """params, buffers and output shape as torch.nn; macs as FlopCounterMode sees every matmul."""
    torch_models = torch_models_or_skip()
    model, shape = torch_models.build(config)
    truth = torch_models.counts(model, shape)
    report = analyse(config)
    assert (report.total["params"], report.total["buffers"]) == (truth["params"], truth["buffers"])
    assert report.output_shape == truth["output_shape"]
    assert [tuple(r["output_shape"]) for r in report.rows() if r["depth"] == 0] == truth["leaf_shapes"]
    assert report.total["macs"] == explicit_macs(model, shape)


TOOLS = ["torch", "fvcore", "thop", "ptflops", "torchinfo"]


@settings(max_examples=int(os.environ.get("ATTN_EXAMPLES", 15)), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequence_config())
def test_random_configs_match_each_tool(config: dict[str, Any]) -> None:
    """Each peer convention's total equals what the tool reports (eval model, torch.no_grad())."""
    torch_models_or_skip()
    report = analyse(config)
    for tool in TOOLS:
        assert (Costing(report, tool).total() or 0) == tool_total(tool, config), tool


FIXED = [  # each fast-path condition on and off
    {"input": [5, 8], "batch": 2, "layers": [{"multiheadattention": {"num_heads": 2}}]},
    {"input": [5, 9], "batch": 2, "layers": [{"multiheadattention": {"num_heads": 3}}]},
    {"input": [5, 8], "batch": 1, "layers": [{"multiheadattention": {"num_heads": 2, "causal": True}}]},
    {"input": [4, 8], "batch": 3, "layers": [{"transformerencoderlayer": {"nhead": 2, "dim_feedforward": 6}}]},
    {"input": [4, 8], "batch": 3, "layers": [{"transformerencoderlayer": {"nhead": 2, "causal": True, "norm_first": True}}]},
    {"input": [4, 9], "batch": 2, "layers": [{"transformerencoderlayer": {"nhead": 3, "activation": "gelu"}}]},
    {"input": [4, 8], "batch": 2, "layers": [{"transformerencoderlayer": {"nhead": 2, "bias": False}}]},
    {"input": [6, 16], "batch": 2, "layers": [
        {"attention": {"num_heads": 4, "num_kv_heads": 2, "rope": True, "bias": True}}, "layernorm",
        {"attention": {"num_heads": 2, "head_dim": 6, "causal": False}}]},
    {"input": [5, 8], "batch": 2, "layers": [{"attention": {"num_heads": 2, "num_kv_heads": 1, "bias": ["q", "v", "o"]}}]},
    {"input": [5, 8], "batch": 2, "layers": [{"attention": {"num_heads": 2, "rope": True, "partial_rotary_factor": 0.5,
                                                            "sliding_window": 2}}]},
]


@pytest.mark.parametrize("config", FIXED, ids=lambda c: str(c["layers"])[:60])
@pytest.mark.parametrize("tool", TOOLS)
def test_fast_path_cases_match_each_tool(config: dict[str, Any], tool: str) -> None:
    torch_models_or_skip()
    assert (Costing(analyse(config), tool).total() or 0) == tool_total(tool, config)


@pytest.mark.parametrize("config", FIXED, ids=lambda c: str(c["layers"])[:60])
def test_training_matches_flopcountermode(config: dict[str, Any]) -> None:
    """torch: FlopCounterMode over forward + backward with grad enabled (the real kernels);
    layercalc: the same with every attention matmul visible, which the full formula must equal."""
    torch = torch_or_skip()
    from torch.utils.flop_counter import FlopCounterMode

    torch_models = torch_models_or_skip()
    model, shape = torch_models.build(config)
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.randn(shape)).sum().backward()
    report = analyse(config)
    assert training(report, "torch")["training_flops"] == counter.get_total_flops()
    model.zero_grad()
    assert training(report, "layercalc")["training_macs"] == explicit_macs(model, shape, backward=True)


def test_compare_has_an_attention_row(cli, write) -> None:
    path = write("enc.yaml", "input: [4, 8]\nbatch: 2\nlayers:\n  - multiheadattention: {num_heads: 2}\n")
    rows = {r["category"]: r for r in csv.DictReader(io.StringIO(cli("flops", path, "--compare", "-f", "tsv").out),
                                                     delimiter="\t")}
    # q·kᵀ and A·v: 2·N·h·T·T·d = 2·2·2·16·4 = 512; ptflops per sample: T·E (q scaling) = 32 plus
    # h·T·T·(2d + 1) = 2·16·9 = 288, ×N / N
    assert rows["attention"]["layercalc"] == str(512)
    assert rows["attention"]["ptflops"] == str(32 + 288)


def test_llama_attention_backward_projections_by_hand() -> None:
    # x 1x4x8, 2 query heads of dim 4, 1 kv head: q 8->8, k 8->4, v 8->4, o 8->8, no bias.
    # q, k, v forward: 4 positions · (64 + 32 + 32) = 512 MACs; o: 4 · 64 = 256.
    # Backward under torch (attention core invisible): ∇W of q, k, v (512), their ∇x only when a layer
    # below needs it (512 more), and o's ∇W and ∇input always (2 · 256)
    from layercalc.layers import REGISTRY

    attn = REGISTRY["attention"](num_heads=2, num_kv_heads=1)
    x = (1, 4, 8)
    assert attn.backward_macs(x, x, True, "torch") == 512 * 2 + 2 * 256
    assert attn.backward_macs(x, x, False, "torch") == 512 + 2 * 256


def test_encoder_layer_norms_use_its_eps() -> None:
    from layercalc.layers import REGISTRY

    layer = REGISTRY["transformerencoderlayer"](d_model=8, nhead=2, dim_feedforward=16, layer_norm_eps=0.25)
    kids = layer.children((1, 3, 8))
    assert [kids[n][0].eps for n in ("norm1", "norm2")] == [0.25, 0.25]


# -- partial rotary, sliding window, the causal convention ----------------------------------------


def test_partial_rotary_matches_gpt_neox_attention() -> None:
    """transformers' GPTNeoXAttention (rotary_pct 0.25: 4 of 16 dims rotated) with its packed
    query_key_value weights split per head into q, k and v: the same output as the NumPy forward."""
    torch = torch_or_skip()
    np = pytest.importorskip("numpy")
    neox = pytest.importorskip("transformers.models.gpt_neox.modeling_gpt_neox")
    from transformers import GPTNeoXConfig

    from layercalc.layers import REGISTRY

    e, h, length = 32, 2, 5
    d = e // h
    config = GPTNeoXConfig(hidden_size=e, num_attention_heads=h, rotary_pct=0.25, rotary_emb_base=100.0,
                           attention_bias=True)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    attention = neox.GPTNeoXAttention(config, 0).double().eval()
    x = torch.randn(2, length, e, dtype=torch.float64)
    cos, sin = neox.GPTNeoXRotaryEmbedding(config)(x, torch.arange(length)[None])
    mask = torch.triu(torch.full((length, length), float("-inf"), dtype=torch.float64), 1)[None, None]
    with torch.no_grad():
        truth = attention(x, mask, position_embeddings=(cos.double(), sin.double()))[0].numpy()
    packed = attention.query_key_value.weight.detach().view(h, 3 * d, e)  # per head: q, k, v rows
    packed_bias = attention.query_key_value.bias.detach().view(h, 3 * d)
    params = {"o_proj.weight": attention.dense.weight.detach().numpy(), "o_proj.bias": attention.dense.bias.detach().numpy()}
    for i, name in enumerate("qkv"):
        params[f"{name}_proj.weight"] = packed[:, i * d:(i + 1) * d].reshape(h * d, e).numpy()
        params[f"{name}_proj.bias"] = packed_bias[:, i * d:(i + 1) * d].reshape(h * d).numpy()
    ours = REGISTRY["attention"](num_heads=h, bias=True, rope=True, rope_theta=100.0, partial_rotary_factor=0.25)
    # transformers computes the rotary tables in float32: agreement to float32's precision
    np.testing.assert_allclose(ours.forward(x.numpy(), params)[0], truth, rtol=1e-5, atol=1e-6)


def test_window_mask_is_transformers_sliding_window() -> None:
    """The oracle's window mask is transformers' sliding_window_causal_mask_function: the last W
    positions, the query's own included (T 6, W 3)."""
    torch_or_skip()
    masking = pytest.importorskip("transformers.masking_utils")
    from layercalc.layers import REGISTRY

    allowed = masking.sliding_window_causal_mask_function(3)
    torch = torch_or_skip()
    truth = [[bool(allowed(0, 0, torch.tensor(i), torch.tensor(j))) for j in range(6)] for i in range(6)]
    assert torch_models_or_skip().window_mask(6, 3).tolist() == truth
    # and the NumPy forward hides exactly the keys transformers does
    hidden = REGISTRY["attention"](num_heads=1, sliding_window=3).hidden(6)
    assert (~hidden).tolist() == truth


def test_sliding_window_caps_the_kv_cache() -> None:
    """A window of W keeps min(T, W) positions: 2 (k, v) · kv 2 · d 4 · N 1 · 2 bytes · positions."""
    def cache(length: int, window: Any) -> int:
        config = {"input": [length, 8], "dtype": "float16",
                  "layers": [{"attention": {"num_heads": 2, "sliding_window": window}}]}
        return analyse(config).total["kv_cache_bytes"]

    assert cache(5, 3) == 2 * 2 * 4 * 2 * 3
    assert cache(5, 8) == cache(5, None) == 2 * 2 * 4 * 2 * 5


@pytest.mark.parametrize("entry, x, macs", [
    # T 4, W 2: query i sees min(i, 2) keys: 1 + 2 + 2 + 2 = 7 pairs; E 8, h 2, d 4:
    # projections 4·(4·64) = 1024, q·kᵀ and A·v 2·h·pairs·d = 2·2·7·4 = 112
    ({"attention": {"num_heads": 2, "sliding_window": 2}}, (1, 4, 8), 1024 + 112),
    # causal, no window: T(T+1)/2 = 10 pairs: 2·2·10·4 = 160
    ({"attention": {"num_heads": 2}}, (1, 4, 8), 1024 + 160),
    # a window wider than T is the triangle
    ({"attention": {"num_heads": 2, "sliding_window": 9}}, (1, 4, 8), 1024 + 160),
    # not causal: every pair, 16 (as the default convention): 2·2·16·4 = 256
    ({"attention": {"num_heads": 2, "causal": False}}, (1, 4, 8), 1024 + 256),
    ({"multiheadattention": {"num_heads": 2}}, (1, 4, 8), 1024 + 256),
    # causal nn.MultiheadAttention, N 3: 3·1024 + 3·160
    ({"multiheadattention": {"num_heads": 2, "causal": True}}, (3, 4, 8), 3 * (1024 + 160)),
    # an encoder layer's attention as multiheadattention, + linear1 and linear2 2·4·8·16 = 1024
    ({"transformerencoderlayer": {"nhead": 2, "dim_feedforward": 16, "causal": True}}, (1, 4, 8), 1024 + 160 + 1024),
])
def test_causal_convention_by_hand(entry: Any, x: tuple[int, ...], macs: int) -> None:
    config = {"input": list(x[1:]), "batch": x[0], "layers": [entry]}
    assert Costing(analyse(config), "causal").total() == macs


def test_causal_convention_on_the_command_line(cli, write) -> None:
    # Mistral-shaped: T 4, W 2 (7 pairs), then a linear; E 8, h 2, d 4
    path = write("win.yaml", "input: [4, 8]\nlayers:\n  - attention: {num_heads: 2, sliding_window: 2}\n"
                             "  - linear: {out_features: 8}\n")
    assert cli("flops", path, "--total", "--macs", "--convention", "causal").out == f"{1024 + 112 + 4 * 64}\n"
    assert cli("flops", path, "--total", "--macs").out == f"{1024 + 256 + 4 * 64}\n"
    # backward: q, k, v and o weight gradients 4·4·64 = 1024 (no dL/dx of the first layer's input),
    # o's dL/d(its input) 256, the products' gradients twice the forward's 112; the linear's dL/dW 256
    # and dL/dx 256
    data = json.loads(cli("flops", path, "--convention", "causal", "--training", "-f", "json").out)
    assert data["training"]["backward_macs"] == 1024 + 256 + 2 * 112 + 2 * 4 * 64


def test_causal_convention_leaves_shipped_configs_without_causal_attention_alone() -> None:
    root = Path(__file__).resolve().parent.parent / "configs"
    for name in ("resnet18", "bert_base", "vit_b_16", "lstm_lm"):
        report = analyse(str(root / f"{name}.yaml"))
        assert Costing(report, "causal").total() == report.total["macs"], name
