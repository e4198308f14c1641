"""Serving plans: KV cache, weights by dtype, prefill/decode cost and roofline bounds.

Expected values are published figures (cited) or hand arithmetic written out beside them.
"""

from __future__ import annotations

import csv
import io
import json
import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from layercalc import api
from layercalc.errors import UsageError
from layercalc.gpus import GPUS, gpu
from layercalc.serving import Setup, plan, stored_bytes, sum_of_max, weight_tensors, dtype_name

A100 = gpu("a100-80gb")


def setup(**kw: object) -> Setup:
    base = dict(gpus=1, tp=1, weights_dtype="float16", kv_dtype="float16", batch=1, prompt=0, generate=1,
                group_size=128)
    base.update(kw)
    return Setup(**base)  # type: ignore[arg-type]


def tiny_decoder(e: int = 8, heads: int = 2, kv_heads: int | None = None, length: int = 4, vocab: int = 10,
                 positions: int | None = None) -> dict:
    """Embedding, one causal self-attention (no bias), one linear head: small enough to count by hand."""
    layers: list[dict] = [{"embedding": {"num_embeddings": vocab, "embedding_dim": e}}]
    if positions:
        layers.append({"posembedding": {"num_positions": positions}})
    attention = {"num_heads": heads, "num_kv_heads": kv_heads} if kv_heads else {"num_heads": heads}
    layers += [{"attention": attention}, {"linear": {"out_features": vocab, "bias": False}}]
    return {"name": "tiny", "input": [length], "dtype": "float16", "layers": layers}


# Published: Llama 2 7B, 32 layers × 32 KV heads × head_dim 128 × (K and V) × 2 bytes = 524,288 bytes a
# token in fp16; Llama 3 8B with grouped-query attention (8 KV heads) 131,072 in bf16.
@pytest.mark.parametrize("config, dtype, expected", [
    ("configs/llama2_7b.yaml", "float16", 524_288),
    ("configs/llama3_8b.yaml", "bfloat16", 131_072),
])
def test_kv_cache_per_token_is_the_published_figure(config: str, dtype: str, expected: int) -> None:
    out = plan(api.load(config), A100, setup(weights_dtype=dtype, kv_dtype=dtype, prompt=1000))
    assert out["memory"]["kv_cache_per_token"] == expected
    assert out["memory"]["kv_cache"] == expected * 1001  # prompt + generate positions, batch 1


def test_llama2_7b_weights_in_fp16() -> None:
    # Llama 2 7B has 6,738,415,616 parameters (Hugging Face's count of LlamaForCausalLM): 13.48 GB in fp16
    out = plan(api.load("configs/llama2_7b.yaml"), A100, setup(prompt=100))
    assert out["memory"]["weights"] == 6_738_415_616 * 2


def test_int4_linear_by_hand() -> None:
    # one 4096 -> 4096 linear, int4 in groups of 128 inputs with an fp16 scale each:
    # 4096·4096/2 packed bytes = 8,388,608, plus 4096 rows · 32 groups · 2 bytes = 262,144
    report = api.analyse(layers=["linear:out_features=4096,bias=false"], input=[4096])
    (tensor,) = weight_tensors(report)
    assert stored_bytes(tensor, setup(weights_dtype="int4"), 16) == 8_388_608 + 262_144
    # int8 in groups of 64: 4096·4096 bytes + 4096 · 64 groups · 2
    assert stored_bytes(tensor, setup(weights_dtype="int8", group_size=64), 16) == 4096 * 4096 + 4096 * 64 * 2
    # a group size that does not divide the row still needs a scale for the last, short group
    assert stored_bytes(tensor, setup(weights_dtype="int4", group_size=100), 16) == 8_388_608 + 4096 * 41 * 2


