"""Bad input to `reidbench run` is one line `Error: ...` with exit status 2: nothing is silently
ignored, dropped or rounded, and no traceback is shown. The benchmark itself never runs here:
``run_grid`` is replaced by a fake that records the grid it was given."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reidbench.cli import main


class FakeGrid:
    """Stands in for ``reidbench.eval.harness.run_grid``: records the spec, runs nothing."""

    def __init__(self) -> None:
        self.specs: list[Any] = []

    def __call__(self, spec: Any, run_dir: Any, **kw: Any) -> list[Any]:
        self.specs.append(spec)
        return []


@pytest.fixture()
def fake_grid(monkeypatch: pytest.MonkeyPatch) -> FakeGrid:
    fake = FakeGrid()
    monkeypatch.setattr("reidbench.eval.harness.run_grid", fake)
    return fake


def run(args: list[str], out: Path) -> Result:
    return CliRunner().invoke(main, ["run", "--out", str(out), "--no-report", "--quiet", *args])


def one_line_error(res: Result) -> str:
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert "Traceback" not in res.output
    return lines[0]


def _no_cuda() -> bool:
    import torch

    return not torch.cuda.is_available()


def _no_mps() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return mps is None or not mps.is_available()


B = ["--model", "baseline"]
# (command line after `reidbench run`, a fragment of the one-line message)
BAD_RUNS = [
    # a --checkpoint or --model-option for a model that is not in the run: a typo, never the shipped weights
    pytest.param([*B, "--attack", "none", "--checkpoint", "basline=x.safetensors"], "did you mean baseline?", id="checkpoint-typo"),
    pytest.param(["--model", "baseline", "--model", "jad", "--attack", "none", "--checkpoint", "x.safetensors"],
                 "use --checkpoint MODEL=PATH", id="checkpoint-which-model"),
    pytest.param([*B, "--attack", "none", "--checkpoint", "baseline="], "the path is empty", id="checkpoint-empty-path"),
    pytest.param([*B, "--attack", "none", "--model-option", "jda:cs=false"], "'jda' is not a model of this run", id="model-option-typo"),
    # sweep lists: empty lists or items are errors, not a dropped attack; steps are whole numbers
    pytest.param([*B, "--attack", "sma", "--eps", ","], "--eps ',' has no value", id="eps-empty-list"),
    pytest.param([*B, "--attack", "sma", "--eps", ""], "--eps '' has no value", id="eps-empty"),
    pytest.param([*B, "--attack", "sma", "--eps", "2,,5"], "has an empty item", id="eps-empty-item"),
    pytest.param([*B, "--attack", "sma", "--eps", "2,5,"], "has an empty item", id="eps-trailing-comma"),
    pytest.param([*B, "--attack", "sma", "--eps", "five"], "--eps: 'five' is not a number", id="eps-word"),
    pytest.param([*B, "--attack", "sma", "--eps", "nan"], "nan is not a finite number", id="eps-nan"),
    pytest.param([*B, "--attack", "sma", "--eps", "inf"], "inf is not a finite number", id="eps-inf"),
    pytest.param([*B, "--attack", "sma", "--steps", "2.7"], "--steps: 2.7 is not a whole number", id="steps-fraction"),
    pytest.param([*B, "--attack", "erasing", "--area", "0.1,,0.3"], "--area '0.1,,0.3' has an empty item", id="area-empty-item"),
    pytest.param([*B, "--attack", "none", "--area", "0.3"], "no attack in this run takes --area", id="area-unused"),
    # paths
    pytest.param([*B, "--attack", "none", "--out", ""], "--out is empty", id="out-empty"),
    pytest.param([*B, "--attack", "none", "--save-adv", ""], "--save-adv is empty", id="save-adv-empty"),
    pytest.param([*B, "--attack", "none", "--data-root", " "], "--data-root is empty", id="data-root-empty"),
    # devices: one line with what this machine has
    pytest.param([*B, "--attack", "none", "--device", "meta"], "available here: auto, cpu", id="device-meta"),
    pytest.param([*B, "--attack", "none", "--device", "gpu"], "'gpu' is not a device; available here: auto, cpu", id="device-word"),
    pytest.param([*B, "--attack", "none", "--device", "mps"], "MPS is not available on this machine; available here: auto",
                 id="device-mps", marks=pytest.mark.skipif(not _no_mps(), reason="this machine has MPS")),
    pytest.param([*B, "--attack", "none", "--device", "cuda"], "CUDA is not available on this machine; available here: auto",
                 id="device-cuda", marks=pytest.mark.skipif(not _no_cuda(), reason="this machine has CUDA")),
    pytest.param([*B, "--attack", "none", "--device", "cuda:99"], "available here: auto, cpu", id="device-cuda-99"),
    # torchattacks names: torchattacks' own "Did you mean"
    pytest.param([*B, "--attack", "tk:pgdd"], "Did you mean tk:PGD", id="tk-unknown"),
    pytest.param([*B, "--attack", "tk:PGD", "--area", "0.3"], "no attack in this run takes --area", id="tk-unused-flag"),
    # click's own usage errors are one line too
    pytest.param([*B, "--attack", "none", "--eot", "0"], "Invalid value for '--eot'", id="click-range"),
    pytest.param([*B, "--attack", "none", "--epss", "3"], "No such option '--epss'", id="click-unknown-option"),
    pytest.param([*B, "--attack", "none", "--seed", "x"], "'x' is not a valid integer", id="click-type"),
]


@pytest.mark.parametrize(("args", "fragment"), BAD_RUNS)
def test_bad_run_input_is_one_line_and_runs_nothing(args: list[str], fragment: str, fake_grid: FakeGrid, tmp_path: Path) -> None:
    line = one_line_error(run(args, tmp_path / "r"))
    assert fragment in line, line
    assert not fake_grid.specs, "the benchmark must not start on bad input"
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("args", "name", "params"), [
    (["--attack", "tk:pgd"], "tk:PGD", {}),
    (["--attack", "TK:fgsm", "--eps", "4"], "tk:FGSM", {"eps": 4.0}),
    # --step is torchattacks' alpha; --steps its steps
    (["--attack", "tk:PGD", "--eps", "8", "--step", "2", "--steps", "3"], "tk:PGD", {"eps": 8.0, "alpha": 2.0, "steps": 3}),
    (["--attack", "tk:PGD", "--attack-option", "random_start=false"], "tk:PGD", {"random_start": False}),
    (["--attack", "sma", "--steps", "2.0"], "sma", {"steps": 2}),
])  # fmt: skip
def test_good_attack_flags_reach_the_grid(args: list[str], name: str, params: dict[str, Any], fake_grid: FakeGrid, tmp_path: Path) -> None:
    res = run([*B, *args], tmp_path / "r")
    assert res.exit_code == 0, res.output
    (spec,) = fake_grid.specs
    attacks = [a for a in spec.attacks if a.name != "none"]
    assert [(a.name, a.params) for a in attacks] == [(name, params)]
    if "steps" in params:
        assert isinstance(attacks[0].params["steps"], int)


def test_checkpoint_for_a_model_of_the_run_is_kept(fake_grid: FakeGrid, tmp_path: Path) -> None:
    res = run(["--model", "baseline", "--surrogate", "jad", "--attack", "none", "--checkpoint", "jad=j.safetensors",
               "--checkpoint", "baseline=b.safetensors"], tmp_path / "r")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert fake_grid.specs[0].checkpoints == {"jad": "j.safetensors", "baseline": "b.safetensors"}


# --- property-based: whatever a user types into a numeric flag ---------------------------------------

NUMBERISH = st.one_of(
    st.text(max_size=12),
    st.text(alphabet="0123456789.,-+eE naif", max_size=12),
    st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6)), min_size=0, max_size=4)
    .map(lambda xs: ",".join(str(x) for x in xs)),
    st.sampled_from([",", ",,", " ", "nan", "-nan", "inf", "-inf", "1e999", "2.7", "-3", "0x10", "1_000", "٣", "5,", ",5"]),
)
# a flag and an attack that takes it
FLAGS = [("--eps", "mifgsm"), ("--step", "mifgsm"), ("--steps", "mifgsm"), ("--area", "erasing"), ("--momentum", "mifgsm")]


@settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=st.sampled_from(FLAGS), value=NUMBERISH)
def test_numeric_flags_accept_or_refuse_in_one_line(flag: tuple[str, str], value: str, tmp_path: Path) -> None:
    option, attack = flag
    fake = FakeGrid()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("reidbench.eval.harness.run_grid", fake)
        res = run([*B, "--attack", attack, f"{option}={value}"], tmp_path / "r")
    assert res.exit_code in (0, 2), (res.exit_code, res.output, res.exception)
    if res.exit_code == 2:
        one_line_error(res)
        assert not fake.specs
        return
    # accepted: every value reached the grid as a finite number (steps as an int), none dropped
    (spec,) = fake.specs
    key = option.lstrip("-")
    got = [a.params[key] for a in spec.attacks if a.name == attack]
    assert len(got) == len(value.split(",")) and got
    assert all(math.isfinite(v) for v in got)
    if key == "steps":
        assert all(isinstance(v, int) for v in got)
