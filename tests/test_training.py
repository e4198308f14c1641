"""Training plans against published figures: the ZeRO paper, Megatron-LM, Korthikanti et al., Llama 2, GPT-3.

Each expected value is the paper's own formula or figure, cited beside it; none comes from our code.
"""

from __future__ import annotations

import pytest

from layercalc import api
from layercalc.errors import UsageError
from layercalc.gpus import gpu
from layercalc.training import RECIPES, Layout, Pace, model_states, plan


def layout(**kw: object) -> Layout:
    base = dict(gpus=1, tp=1, pp=1, zero=0, sp=False, micro_batch=1, global_batch=1, recompute="none",
                flash=False, precision="bf16-mixed", optimizer="adam")
    base.update(kw)
    return Layout(**base)  # type: ignore[arg-type]


def gpt(layers: int, h: int, heads: int, s: int, vocab: int, tied: bool = False) -> dict:
    """A GPT decoder as Megatron-LM builds it: learned positions, pre-norm attention and 4h GELU MLP."""
    block = {"sequential": {"layers": [
        {"residual": {"body": [{"layernorm": {}}, {"attention": {"num_heads": heads, "bias": True}}]}},
        {"residual": {"body": [{"layernorm": {}}, {"linear": {"out_features": 4 * h}}, "gelu",
                               {"linear": {"out_features": h}}]}},
    ]}, "repeat": layers}
    head = {"linear": {"out_features": vocab, "bias": False, **({"tied_to": "wte"} if tied else {})}}
    return {"name": "gpt", "input": [s], "dtype": "bfloat16", "layers": [
        {"embedding": {"num_embeddings": vocab, "embedding_dim": h}, "name": "wte"},
        {"posembedding": {"num_positions": s}}, block, {"layernorm": {}}, head]}


def korthikanti_stack(layers: int, h: int, heads: int, s: int) -> dict:
    """Korthikanti et al.'s transformer layer (their Figure 2): dropout on the attention probabilities,
    on the attention's output and on the MLP's output, pre-norm, 4h GELU MLP; the input is the stream."""
    block = {"sequential": {"layers": [
        {"residual": {"body": [{"layernorm": {}}, {"multiheadattention": {"num_heads": heads, "dropout": 0.1}},
                               {"dropout": {"p": 0.1}}]}},
        {"residual": {"body": [{"layernorm": {}}, {"linear": {"out_features": 4 * h}}, "gelu",
                               {"linear": {"out_features": h}}, {"dropout": {"p": 0.1}}]}},
    ]}, "repeat": layers}
    return {"name": "stack", "input": [s, h], "dtype": "bfloat16", "layers": [block]}


def nested(config: dict) -> dict:
    """The config with its repeat one level down, inside a sequential (as an encoder-decoder's stacks hold theirs)."""
    layers = [{"sequential": {"layers": [e]}, "name": "stack"} if "repeat" in e else e for e in config["layers"]]
    return {**config, "layers": layers}


# ZeRO (Rajbhandari et al. 2020), Figure 1: a 7.5 B-parameter model on 64 GPUs with mixed-precision
# Adam (K = 12 bytes of optimizer state a parameter): 120 GB, 31.4 GB, 16.6 GB and 1.9 GB per GPU.
@pytest.mark.parametrize("stage, expected", [
    (0, 120_000_000_000), (1, 31_406_250_000), (2, 16_640_625_000), (3, 1_875_000_000),
])
def test_zero_paper_figure_1(stage: int, expected: int) -> None:
    parts = model_states(7_500_000_000, 7_500_000_000, RECIPES["bf16-mixed"], "adam", stage, 64, 1)
    assert sum(parts.values()) == expected


def test_frozen_weights_hold_no_gradient_or_optimizer_state() -> None:
    parts = model_states(1000, 100, RECIPES["bf16-mixed"], "adam", 0, 1, 1)
    assert parts == {"weights": 2000, "gradients": 200, "optimizer_states": 800, "master_weights": 400}