def test_decode_bound_llama2_7b_on_a100_by_hand() -> None:
    # batch 1, fp16: a decode step reads every weight once but the embedding table, of which one row
    # (32,000 × 4,096 table: 4,096 · 2 bytes), and the KV cache of its context. At context 101 (prompt
    # 100): 13,476,831,232 - 262,144,000 + 8,192 + 101 · 524,288 bytes over 2,039 GB/s.
    out = plan(api.load("configs/llama2_7b.yaml"), A100, setup(prompt=100))
    read = 13_476_831_232 - 32_000 * 4096 * 2 + 4096 * 2 + 101 * 524_288
    assert out["decode"]["bytes_first_token"] == read
    assert out["bounds"]["tpot_seconds"] == pytest.approx(read / 2039e9, rel=1e-12)
    assert out["bounds"]["tpot_seconds"] >= 13_476_831_232 * 0.98 / 2039e9
    assert out["bounds"]["tokens_per_second"] == pytest.approx(2039e9 / read, rel=1e-12)


def test_tiny_decoder_costs_by_hand() -> None:
    # E = 8, 2 heads, vocab 10. Per token: q, k, v, o projections 4·E·E = 256 MACs, head E·10 = 80;
    # a query at context p: scores h·p·d + weighted values h·p·d = 2·E·p = 16p MACs.
    net = api.load(tiny_decoder())
    out = plan(net, A100, setup(prompt=4, generate=3, batch=2))
    per_token, per_context = 256 + 80, 16
    prefill_macs = 2 * sum(per_token + per_context * 4 for _ in range(4))  # batch 2, 4 queries over 4 keys each
    assert out["prefill"]["flops"] == 2 * prefill_macs
    decode = [2 * 2 * (per_token + per_context * p) for p in (5, 6, 7)]  # contexts 5, 6, 7
    assert out["decode"]["flops"] == sum(decode)
    assert out["decode"]["flops_first_token"] == decode[0]
    # fp16 weights: embedding 80 + q,k,v,o 4·64 + head 80 elements; KV: K and V, 8 elements each a position
    assert out["memory"]["weights"] == (80 + 256 + 80) * 2
    assert out["memory"]["kv_cache_per_token"] == 2 * 8 * 2
    assert out["memory"]["kv_cache"] == 32 * 7 * 2
    # decode reads: the weights but the embedding table (its 2 rows of 8), and the cache to the context
    assert out["decode"]["bytes_first_token"] == (256 + 80) * 2 + 2 * 8 * 2 + 2 * 32 * 5


def test_grouped_query_attention_and_tensor_parallelism() -> None:
    net = api.load(tiny_decoder(e=16, heads=4, kv_heads=2))
    one = plan(net, A100, setup(prompt=4))
    assert one["memory"]["kv_cache_per_token"] == 2 * 2 * 4 * 2  # K and V, 2 heads of 4, fp16
    two = plan(net, A100, setup(prompt=4, tp=2, gpus=2))
    assert two["memory"]["kv_cache_per_token"] == one["memory"]["kv_cache_per_token"] // 2
    with pytest.raises(UsageError, match="--tp 4 does not divide the 2 key/value heads"):
        plan(net, A100, setup(prompt=4, tp=4, gpus=4))
    with pytest.raises(UsageError, match="not a multiple of --tp"):
        plan(net, A100, setup(prompt=4, tp=2, gpus=3))


def test_max_batch_is_the_largest_that_fits() -> None:
    net = api.load("configs/llama3_8b.yaml")
    out = plan(net, A100, setup(weights_dtype="bfloat16", kv_dtype="bfloat16", prompt=8192, generate=1024))
    m = out["memory"]
    at = lambda n: plan(net, A100, setup(weights_dtype="bfloat16", kv_dtype="bfloat16", prompt=8192,  # noqa: E731
                                         generate=1024, batch=n))["memory"]
    assert at(m["max_batch"])["fits"] and not at(m["max_batch"] + 1)["fits"]
    assert m["peak"] == m["weights"] + m["kv_cache"] + m["activations"]


def test_not_a_decoder_and_positions_beyond_the_model() -> None:
    with pytest.raises(UsageError, match="serve needs a decoder"):
        plan(api.load("configs/mnist_mlp.yaml"), A100, setup())
    net = api.load(tiny_decoder(positions=16, length=16))
    with pytest.raises(UsageError, match="--prompt 16 \\+ --generate 1 = 17 positions"):
        plan(net, A100, setup(prompt=16))
    # left unset, the prompt makes room for the generated tokens in a model of 16 positions
    assert plan(net, A100, setup(generate=4))["setup"]["prompt"] == 12


