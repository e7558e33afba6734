"""Every example runs (in its quick mode) and checks its own claim."""
import os
import runpy
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def run_example(name, *args):
    """Run examples/<name>.py's main() with command-line args; returns what main returns."""
    module = runpy.run_path(os.path.join(EXAMPLES, f"{name}.py"), run_name="example")
    return module["main"](list(args))


def test_first_model(tmp_path, capsys):
    result = run_example("first_model", "--out", str(tmp_path))
    assert result["dw"] == 2.0 and result["db"] == 1.0 and result["chain"] == result["dw"]
    assert (tmp_path / "first_model.png").stat().st_size > 1000
    assert "dloss/dw = 2" in capsys.readouterr().out


def test_linear_regression(tmp_path):
    result = run_example("linear_regression", "--out", str(tmp_path), "--quick")
    assert abs(result["w"] - 3) < 0.05 and abs(result["b"] - 2) < 0.05
    assert (tmp_path / "linear_regression_step.png").stat().st_size > 1000