# Megatron-LM (Narayanan et al. 2021, eq. 3): a GPT step of batch B is 72·B·s·l·h²·(1 + s/6h + V/12lh)
# FLOPs, and 96·B·s·l·h²·(1 + s/6h + V/16lh) with full activation recompute. GPT-3 175B: l 96, h 12288,
# s 2048, V 51200.
@pytest.mark.parametrize("recompute, factor, head", [("none", 72, 12), ("full", 96, 16)])
def test_megatron_formula_to_the_integer(recompute: str, factor: int, head: int) -> None:
    b, s, ell, h, v = 2, 2048, 96, 12288, 51200
    expected = factor * b * s * ell * h * h + factor * b * s * s * ell * h // 6 + factor * b * s * h * v // head
    out = plan(api.load(gpt(ell, h, 96, s, v)), None, layout(micro_batch=1, global_batch=b, recompute=recompute))
    assert out["compute"]["flops_per_step"] == expected
    assert out["compute"]["flops_megatron_per_step"] == expected
    # the same layers with their repeat inside a block: full recompute still runs each of them again
    deep = plan(api.load(nested(gpt(ell, h, 96, s, v))), None, layout(micro_batch=1, global_batch=b, recompute=recompute))
    assert deep["compute"]["flops_per_step"] == expected


# Selective recompute runs the forward's T×T products again: per layer, the attention matrix 2Bs²h
# FLOPs and the attention over values 2Bs²h (Narayanan et al. 2021, Appendix: FLOPs of a transformer
# layer), 4·B·s²·h·l FLOPs a step on top of the model's.
@pytest.mark.parametrize("build", [gpt, lambda *a: nested(gpt(*a))], ids=["decoder", "nested"])
def test_selective_recompute_runs_the_t_by_t_products_again(build: object) -> None:
    b, s, ell, h, v = 2, 2048, 4, 1024, 1000
    net = api.load(build(ell, h, 16, s, v))  # type: ignore[operator]
    plain, selective = (plan(net, None, layout(global_batch=b, recompute=r))["compute"] for r in ("none", "selective"))
    assert selective["flops_per_step"] - plain["flops_per_step"] == 4 * b * s * s * h * ell
    assert selective["model_flops_per_step"] == plain["flops_per_step"]


# The same 4·B·T·S·w FLOPs for every attention of an encoder-decoder (w = heads × head dim): the
# encoder's self-attention (S = T), the decoder's (its own length) and its cross-attention (S the
# encoder's length). T5-small: 6 + 6 + 6 of width 512 at 512 tokens each; Whisper tiny: 4 layers of
# width 384 in each stack, 1,500 encoder positions, 448 decoder ones.
@pytest.mark.parametrize("path, attentions", [
    ("configs/t5_small.yaml", [(6, 512, 512, 512), (6, 512, 512, 512), (6, 512, 512, 512)]),
    ("configs/whisper_tiny.yaml", [(4, 1500, 1500, 384), (4, 448, 448, 384), (4, 448, 1500, 384)]),
])
def test_selective_recompute_of_an_encoder_decoder(path: str, attentions: list[tuple[int, int, int, int]]) -> None:
    b, net = 2, api.load(path)
    plain, selective = (plan(net, None, layout(global_batch=b, recompute=r))["compute"] for r in ("none", "selective"))
    extra = sum(n * 4 * b * t * keys * w for n, t, keys, w in attentions)
    assert selective["flops_per_step"] - plain["flops_per_step"] == extra


# Swin Transformer (Liu et al. 2021, eq. 2): window attention costs 4hwC² + 2M²hwC, the second term
# its products within each M×M window. Swin-T: M = 7, blocks 2, 2, 6, 2 on maps of 56², 28², 14²,
# 7² positions with C = 96, 192, 384, 768; selective recompute runs that term again, twice its MACs in FLOPs.
def test_selective_recompute_of_window_attention() -> None:
    net = api.load("configs/swin_t.yaml")
    plain, selective = (plan(net, None, layout(recompute=r))["compute"] for r in ("none", "selective"))
    core = sum(blocks * 2 * 7 * 7 * side * side * c for blocks, side, c in ((2, 56, 96), (2, 28, 192), (6, 14, 384), (2, 7, 768)))
    assert selective["flops_per_step"] - plain["flops_per_step"] == 2 * core


# Full recompute of an encoder-decoder runs each repeated block of both stacks again. T5-small's
# blocks 1-5 of each stack are the repeat (block 0 holds the relative position bias, written apart).
# MACs a block at T = S = 512, width 512, MLP 2,048 (norms and the bias add no MACs): self-attention's
# four projections 4·T·512² and its products 2·T²·512, the MLP 2·T·512·2048; a decoder block adds
# cross-attention, the same 4·T·512² + 2·T·S·512.
def test_full_recompute_of_an_encoder_decoder() -> None:
    t = w = 512
    encoder = 4 * t * w * w + 2 * t * t * w + 2 * t * w * 2048
    decoder = encoder + 4 * t * w * w + 2 * t * t * w
    net = api.load("configs/t5_small.yaml")
    plain, full = (plan(net, None, layout(recompute=r)) for r in ("none", "full"))
    assert full["compute"]["flops_per_step"] - plain["compute"]["flops_per_step"] == 2 * 5 * (encoder + decoder)
    assert full["memory"]["activations"] < plain["memory"]["activations"]
    # and the ten repeated blocks are what a pipeline splits
    assert plan(net, None, layout(pp=2, gpus=2))["layout"]["pp"] == 2