def test_dtype_names() -> None:
    assert dtype_name("BF16", "--kv-dtype") == "bfloat16"
    with pytest.raises(UsageError, match="--kv-dtype must be one of"):
        dtype_name("int3", "--kv-dtype")


linear = st.tuples(st.fractions(-50, 50), st.fractions(-5, 5))


@given(linear, linear, st.integers(-20, 20), st.integers(0, 30))
def test_sum_of_max_equals_the_loop(f: tuple, g: tuple, lo: int, span: int) -> None:
    hi = lo + span - 1
    loop = sum((max(f[0] + f[1] * p, g[0] + g[1] * p) for p in range(lo, hi + 1)), Fraction(0))
    assert sum_of_max(f, g, lo, hi) == loop


def test_gpu_presets_are_complete() -> None:
    for name in ("a100-40gb", "a100-80gb", "h100-sxm", "h100-pcie", "h200", "b200", "l4", "l40s", "rtx-4090",
                 "mi300x", "tpu-v4", "tpu-v5e"):
        g = GPUS[name]
        assert g.memory > 0 and g.bandwidth > 0 and g.source and g.peak["bf16"] > 0
    # NVIDIA A100 datasheet: 312 TFLOPS bf16 dense, 2,039 GB/s for the 80GB SXM part
    assert A100.peak["bf16"] == 312e12 and A100.bandwidth == 2039e9
    with pytest.raises(UsageError, match="did you mean h100-sxm"):
        gpu("h100-sx")
    assert math.isclose(gpu("H200").bandwidth, 4.8e12)


# ---- the command line -------------------------------------------------------------------------

def test_print_answers_are_bare(cli) -> None:
    run = cli("serve", "configs/llama3_8b.yaml", "--print", "kv-per-token")
    assert (run.status, run.out, run.err) == (0, "131072\n", "")
    # Llama 2 7B fp16 on an A100-80GB, prompt 100, batch 1: the first decode step's bytes (see the
    # hand count above) over 2,039 GB/s
    read = 13_476_831_232 - 32_000 * 4096 * 2 + 4096 * 2 + 101 * 524_288
    run = cli("serve", "configs/llama2_7b.yaml", "--gpu", "a100-80gb", "--prompt", "100", "--print", "tpot")
    assert float(run.out) == pytest.approx(read / 2039e9, rel=1e-12)


@pytest.mark.parametrize("args, message", [
    (["configs/resnet18.yaml"], "configs/resnet18.yaml: serve needs a decoder"),
    (["configs/llama3_8b.yaml", "--tp", "3", "--gpus", "3"], "--tp 3 does not divide the 8 key/value heads"),
    (["configs/gpt2.yaml", "--prompt", "1024"], "--prompt 1024 + --generate 1 = 1025 positions"),
    (["configs/gpt2.yaml", "--kv-dtype", "int3"], "--kv-dtype must be one of"),
    (["configs/gpt2.yaml", "--weights-dtype", "fp4"], "--weights-dtype must be one of"),
    (["configs/gpt2.yaml", "--gpu", "h100"], "unknown GPU 'h100'"),
    (["configs/gpt2.yaml", "--print", "tpot"], "--print tpot needs a device"),
    (["configs/gpt2.yaml", "--print", "speed"], "--print must be one of"),
    (["configs/gpt2.yaml", "--prompt", "0"], "--prompt must be at least 1"),
    (["configs/gpt2.yaml", "--gpu", "tpu-v4", "--dtype-is-fp32"], "No such option"),
    (["configs/gpt2.yaml", "--gpu", "tpu-v4"], "tpu-v4 has no published fp32 peak"),
])
def test_bad_input_is_one_line_and_exit_2(cli, args: list[str], message: str) -> None:
    run = cli("serve", *args)
    assert run.status == 2 and run.out == ""
    assert run.err.count("\n") == 1 and message in run.err, run.err


@pytest.mark.parametrize("command, flag", [("serve", "--peak-tflops"), ("serve", "--gpu-memory"), ("serve", "--bandwidth"),
                                           ("train", "--peak-tflops"), ("train", "--gpu-memory")])
