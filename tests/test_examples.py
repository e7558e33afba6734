"""Every example runs (in its quick mode) and checks its own claim."""
import os
import runpy

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


def test_chain_rule(tmp_path):
    result = run_example("chain_rule", "--out", str(tmp_path))
    assert result["product"] == pytest.approx(result["grad"], rel=1e-12)
    assert (tmp_path / "chain_rule.png").stat().st_size > 1000


def test_learning_rate(tmp_path):
    losses = run_example("learning_rate", "--out", str(tmp_path), "--quick")
    small, good, large = (losses[k] for k in losses)
    assert good[-1] < small[-1] < small[0]          # both converge, the good one much faster
    assert large[-1] > large[0] and all(b > a for a, b in zip(large, large[1:]))   # diverges
    assert (tmp_path / "learning_rate.png").stat().st_size > 1000


def test_backprop_cost(tmp_path):
    result = run_example("backprop_cost", "--out", str(tmp_path), "--quick")
    assert all(1.9 < r < 3.2 for r in result["flop_ratios"])   # a constant factor of the forward FLOPs
    assert (tmp_path / "backprop_cost.png").stat().st_size > 1000


def test_demo_quick(tmp_path):
    from graphgrad.demo import run_demo
    result = run_demo(out=str(tmp_path), quick=True)
    assert result["accuracy"] > 0.75          # one epoch on 1,000 digits
    for name in ("model.png", "train_step.png", "curves.png", "predictions.png"):
        assert (tmp_path / name).stat().st_size > 1000, name