def test_gpt3_6nd() -> None:
    # GPT-3 (Brown et al. 2020, Table D.1): 175 B params × 300 B tokens = 3.14e23 training FLOPs; with
    # the head tied to the token embedding the config holds 174.6 B parameters
    out = plan(api.load(gpt(96, 12288, 96, 2048, 50257, tied=True)), None, layout())
    total = out["compute"]["flops_6nd_per_token"] * 300 * 10**9
    assert f"{total:.2e}" == "3.14e+23"


def test_gpt3_175b_6nd_untied() -> None:
    # GPT-3 (Brown et al. 2020): 175 B params × 300 B tokens; 6·N·D = 6 · 175e9 · 300e9 = 3.15e23 (the paper
    # reports 3.14e23, its count of 174.6 B, checked above). With an untied head the config holds
    # 174,604,259,328 + 50,257·12,288 = 175,221,817,344 parameters: 3.15e23
    out = plan(api.load(gpt(96, 12288, 96, 2048, 50257)), None, layout())
    assert out["compute"]["flops_6nd_per_token"] == 6 * 175_221_817_344
    assert f"{out['compute']['flops_6nd_per_token'] * 300 * 10**9:.2e}" == "3.15e+23"


def test_chinchilla_70b_6nd() -> None:
    # Chinchilla (Hoffmann et al. 2022): 70 B params on 1.4 T tokens; 6·N·D = 6 · 70e9 · 1.4e12 = 5.88e23.
    # A network of exactly 70,000,000,000 params: one 70,000 → 1,000,000 linear map without bias
    net = {"name": "n70b", "input": [70_000], "layers": [{"linear": {"out_features": 1_000_000, "bias": False}}]}
    out = plan(api.load(net), None, layout())
    assert out["compute"]["flops_6nd_per_token"] * 14 * 10**11 == 588 * 10**21


# Korthikanti et al. 2022, Table 2: activation bytes a transformer layer keeps, with s sequence, b
# micro-batch, h width, a heads, t tensor-parallel degree, in 16-bit.
def korthikanti(s: int, b: int, h: int, a: int, t: int, form: str) -> int:
    forms = {
        "none": s * b * h * 34 + 5 * a * s * s * b,
        "tp": s * b * h * 10 + (24 * s * b * h + 5 * a * s * s * b) // t,
        "tp+sp": (34 * s * b * h + 5 * a * s * s * b) // t,
        "selective+tp+sp": 34 * s * b * h // t,
        "full": 2 * s * b * h,
        "full+sp": 2 * s * b * h // t,
    }
    return forms[form]


@pytest.mark.parametrize("h, a", [(12288, 96), (20480, 128)])  # GPT-3 175B and MT-NLG 530B shapes
@pytest.mark.parametrize("form, kw", [
    ("none", {}), ("tp", {"tp": 8, "gpus": 8}), ("tp+sp", {"tp": 8, "gpus": 8, "sp": True}),
    ("selective+tp+sp", {"tp": 8, "gpus": 8, "sp": True, "recompute": "selective"}),
    ("full", {"recompute": "full"}), ("full+sp", {"tp": 8, "gpus": 8, "sp": True, "recompute": "full"}),
])
@pytest.mark.parametrize("deep", [False, True], ids=["top", "nested"])
def test_korthikanti_table_2(h: int, a: int, form: str, kw: dict, deep: bool) -> None:
    s, layers = 2048, 2
    config = korthikanti_stack(layers, h, a, s)
    out = plan(api.load(nested(config) if deep else config), None, layout(**kw))
    assert out["memory"]["activations"] == layers * korthikanti(s, 1, h, a, 8, form)


def test_flash_attention_keeps_no_t_by_t_matrix() -> None:
    s, h, a = 2048, 12288, 96
    out = plan(api.load(korthikanti_stack(1, h, a, s)), None, layout(flash=True))
    assert out["memory"]["activations"] == 34 * s * h