def test_device_figures_out_of_scale_are_one_line(cli, command: str, flag: str) -> None:
    # a positive, finite number of TFLOP/s, GB or GB/s, but not of FLOP/s or bytes
    run = cli(command, "configs/gpt2.yaml", "--gpu", "l4", flag, "1e300")
    assert run.status == 2 and run.out == ""
    assert run.err.count("\n") == 1 and f"{flag} 1e+300 is too large" in run.err, run.err


def test_a_time_bound_past_the_largest_float_is_one_line(cli) -> None:
    # a device of 10^-300 TFLOP/s and GB/s: the time to first token of 10^8 prompts is past any float
    run = cli("serve", "configs/llama2_7b.yaml", "--peak-tflops", "1e-300", "--bandwidth", "1e-300",
              "--gpu-memory", "40", "--batch", "100000000")
    assert run.status == 2 and run.out == ""
    assert run.err.count("\n") == 1 and "the time to first token is beyond the largest float" in run.err, run.err


def test_a_batch_that_does_not_fit_is_an_answer(cli) -> None:
    run = cli("serve", "configs/llama3_8b.yaml", "--gpu", "l4", "--weights-dtype", "float32", "-f", "table")
    assert run.status == 0 and "does not fit" in run.out and "short on each device" in run.out
    assert all(len(line) <= 80 for line in run.out.splitlines())


@pytest.mark.parametrize("fmt", ["json", "csv", "tsv", "markdown", "table"])
def test_every_format_carries_the_exact_figures(cli, fmt: str) -> None:
    run = cli("serve", "configs/llama2_7b.yaml", "--gpu", "a100-80gb", "--prompt", "100", "-f", fmt)
    assert run.status == 0, run.err
    if fmt == "json":
        data = json.loads(run.out)
        assert set(data) >= {"name", "setup", "memory", "prefill", "decode", "bounds"}
        assert data["memory"]["kv_cache_per_token"] == 524_288
    else:
        assert ("524,288" if fmt == "table" else "524288") in run.out
        assert ("13,476,831,232" if fmt == "table" else "13476831232") in run.out


def test_gpus_lists_every_preset_with_its_source(cli) -> None:
    run = cli("gpus", "-f", "csv")
    rows = list(csv.DictReader(io.StringIO(run.out)))
    assert {r["name"] for r in rows} == set(GPUS) and all(r["source"] for r in rows)
    assert next(r for r in rows if r["name"] == "h100-sxm")["bf16_tflops"] == "989.5"


def test_a_device_described_on_the_command_line(cli) -> None:
    # a serving bound reads the bandwidth; a training plan does not need one
    run = cli("serve", "configs/gpt2.yaml", "--peak-tflops", "100", "--gpu-memory", "40")
    assert run.status == 2 and "describe the device with --bandwidth as well" in run.err
    run = cli("train", "configs/gpt2.yaml", "--peak-tflops", "100", "--gpu-memory", "40", "--print", "step-time")
    assert run.status == 0 and float(run.out) > 0


# -- sliding windows and the causal prefill -----------------------------------------------------------


def test_mistral_7b_window_caps_the_cache_and_the_decode_by_hand() -> None:
    # Mistral-7B (bf16, every layer a 4096 window), prompt 8000, 200 generated: every step's context is past
    # the window. KV: 2 · 32 layers · 8 kv heads · 128 · 2 bytes = 131,072 a position, 4096 positions kept.
    out = plan(api.load("tests/hf_configs/mistral_7b.json"), A100,
               setup(weights_dtype="bfloat16", kv_dtype="bfloat16", prompt=8000, generate=200))
    assert out["memory"]["kv_cache_per_token"] == 131_072
    assert out["memory"]["kv_cache"] == 131_072 * 4096
    # a step reads every weight but the embedding table (32,000 × 4,096, of which one row) and 4096 positions
    weights = 7_241_732_096 * 2
    read = weights - 32_000 * 4096 * 2 + 4096 * 2 + 4096 * 131_072
    assert out["decode"]["bytes_first_token"] == read
    assert out["decode"]["bytes"] == 200 * read
    # MACs a token: the linears (32 · (2·4096² + 2·4096·1024 + 3·4096·14,336) + 4096·32,000 = 7,110,393,856)
    # plus q·kᵀ and A·v over the 4096 keys kept: 32 layers · 2 · 32 heads · 128 · 4096
    per_token = 7_110_393_856 + 32 * 2 * 32 * 128 * 4096
    assert out["decode"]["flops_first_token"] == 2 * per_token
    assert out["decode"]["flops"] == 200 * 2 * per_token


