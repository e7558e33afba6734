"""The optimizer examples run in their quick mode and their claims hold."""
import os
import runpy

import numpy as np

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def run_example(name, *args):
    module = runpy.run_path(os.path.join(EXAMPLES, f"{name}.py"), run_name="example")
    return module["main"](list(args))


def test_optimizers_example(tmp_path):
    result = run_example("optimizers", "--out", str(tmp_path), "--quick")
    for name in ("optimizers_paths.png", "optimizers_loss.png"):
        assert (tmp_path / name).stat().st_size > 10000
    himmelblau, rosenbrock = result["summary"]["Himmelblau (4 minima)"], result["summary"]["Rosenbrock valley"]
    assert len(himmelblau) == len(rosenbrock) == 12         # every optimizer, on both surfaces
    for summary in (himmelblau, rosenbrock):
        for name, run in summary.items():
            assert run["final_loss"] < 0.2 * run["start_loss"], name
    # not convex: from one start point, the optimizers settle in different minima
    minima = np.array([[3.0, 2.0], [-2.805118, 3.131312], [-3.779310, -3.283186], [3.584428, -1.848126]])
    reached = set()
    for run in himmelblau.values():
        distance = np.linalg.norm(minima - np.array(run["end"]), axis=1)
        if distance.min() < 0.1:
            reached.add(int(distance.argmin()))
    assert len(reached) >= 2
    # the valley: Adam and momentum get much further along it than plain SGD in the same steps
    assert rosenbrock["Adam"]["final_loss"] < 0.25 * rosenbrock["SGD"]["final_loss"]
    assert rosenbrock["SGD momentum"]["final_loss"] < 0.25 * rosenbrock["SGD"]["final_loss"]


def test_momentum_example(tmp_path):
    result = run_example("momentum", "--out", str(tmp_path), "--quick")
    assert (tmp_path / "momentum.png").stat().st_size > 10000
    sgd, momentum, nesterov = (result[k] for k in result)
    steps = len(sgd["path"]) - 1
    assert sgd["reversals"] == steps - 1                    # SGD zig-zags on every step
    assert momentum["reversals"] <= steps // 3 and nesterov["reversals"] <= steps // 3
    assert momentum["final_loss"] < 0.2 * sgd["final_loss"]
    assert nesterov["final_loss"] < momentum["final_loss"]