def test_pipeline_stage_holds_its_layers_for_the_micro_batches_in_flight() -> None:
    s, h, a = 2048, 12288, 96
    per_layer = korthikanti(s, 1, h, a, 1, "none")
    net = api.load(korthikanti_stack(8, h, a, s))
    # p = 4 stages of 2 layers; 1F1B keeps min(p, m) micro-batches in flight: m = 2 -> 2, m = 16 -> 4
    two = plan(net, None, layout(pp=4, gpus=4, micro_batch=1, global_batch=2))
    many = plan(net, None, layout(pp=4, gpus=4, micro_batch=1, global_batch=16))
    assert two["memory"]["activations"] == 2 * 2 * per_layer
    assert many["memory"]["activations"] == 2 * 4 * per_layer


# Llama 2 (Touvron et al. 2023, Table 2): the 7B model took 184,320 A100-80GB GPU-hours for 2 T
# tokens; by 6·N·D over 312 TFLOPS bf16 that is 39.1% MFU.
def test_llama2_7b_mfu_by_6nd() -> None:
    # the GPU count does not change the answer: 64 GPUs take 184,320 / 64 hours each
    out = plan(api.load("configs/llama2_7b.yaml"), gpu("a100-80gb"), layout(gpus=64, global_batch=64),
               Pace(gpu_hours=184_320), tokens=2 * 10**12)
    assert round(out["time"]["mfu_6nd"], 3) == 0.391
    assert out["time"]["gpu_hours"] == pytest.approx(184_320)


def test_time_at_an_mfu_by_hand() -> None:
    # GPT-3-like step: FLOPs from the Megatron form (checked above) over 8 A100s at 312 TFLOPS and 50%
    net = api.load(gpt(2, 1024, 16, 512, 1000))
    out = plan(net, gpu("a100-80gb"), layout(gpus=8, micro_batch=1, global_batch=8), Pace(mfu=0.5),
               tokens=8 * 512 * 1000)
    flops = out["compute"]["model_flops_per_step"]
    step = flops / (8 * 312e12 * 0.5)
    assert out["time"]["step_seconds"] == pytest.approx(step, rel=1e-12)
    assert out["time"]["total_seconds"] == pytest.approx(1000 * step, rel=1e-12)
    assert out["time"]["mfu"] == pytest.approx(0.5, rel=1e-12)