def windowed(window: int | None) -> dict:
    config = tiny_decoder()
    config["layers"][1]["attention"]["sliding_window"] = window
    return config


def test_a_window_narrower_than_the_context_by_hand() -> None:
    # E 8, 2 heads of 4, vocabulary 10: a token's MACs are 4·64 (q, k, v, o) + 8·10 (head) = 336, plus
    # 2·2·4 = 16 a key attended. Window 2, prompt 1, 3 generated: contexts 2, 3, 4 see 2 keys each
    out = plan(api.load(windowed(2)), None, setup(prompt=1, generate=3))
    assert out["decode"]["flops"] == 3 * 2 * (336 + 16 * 2)
    full = plan(api.load(windowed(None)), None, setup(prompt=1, generate=3))
    assert full["decode"]["flops"] == 2 * (3 * 336 + 16 * (2 + 3 + 4))
    # 2 (k, v) · 2 heads · 4 · 2 bytes = 32 bytes a position: 2 kept of 4, or all 4
    assert (out["memory"]["kv_cache"], full["memory"]["kv_cache"]) == (64, 128)


@pytest.mark.parametrize("window, pairs", [(None, 10), (2, 7), (3, 9)])
def test_causal_prefill_by_hand(window: int | None, pairs: int) -> None:
    # prompt 4: 4 · 336 = 1344 per-token MACs; the mask keeps 10 pairs (the triangle), 1 + 2 + 2 + 2 = 7
    # with a window of 2, 1 + 2 + 3 + 3 = 9 with 3; each pair 16 MACs. The default counts all 16 pairs.
    causal = plan(api.load(windowed(window)), None, setup(prompt=4, convention="causal"))
    assert causal["prefill"]["flops"] == 2 * (1344 + 16 * pairs)
    assert plan(api.load(windowed(window)), None, setup(prompt=4))["prefill"]["flops"] == 2 * (1344 + 16 * 16)


def test_serve_takes_the_causal_convention(cli) -> None:
    path = "tests/hf_configs/mistral_7b.json"
    full = json.loads(cli("serve", path, "--prompt", "4", "-f", "json").out)
    causal = json.loads(cli("serve", path, "--prompt", "4", "--convention", "causal", "-f", "json").out)
    # 4 positions: 16 pairs counted, or 10; 2 · 32 layers · 32 heads · 128 MACs a pair, twice for FLOPs
    assert full["prefill"]["flops"] - causal["prefill"]["flops"] == 2 * 6 * 32 * 2 * 32 * 128
    run = cli("serve", path, "--convention", "torch")
    assert run.status == 2 and "--convention for serve is layercalc or causal" in run.err


@given(st.integers(0, 20), st.lists(st.tuples(st.integers(0, 9), st.one_of(st.none(), st.integers(1, 30))),
                                    max_size=3),
       st.integers(0, 20), st.lists(st.tuples(st.integers(0, 9), st.one_of(st.none(), st.integers(1, 30))),
                                    max_size=3),
       st.integers(1, 30), st.integers(0, 30))
def test_windowed_sums_match_a_loop(c0: int, terms: list, d0: int, others: list, lo: int, span: int) -> None:
    from layercalc.serving import step_at, sum_max_steps, sum_steps

    f = (Fraction(c0), tuple((Fraction(c), w) for c, w in terms))
    g = (Fraction(d0), tuple((Fraction(c), w) for c, w in others))
    hi = lo + span
    assert sum_steps(f, lo, hi) == sum(step_at(f, p) for p in range(lo, hi + 1))
    assert sum_max_steps(f, g, lo, hi) == sum(max(step_at(f, p), step_at(g, p)) for p in range(lo, hi + 1))