def test_cli_render_draws_every_compiled_program(tmp_path):
    from graphgrad.cli import render_script
    paths = render_script(os.path.join(EXAMPLES, "first_model.py"), str(tmp_path / "r"),
                          ["--out", str(tmp_path / "o")])
    assert paths and all(open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_mnist_nielsen_quick(tmp_path):
    result = run_example("mnist_nielsen", "--out", str(tmp_path), "--quick", "--verbose", "0")
    acc = result["history"]["val_accuracy"]
    assert result["accuracy"] > 0.65 and acc[-1] > acc[0] * 0.98     # 3 epochs; 30 reach >= 88%
    assert result["history"]["loss"][-1] < result["history"]["loss"][0]


def test_mnist_mlp_quick(tmp_path):
    result = run_example("mnist_mlp", "--out", str(tmp_path), "--quick", "--verbose", "0")
    assert result["accuracy"] > 0.85                                   # 2 epochs; 20 reach >= 92%
    assert result["history"]["loss"][-1] < result["history"]["loss"][0]


def test_batch_vs_minibatch(tmp_path, capsys):
    curves = run_example("batch_vs_minibatch", "--out", str(tmp_path), "--quick")
    full, mini, sgd = (curves[k] for k in curves)
    for losses in (full, mini, sgd):
        assert losses[-1] < losses[0]                                  # every variant learns
    assert mini[-1] < full[-1] and sgd[-1] < full[-1]                  # more updates per epoch: faster per epoch
    out = capsys.readouterr().out
    assert "1 iterations per epoch" in out and "400 iterations per epoch" in out


def test_onnx_roundtrip_quick(tmp_path):
    result = run_example("onnx_roundtrip", "--out", str(tmp_path), "--quick")
    assert result["allclose"] and result["same_class"] == 1.0   # onnxruntime agrees (rtol 1e-5, atol 1e-6)
    assert result["imported_accuracy"] == result["accuracy"] > 0.8     # the imported graph is the same model
    assert result["tuned_accuracy"] > 0.8                              # and it trains
    assert (tmp_path / "onnx_imported_mlp.png").stat().st_size > 1000
    cnn = result["cnn"]
    assert cnn["allclose"] and cnn["same_class"] == 1.0
    assert cnn["imported_accuracy"] == cnn["accuracy"] > 0.5           # one epoch on 1,000 digits
    assert cnn["tuned_accuracy"] > cnn["accuracy"]                    # and fine-tuning helps
    assert (tmp_path / "onnx_imported_cnn.png").stat().st_size > 1000


def test_loss_landscape_quick(tmp_path):
    result = run_example("loss_landscape", "--out", str(tmp_path), "--quick")
    # the straight line between the two runs' minima climbs well above both ends: two minima
    assert result["barrier"] > 1.5 * max(result["loss_a"], result["loss_b"])
    line_a = result["line_a"]
    assert line_a[20] < 0.5 * line_a[4]                # α = 1 (trained) far below α = 0 (initial)
    plane = result["plane"]
    assert plane.shape == (11, 11) and plane[5, 5] == pytest.approx(result["loss_a"], rel=1e-6)
    for name in ("loss_line.png", "loss_contour.png"):
        assert (tmp_path / name).stat().st_size > 1000, name


def test_vanishing_gradients_quick(tmp_path, capsys):
    result = run_example("vanishing_gradients", "--out", str(tmp_path), "--quick")
    sigmoid, relu = result["sigmoid"], result["relu + He"]
    assert sigmoid["kernel_ratio"] < 0.1 and sigmoid["bias_ratio"] < 0.1      # the first layer barely learns
    assert 0.25 < relu["kernel_ratio"] < 4 and 0.25 < relu["bias_ratio"] < 4   # ReLU + He: within a small factor
    norms = sigmoid["kernel_norms"]
    assert all(a < b for a, b in zip(norms, norms[1:]))                       # shrinking layer by layer
    assert "first hidden / last" in capsys.readouterr().out
    for name in ("vanishing_gradients.png", "gradient_stats_sigmoid.png"):
        assert (tmp_path / name).stat().st_size > 1000, name


def test_lr_finder_quick(tmp_path):
    result = run_example("lr_finder", "--out", str(tmp_path), "--quick", "--verbose", "0")
    assert result["suggested_accuracy"] >= result["default_accuracy"]
    assert result["result"].suggestion == pytest.approx(result["result"].lr_at_min / 10)
    for name in ("lr_find.png", "lr_compare.png"):
        assert (tmp_path / name).stat().st_size > 1000, name


def test_mnist_cnn_quick(tmp_path):
    result = run_example("mnist_cnn", "--out", str(tmp_path), "--quick", "--verbose", "0")
    assert result["accuracy"] > 0.7            # 2 epochs (32 steps) on 2,000 digits
    for key in ("filters", "feature_maps", "curves", "train_step"):
        assert os.path.getsize(result[key]) > 1000, key


def _numpy_inference(params, buffers, images):
    """The batch-norm CNN's logits in evaluation mode, from a checkpoint's arrays, in NumPy."""
    import numpy as np
    import conv_reference as cref
    w1, g1, b1, w2, g2, b2, wd, bd = params
    (m1, v1), (m2, v2) = buffers[0:2], buffers[2:4]
    h = images.astype(np.float64)
    for w, g, b, m, v in ((w1, g1, b1, m1, v1), (w2, g2, b2, m2, v2)):
        h = cref.conv2d(h, w)
        h = np.maximum(cref.batch_norm(h, g, b, m, v), 0)
        h = cref.max_pool2d(h, 2)
    return h.reshape(len(h), -1) @ wd + bd


def test_mnist_cnn_batchnorm_eval_uses_the_saved_running_statistics(tmp_path):
    import numpy as np
    import graphgrad as gg
    result = run_example("mnist_cnn_batchnorm", "--out", str(tmp_path), "--quick", "--verbose", "0")
    # 32 steps: the running statistics still lag the weights (chance is 0.1; 15 epochs reach > 0.97)
    assert result["accuracy"] > 0.35
    saved = np.load(result["checkpoint"])
    params = [saved[f"param/{i}"].astype(np.float64) for i in range(8)]
    buffers = [saved[f"buffer/{i}"].astype(np.float64) for i in range(4)]   # bn1 mean, var, bn2 mean, var
    assert not np.allclose(buffers[0], 0) and not np.allclose(buffers[1], 1)   # trained: they moved
    model = result["model"]
    images = result["test"][0][:16]
    eval_logits = gg.predict(model, images)
    np.testing.assert_allclose(eval_logits, _numpy_inference(params, buffers, images), rtol=2e-3, atol=2e-3)

    # the same layers in a training graph: batch statistics, so other outputs, and the step moves the
    # running statistics
    x = gg.placeholder((None, 1, 28, 28), name="x")
    block = gg.nn.Sequential(*model.layers[:3])          # conv1, bn1, relu
    eval_block = gg.compile(block(x))(x=images)
    with gg.nn.training():
        train_block = gg.compile(block(x))(x=images)
    assert np.abs(train_block - eval_block).max() > 1e-2
    import conv_reference as cref
    h = cref.conv2d(images.astype(np.float64), params[0])
    want = np.maximum(cref.batch_norm_train(h, params[1], params[2]), 0)
    np.testing.assert_allclose(train_block, want, rtol=2e-3, atol=2e-3)
    assert not np.allclose(model.layers[1].running_mean.value, saved["buffer/0"])