@pytest.mark.parametrize("kw, message", [
    ({"gpus": 3, "tp": 2}, "--gpus 3 is not a multiple of --tp 2"),
    ({"global_batch": 3, "micro_batch": 2}, "--global-batch 3 is not a multiple"),
    ({"zero": 4}, "--zero must be 0, 1, 2 or 3"),
    ({"precision": "fp4"}, "--precision must be one of"),
    ({"recompute": "some"}, "--recompute must be one of"),
    ({"zero": 1}, "--zero 1 shards over data-parallel replicas, and this layout has one"),
    ({"tp": 5, "gpus": 5}, "--tp 5 does not divide the 12 key/value heads"),
    ({"pp": 16, "gpus": 16}, "--pp 16 exceeds the 12 repeated blocks"),
])
def test_impossible_layouts(kw: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        plan(api.load("configs/gpt2.yaml"), None, layout(**kw))


# ---- the command line and the layout search -----------------------------------------------------

def test_print_is_a_bare_figure(cli) -> None:
    run = cli("train", "configs/llama2_7b.yaml", "--gpu", "a100-80gb", "--gpus", "64", "--global-batch", "64",
              "--tokens", "2e12", "--gpu-hours", "184320", "--print", "gpu-hours")
    assert run.status == 0 and float(run.out) == pytest.approx(184_320)
    # bf16-mixed Adam: 16 bytes a parameter, the ZeRO paper's figure, plus activations
    run = cli("train", "configs/mnist_mlp.yaml", "--print", "memory", "--precision", "fp32", "--optimizer", "sgd")
    assert run.status == 0 and int(run.out) > 535_818 * 8


@pytest.mark.parametrize("args, message", [
    (["--gpus", "3", "--tp", "2"], "--gpus 3 is not a multiple of --tp 2"),
    (["--precision", "fp4"], "--precision must be one of"),
    (["--gpu-hours", "10"], "--gpu-hours needs --tokens"),
    (["--search"], "--search needs --gpu"),
    (["--print", "speed"], "--print must be one of"),
    (["--print", "gpu-hours", "--gpu", "h100-sxm"], "--print gpu-hours needs --tokens and --gpu"),
    (["--mfu", "1.5", "--gpu", "h100-sxm"], "--mfu must be a positive number at most 1"),
])
def test_train_bad_input_is_one_line(cli, args: list[str], message: str) -> None:
    run = cli("train", "configs/gpt2.yaml", *args)
    assert run.status == 2 and run.out == "" and run.err.count("\n") == 1 and message in run.err, run.err


@pytest.mark.parametrize("args, message", [
    # 10^12 tokens in 10^-300 GPU-hours: a rate of tokens/s past the largest float
    (["--tokens", "1e12", "--gpu-hours", "1e-300"], "is beyond the largest float"),
    # 10^308 tokens/s on a device of 10^-10 TFLOP/s: an MFU past the largest float
    (["--tokens-per-second", "1e308", "--peak-tflops", "1e-10"], "the MFU is beyond the largest float"),
    # a device of 10^-300 TFLOP/s: 10^300 tokens take longer than any float counts
    (["--tokens", "1e300", "--peak-tflops", "1e-300"], "the run's time is beyond the largest float"),
])
def test_measurements_out_of_scale_are_one_line(cli, args: list[str], message: str) -> None:
    run = cli("train", "configs/llama2_7b.yaml", "--gpu", "h100-sxm", *args)
    assert run.status == 2 and run.out == "" and run.err.count("\n") == 1 and message in run.err, run.err


@pytest.mark.parametrize("fmt", ["json", "csv", "tsv", "markdown", "table"])
def test_train_every_format(cli, fmt: str) -> None:
    run = cli("train", "configs/llama2_7b.yaml", "--gpu", "a100-80gb", "-f", fmt)
    assert run.status == 0, run.err
    weights = "13,476,831,232" if fmt == "table" else "13476831232"
    assert weights in run.out
    if fmt == "table":
        assert all(len(line) <= 80 for line in run.out.splitlines())


def test_search_lists_only_layouts_that_fit_fastest_first() -> None:
    found = api.train("configs/gpt2.yaml", gpu="l4", gpus=4, global_batch=16, search=True)
    assert found and all(c["memory"]["fits"] for c in found)
    times = [c["step_seconds"] for c in found]
    assert times == sorted(times)
    # a pipeline of 4 stages idles (p - 1)/m of the step: slower than any layout without one
    piped = [c for c in found if c["layout"]["pp"] == 4]
    assert piped and min(c["step_seconds"] for c in piped) > times[0]


def test_search_over_a_huge_device_count_enumerates_divisors_not_numbers() -> None:
    # 2^40 devices: the layouts are the few divisors of it, found without counting to 2^40
    found = api.train("configs/gpt2.yaml", gpu="h100-sxm", gpus=2**40, search=True)
    assert found and {c["layout"]["tp"] for c in found} <= {1, 2, 4}
    assert all(c["layout"]["tp"] * c["layout"]["pp"] * c["layout"]["dp"] == 2**40 for c in found)


def palm_540b() -> dict:
    """PaLM 540B (Chowdhery et al. 2022, Table 1 and section 2): 118 parallel layers of width 18,432,
    48 query heads of 256 and one key/value head (multi-query), SwiGLU MLP 4·d, no biases, LayerNorm
    without bias, the head sharing the 256k embedding, sequence 2,048."""
    d, ffn = 18432, 4 * 18432
    mlp = [{"multiply": {"branches": [[{"linear": {"out_features": ffn, "bias": False}}, "silu"],
                                      [{"linear": {"out_features": ffn, "bias": False}}]]}},
           {"linear": {"out_features": d, "bias": False}}]
    # x + attention(norm(x)) + mlp(norm(x)): a residual whose body sums the two branches
    parallel = {"residual": {"body": [{"attention": {"num_heads": 48, "num_kv_heads": 1, "head_dim": 256}}],
                             "shortcut": mlp}}
    block = {"residual": {"body": [{"layernorm": {"bias": False}}, parallel]}, "repeat": 118}
    return {"name": "palm", "input": [2048], "dtype": "bfloat16", "layers": [
        {"embedding": {"num_embeddings": 256000, "embedding_dim": d}, "name": "embed"}, block,
        {"layernorm": {"bias": False}}, {"linear": {"out_features": 256000, "bias": False, "tied_to": "embed"}}]}


def test_palm_mfu() -> None:
    # PaLM's 540.35 B parameters, by hand: a layer holds q 18432·12288 + k, v 2·18432·256 + o 12288·18432
    # + MLP 3·18432·73728 + norm 18432 = 4,539,303,936; 118 of them, the 256000·18432 table, the final
    # norm: 540,356,474,880. Appendix B: 238.3 K tokens/s on 6,144 TPU v4 chips (275 TFLOPS bf16 each)
    # is 46.2% MFU, the model FLOPs being 6N + 12·L·H·Q·T a token
    net = api.load(palm_540b())
    assert api.analyse(palm_540b()).total["params"] == 118 * 4_539_303_936 + 256000 * 18432 + 18432
    out = plan(net, gpu("tpu-v4"), layout(gpus=6144, global_batch=6144), Pace(tokens_per_second=238_300))
    assert round(out["time"]["mfu"], 3) == 0.462


# ---- LoRA: frozen weights hold no gradient or optimizer state; the adapters train ----------------

def llama2_7b_lora(r: int = 8, targets: tuple[str, ...] = ("q_proj", "v_proj")) -> dict:
    """configs/llama2_7b.yaml with everything frozen and rank-r adapters on the named projections."""
    import yaml

    with open("configs/llama2_7b.yaml") as f:
        doc = yaml.safe_load(f)
    for entry in doc["layers"]:
        entry["trainable"] = False
    doc["layers"][1]["lora"] = {"r": r, "alpha": 16, "targets": list(targets)}
    return doc


def test_lora_llama2_7b_q_v_params_as_peft_counts_them() -> None:
    # peft's print_trainable_parameters() for Llama-2-7b with LoraConfig(r=8, target_modules=["q_proj",
    # "v_proj"]) prints "trainable params: 4,194,304 || all params: 6,742,609,920". By hand: 32 layers ×
    # 2 projections × (A 8·4096 + B 4096·8) = 4,194,304; all = 6,738,415,616 (the model) + that
    total = api.analyse(llama2_7b_lora()).total
    assert total["trainable_params"] == 32 * 2 * (8 * 4096 + 4096 * 8) == 4_194_304
    assert total["params"] == 6_738_415_616 + 4_194_304 == 6_742_609_920


def test_lora_frozen_weights_hold_no_gradient_or_optimizer_state() -> None:
    # bf16-mixed Adam: every weight in 2 bytes; the 4,194,304 adapter params alone get a 2-byte gradient,
    # a 4-byte master copy and two 4-byte moments (DeepSpeed's estimator charges all 6.7 B for those)
    out = plan(api.load(llama2_7b_lora()), None, layout())
    memory = out["memory"]
    assert memory["weights"] == 2 * 6_742_609_920
    assert memory["gradients"] == 2 * 4_194_304
    assert memory["master_weights"] == 4 * 4_194_304
    assert memory["optimizer_states"] == 8 * 4_194_304


LORA_MLP = """\
name: lora_mlp
input: [4, 16]
layers:
  - sequential:
      layers:
        - linear: {out_features: 32, bias: false}
          name: up
        - relu
        - linear: {out_features: 16, bias: false}
          name: down
    trainable: false
    lora: {r: 2, alpha: 4, targets: [up, down]}
    name: mlp
  - linear: {out_features: 10}
    name: head
"""


def test_lora_step_flops_as_torch_counts_them() -> None:
    # the same network in PyTorch: frozen base linears, each with A (r × in) and B (out × r) beside it, as
    # peft's lora.Linear computes base(x) + B(A(x)); FlopCounterMode counts the step's matrix products.
    # The first layer's input needs no gradient (nothing trains before it): its adapters still get theirs
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    up, down, head = torch.nn.Linear(16, 32, bias=False), torch.nn.Linear(32, 16, bias=False), torch.nn.Linear(16, 10)
    a1, b1 = torch.nn.Linear(16, 2, bias=False), torch.nn.Linear(2, 32, bias=False)
    a2, b2 = torch.nn.Linear(32, 2, bias=False), torch.nn.Linear(2, 16, bias=False)
    up.weight.requires_grad_(False)
    down.weight.requires_grad_(False)
    x = torch.randn(1, 4, 16)
    with FlopCounterMode(display=False) as counter:
        h = torch.relu(up(x) + b1(a1(x)))
        head(down(h) + b2(a2(h))).sum().backward()
    out = plan(api.load(LORA_MLP), None, layout())
    assert out["compute"]["flops_per_step"] == counter.get_total_flops()
    trainable = sum(p.numel() for m in (a1, b1, a2, b2, head) for p in m.parameters())
    assert out["memory"]["gradients"] == 2 * trainable


def test_lora_target_matching_nothing_is_one_line(cli, write) -> None:
    path = write("bad.yaml", LORA_MLP.replace("targets: [up, down]", "targets: [up, q_proj]"))
    run = cli("train", path)
    assert run.status == 2 and run.out == "" and run.err.count("\n") == 1, run.err
    assert "bad.yaml:12" in run.err and "'q_proj' matches no linear" in run.err


@pytest.mark.parametrize("lora, message", [
    ("{r: 0, targets: [up]}", "lora r must be a positive integer"),
    ("{r: 2, targets: []}", "lora targets must be a non-empty list"),
    ("{r: 2, rank: 2, targets: [up]}", "unknown key 'rank' in lora"),
    ("8", "lora must be a mapping"),
])
def test_lora_bad_mapping_is_one_line(cli, write, lora: str, message: str) -> None:
    path = write("bad.yaml", LORA_MLP.replace("{r: 2, alpha: 4, targets: [up, down]}", lora))
    run = cli("summary", path)
    assert run.status == 2 and run.err.count("\n") == 1 and message in run.err and "bad.yaml:12" in run.err, run.err


@pytest.mark.parametrize("fmt", ["json", "csv", "tsv", "markdown", "table"])
def test_lora_train_every_format_and_print(cli, write, fmt: str) -> None:
    path = write("lora.yaml", LORA_MLP)
    run = cli("train", path, "--gpu", "a100-80gb", "-f", fmt)
    assert run.status == 0, run.err
    # gradients: 2 bytes for each of the 362 trainable params (96 + 96 adapters, the 170 of the head)
    assert "724" in run.out
    run = cli("train", path, "--print", "memory")
    # bf16 weights of the 1,386 params; of the 362 trainable a 2-byte gradient, a 4-byte master copy and
    # two 4-byte moments; kept (what autograd keeps of the torch model above): x 4·16 for A's gradient,
    # A x 4·2, relu's output 4·32 (also the second A's input; the frozen down keeps nothing), A h 4·2 and
    # the head's input 4·16, in 2 bytes
    assert run.status == 0 and int(run.out) == 2 * 1386 + 14 * 362 + 2 * (64 + 8 + 128 + 8 + 64)


def test_lora_flags_are_the_config_form() -> None:
    # --lora 8 --lora-targets q_proj,v_proj freezes every weight and adapts those maps, as peft's
    # get_peft_model does: the same plan as the config that says so entry by entry
    flags = api.train("configs/llama2_7b.yaml", lora=8, lora_targets="q_proj,v_proj")
    written = plan(api.load(llama2_7b_lora()), None, layout())
    assert flags["memory"] == written["memory"] and flags["compute"] == written["compute"]
    assert flags["memory"]["gradients"] == 2 * 4_194_304


@pytest.mark.parametrize("args, message", [
    (["--lora", "8", "--lora-targets", "q_proj,vv_proj"], "--lora-targets: lora target 'vv_proj' matches no linear"),
    (["--lora", "8"], "--lora R and --lora-targets NAMES go together"),
    (["--lora", "0", "--lora-targets", "q_proj"], "--lora must be a rank of at least 1, got 0"),
    (["--lora", "8", "--lora-targets", "q_proj,"], "--lora-targets must name linear layers"),
])
def test_lora_flags_bad_input_is_one_line(cli, args: list[str], message: str) -> None:
    run = cli("train", "configs/llama2_7b.yaml", *args)
    assert run.status == 2 and run.out == "" and run.err.count("\n") == 1 and message in run.err, run.err


# A speech model trains on its transcripts' tokens: Whisper's encoder reads 80 mel bins x 3,000
# frames, its decoder 448 token ids (WhisperConfig's max_target_positions), so a step of B samples
# is 448·B tokens; an image classifier counts samples, one a sample.
@pytest.mark.parametrize("path, per_sample", [("configs/whisper_tiny.yaml", 448), ("configs/t5_small.yaml", 512),
                                              ("configs/resnet18.yaml", 1)])
def test_tokens_a_step_are_the_token_ids_read(path: str, per_sample: int) -> None:
    out = plan(api.load(path), None, layout(global_batch=4))["compute"]
    assert out["tokens_per_step"] == 4 * per_sample
    assert out["flops_per_token"] * 4 * per_sample == out["model_flops_per_step"]


# What PyTorch's autograd keeps of a gated MLP, down(silu(gate(x)) * up(x)), measured with
# torch.autograd.graph.saved_tensors_hooks on torch 2.13 (each storage once, the weights left out;
# s = 64, h = 32, I = 88 in bfloat16: 49,152 bytes): x once, though gate and up both read it; gate's
# output (silu's input); silu's and up's outputs, the product's factors; the product (down's input):
# s·h + 4·s·I elements.
def test_a_gated_mlp_keeps_its_factors_and_its_input_once() -> None:
    s, h, inner = 64, 32, 88
    mlp = {"multiply": {"branches": [[{"linear": {"out_features": inner, "bias": False}}, "silu"],
                                     [{"linear": {"out_features": inner, "bias": False}}]]}}
    net = {"name": "mlp", "input": [s, h], "dtype": "bfloat16",
           "layers": [mlp, {"linear": {"out_features": h, "bias": False}}]}
    out = plan(api.load(net), None, layout())
    assert out["memory"]["activations"] == 2 * (s * h + 4 * s * inner)


# A residual block whose shortcut is a projection reads its input twice, and autograd keeps it once:
# body linear(x) -> silu -> linear, shortcut linear(x) keep x, silu's input and the second linear's
# input, 3·s·h elements (torch's saved_tensors_hooks, as above: 12,288 bytes at s = 64, h = 32, bfloat16).
# Squeeze-excitation keeps x once for the pool and the product.
def test_a_tensor_two_branches_read_is_kept_once() -> None:
    s, h = 64, 32
    block = {"residual": {"body": [{"linear": {"out_features": h}}, "silu", {"linear": {"out_features": h}}],
                          "shortcut": [{"linear": {"out_features": h}}]}}
    net = {"name": "res", "input": [s, h], "dtype": "bfloat16", "layers": [block]}
    assert plan(api.load(net), None, layout())["memory"]["activations"] == 2 * 3 * s * h
    gate = [{"adaptiveavgpool2d": {"output_size": 1}}, {"conv2d": {"out_channels": 2, "kernel_size": 1}}, "relu",
            {"conv2d": {"out_channels": 8, "kernel_size": 1}}, "sigmoid"]
    net = {"name": "se", "input": [8, 6, 6], "dtype": "bfloat16",
           "layers": [{"conv2d": {"out_channels": 8, "kernel_size": 1}}, {"multiply": {"branches": [gate, []]}}]}
    # the first conv's input 288, then what torch keeps of x · sigmoid(conv(relu(conv(pool(x))))) (306
    # elements, measured as above): x 288 once (the pool's input and a factor), the pool's output 8, relu's
    # output 2 (the second conv's input too) and sigmoid's output 8 (the other factor)
    assert plan(api.load(net), None, layout())["memory"]["activations"] == 2 * (288 + 306)


# torchvision's resnet18 and resnet50 (weights=None, train mode, batch 2, float32) keep 41,144,320 and
# 168,591,360 bytes of float feature maps for backward (torch.autograd.graph.saved_tensors_hooks on
# torch 2.13, each storage once, the weights left out; besides them only the max-pool's int64 indices,
# batch norm's per-channel statistics and the classifier's input, 2 · 512 or 2 · 2048 floats): relu keeps
# its output, which the next conv keeps too, and a block's input is kept once by its body and its
# downsample projection.
@pytest.mark.parametrize("name, maps, features", [("resnet18", 41_144_320, 512), ("resnet50", 168_591_360, 2048)])
def test_resnet_activations_are_what_autograd_keeps(name: str, maps: int, features: int) -> None:
    out = plan(api.load(f"configs/{name}.yaml"), None, layout(precision="fp32", micro_batch=2, global_batch=2))
    assert out["memory"]["activations"] == maps + 2 * features * 4


# A frozen linear's backward needs its weight alone (dL/dx = dL/dy · W): autograd keeps nothing of it.
# linear → frozen linear → silu → linear keeps x, silu's input and silu's output, 3·s·h elements
# (torch's saved_tensors_hooks as above: 12,288 bytes at s = 64, h = 32, bfloat16).
def test_a_frozen_linear_keeps_nothing() -> None:
    s, h = 64, 32
    net = {"name": "frozen", "input": [s, h], "dtype": "bfloat16", "layers": [
        {"linear": {"out_features": h}}, {"linear": {"out_features": h}, "trainable": False}, "silu",
        {"linear": {"out_features": h}}]}
    assert plan(api.load(net), None, layout())["memory"]["activations"] == 2 * 3 * s * h