def test_a_state_space_decoder_keeps_a_constant_state_by_hand() -> None:
    # embedding 10×8, one mamba (E 8: D 16, R 1, n 4, K 4), an untied head 8→10, float16. Per token:
    # in_proj 8·32 = 256, conv 16·4 = 64, x_proj 16·9 = 144, dt_proj 16, C·h 16·4 = 64, out_proj 16·8 = 128,
    # head 80: 752 MACs; once a prompt, the conv's 3 padded outputs 3·16·4 = 192; nothing grows with the context
    net = api.load({"name": "ssm", "input": [4], "dtype": "float16", "layers": [
        {"embedding": {"num_embeddings": 10, "embedding_dim": 8}}, {"mamba": {"d_state": 4}},
        {"linear": {"out_features": 10, "bias": False}}]})
    out = plan(net, A100, setup(prompt=4, generate=3, batch=2))
    assert out["prefill"]["flops"] == 2 * 2 * (192 + 752 * 4)
    assert out["decode"]["flops"] == 3 * 2 * 2 * 752 and out["decode"]["flops_first_token"] == 2 * 2 * 752
    # the state: conv 16·4 and scan 16·4 elements, fp16 = 256 bytes a sequence, at any length; no KV
    m = out["memory"]
    assert (m["kv_cache_per_token"], m["state_per_sequence"], m["kv_cache"]) == (0, 256, 2 * 256)
    longer = plan(net, A100, setup(prompt=400, generate=30, batch=2))["memory"]
    assert (longer["state_per_sequence"], longer["kv_cache"]) == (256, 2 * 256)
    # weights fp16: embedding 80, mixer 720 (A_log 64, D 16, conv 80, in_proj 256, x_proj 144, dt_proj 32,
    # out_proj 128), head 80; a decode step reads all but the embedding (its 2 rows of 8) and both states
    assert m["weights"] == (80 + 720 + 80) * 2
    assert out["decode"]["bytes_first_token"] == (720 + 80) * 2 + 2 * 8 * 2 + 2 * 256
    assert out["prefill"]["bytes"] == (720 + 80) * 2 + min(2 * 4, 10) * 8 * 2 + 2 * 256
    assert "state_per_sequence" not in plan(api.load(tiny_decoder()), A100, setup(prompt=4))["memory"]
def tiny_moe_decoder() -> dict:
    """The tiny decoder (E 8, 2 heads, vocab 10) with a mixture of 4 experts, top 2, each a linear
    8 -> 8 without bias (64 elements), after the attention; the router is 8·4 = 32 elements."""
    config = tiny_decoder()
    moe = {"moe": {"num_experts": 4, "top_k": 2, "expert": [{"linear": {"out_features": 8, "bias": False}}]}}
    config["layers"].insert(2, moe)
    return config


@pytest.mark.parametrize("batch, experts", [
    (1, 2),  # one token reads its top 2 experts
    # 2 tokens: 4·(1 − (1 − 2/4)²) = 3 experts expected
    (2, 3),
    # 3 tokens: 4·(1 − 1/8) = 3.5, rounded up to 4: every expert
    (3, 4),
])
def test_a_decode_step_reads_the_experts_its_tokens_choose(batch: int, experts: int) -> None:
    out = plan(api.load(tiny_moe_decoder()), A100, setup(prompt=4, generate=1, batch=batch))
    # stored in fp16: embedding 80 + attention 256 + router 32 + 4 experts · 64 + head 80 elements
    assert out["memory"]["weights"] == (80 + 256 + 32 + 4 * 64 + 80) * 2
    # a step reads the batch's embedding rows, attention, router, the chosen experts, the head, the cache
    read = (batch * 8 + 256 + 32 + experts * 64 + 80) * 2
    assert out["decode"]["bytes_first_token"] == read + batch * 32 * 5
    assert "evenly and independently" in out["routing"]
    # the prompt's 4·batch tokens: 4·(1 − (1/2)^4) = 3.75 -> all 4 experts; embedding rows: min(4·batch, 10)
    assert out["prefill"]["bytes"] == (min(4 * batch, 10) * 8 + 256 + 32 + 4 * 64 + 80) * 2 + 4 * batch * 32
    assert "routing" not in plan(api.load(tiny_decoder()), A100, setup(prompt=4, generate=1))
