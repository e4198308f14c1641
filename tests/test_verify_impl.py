"""verify --impl with user code that misbehaves instead of computing wrongly: each is a failed
check of the layer (exit 1) naming it and the problem, on one line, never a pass, a silent exit,
a traceback or an internal error; code that is correct but returns read-only arrays passes; a
class that sets its state in __init__ is built as PyTorch builds a module."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

IMPLS = Path(__file__).resolve().parent / "impls"
MISBEHAVING = str(IMPLS / "misbehaving.py")
NET = ("input: [6]\nbatch: 3\nlayers:\n  - linear: {out_features: 5}\n    name: fc1\n  - tanh\n  - identity\n"
       "  - linear: {out_features: 4}\n    name: fc2\n")


def failed(out: str) -> list[dict[str, str]]:
    return [r for r in csv.DictReader(io.StringIO(out), delimiter="\t") if r["passed"] != "True"]


@pytest.mark.parametrize("cls, layer, message", [
    ("ExitInForward", "tanh1 (tanh)", "forward() called sys.exit()"),
    ("ExitZeroInForward", "tanh1 (tanh)", "forward() called sys.exit(0)"),
    ("ExitInBackward", "tanh1 (tanh)", "backward() called sys.exit()"),
    ("ExitThreeInBackward", "tanh1 (tanh)", "backward() called sys.exit(3)"),
    ("GeneratorExitInForward", "tanh1 (tanh)", "forward() raised GeneratorExit"),
    ("ReturnsList", "tanh1 (tanh)", "forward() returned a list of 3 items, expected (y, cache)"),
    ("ReturnsNone", "tanh1 (tanh)", "forward() returned None, expected (y, cache)"),
    ("ReturnsBareArray", "tanh1 (tanh)", "forward() returned an array of shape 3x5, expected (y, cache)"),
    ("DxWrongShape", "fc2 (linear)", "backward() returned dx as an array of shape 3x4, expected an array of shape 3x5 (the input's)"),
    ("GradsNone", "fc1 (linear)", "backward() returned grads as None, expected a dict of parameter gradients"),
    # the user's own text, escaped and kept to one line as error messages escape names
    ("RaisesControlCharacters", "tanh1 (tanh)", "backward() raised ValueError: bad \\x1b[31mred\\x1b[0m\\nsecond line\\ttab"),
    ("InitNeedsDevice", "fc1 (linear)", "__init__() raised TypeError: InitNeedsDevice.__init__() missing 1 required "
     "positional argument: 'device' (verify calls __init__ with the layer's arguments as keywords, as PyTorch builds "
     "a module: see docs/verify.md, 'Checking your own layer')"),
])
def test_misbehaving_code_is_a_failed_check_of_its_layer(cli, write, cls: str, layer: str, message: str) -> None:
    run = cli("verify", write("net.yaml", NET), "--impl", f"{MISBEHAVING}:{cls}", "-f", "tsv")
    assert run.status == 1, run.err
    assert f"error: {layer}: {message}\n" in run.err
    assert "Traceback" not in run.err + run.out and "internal error" not in run.err
    rows = failed(run.out)  # the rows of the layers running the class (both linears, or the tanh), nothing else
    assert rows and {r["path"] for r in rows} == ({"fc1", "fc2"} if "linear" in layer else {"tanh1"}), rows
    assert all("\n" not in r["note"] and "\x1b" not in r["note"] for r in rows)


def test_a_correct_layer_returning_read_only_views_passes(cli, write) -> None:
    # np.broadcast_to views cannot be written: verify moves only arrays it allocated itself
    run = cli("verify", write("net.yaml", NET), "--impl", f"{MISBEHAVING}:ReadOnlyIdentity", "-f", "tsv")
    assert run.status == 0, run.err
    assert "Traceback" not in run.err


@pytest.mark.parametrize("cls", ["LinearWithInit", "InitTakesNothing"])
def test_a_class_with_its_own_init_is_built_with_the_layers_arguments(cli, write, cls: str) -> None:
    run = cli("verify", write("net.yaml", NET), "--impl", f"{MISBEHAVING}:{cls}", "-f", "tsv")
    assert run.status == 0, run.err
    rows = list(csv.DictReader(io.StringIO(run.out), delimiter="\t"))
    assert any(r["path"] == "fc1" and r["method"].startswith("reference") for r in rows)


@pytest.mark.parametrize("file, message", [
    ("exit_at_import.py", "importing it called sys.exit()"),
    ("exit3_at_import.py", "importing it called sys.exit(3)"),
])
def test_sys_exit_while_importing_is_a_usage_error_naming_the_file(cli, write, file: str, message: str) -> None:
    # no layer was checked: the file cannot be used, like one that fails to import (exit 2, never 0)
    path = str(IMPLS / file)
    run = cli("verify", write("net.yaml", NET), "--impl", path)
    assert (run.status, run.out, run.err) == (2, "", f"error: --impl {path}: {message}\n")


def test_impl_says_what_a_path_that_is_not_a_python_file_is(cli, write, tmp_path: Path) -> None:
    config = write("net.yaml", NET)
    folder = cli("verify", config, "--impl", str(tmp_path))
    assert (folder.status, folder.out, folder.err) == (2, "", f"error: --impl {tmp_path}: is a directory, not a Python file\n")
    null = cli("verify", config, "--impl", "/dev/null")
    assert (null.status, null.out, null.err) == (2, "", "error: --impl /dev/null: not a regular file, so not a Python file\n")
    missing = cli("verify", config, "--impl", str(tmp_path / "nothere.py"))
    assert missing.status == 2 and missing.err.endswith(": no such file\n")


# -- a layer's gradient as PyTorch defines it, and failures that stand -------------------------------

# 6 ids of 8: at seeds 6, 12, 26 and 27 the draws held no padding id, and a padding-training
# embedding passed every check before the ids of every check were made to hold it
LM = ("input: [6]\nbatch: 1\nlayers:\n"
      "  - embedding: {num_embeddings: 8, embedding_dim: 4, padding_idx: 1}\n    name: wte\n"
      "  - rmsnorm:\n    name: norm\n  - linear: {out_features: 3}\n")


def _verify(config: str, impl: str, seed: int):
    from layercalc import analyse
    from layercalc.impl import load_impl
    from layercalc.verify import Options, verify

    return verify(analyse(config), Options(seed=seed, impl=load_impl(str(IMPLS / impl))))


def test_an_embedding_written_as_nn_embedding_passes_at_every_seed(write) -> None:
    # its lookup reads the padding row, whose gradient is zero by definition (torch autograd gives
    # the same): the numeric checks leave that row out, and say so
    config = write("lm.yaml", LM)
    for seed in range(30):
        result = _verify(config, "embedding_as_torch.py", seed)
        assert result.passed, (seed, [c for c in result.checks if not c.passed])
        rows = [c for c in result.checks if c.path == "wte"]
        assert any(c.check == "dL/dweight row 1 = 0" and c.method == "exact" for c in rows)
        assert any("left out: weight row 1 (padding_idx, never trained)" in c.note
                   for c in rows if c.method.startswith(("direction", "elementwise")))


def test_an_embedding_that_trains_its_padding_row_fails_its_own_row_at_every_seed(write) -> None:
    # every input of ids holds the padding id (seeds 1 and 3 drew none before), and a failure of
    # the layer in the network is never replaced by a fresh input's pass
    config = write("lm.yaml", LM)
    for seed in range(30):
        result = _verify(config, "embedding_trains_padding.py", seed)
        failed = {c.check for c in result.checks if c.path == "wte" and not c.passed}
        assert failed and "dL/dweight row 1 = 0" in failed, (seed, failed)


def test_the_ids_of_every_check_hold_the_padding_id_and_a_repeat() -> None:
    from layercalc.lazy import np
    from layercalc.verify.checks import exercising

    rng = np.random.default_rng(0)
    for _ in range(50):
        ids = exercising(rng.integers(0, 100, size=(2, 3)), [7], 100, rng)
        flat = list(ids.reshape(-1))
        assert 7 in flat and any(flat.count(v) > 1 for v in flat if v != 7)


def test_a_failure_at_the_networks_input_stands_when_a_fresh_input_passes(write) -> None:
    # the tanh's input in the network holds a ReLU's exact zeros, where its backward is wrong; a
    # fresh random input has none. The layer's numeric row fails, and says the fresh input passed
    config = write("zero.yaml", "input: [6]\nbatch: 3\nlayers:\n  - linear: {out_features: 8}\n  - relu\n"
                                "  - tanh:\n    name: act\n  - linear: {out_features: 4}\n")
    result = _verify(config, "tanh_wrong_at_zero.py", 0)
    numeric = [c for c in result.checks if c.path == "act" and c.method.startswith(("direction", "elementwise"))]
    assert any(not c.passed and "passes on a fresh random input: the failure depends on the input" in c.note
               for c in numeric), numeric
