"""graphgrad.onnx: export checked by onnx.checker and onnxruntime, import into graphs that compile,
train and render, and typed errors for every kind of bad input."""
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import graphgrad as gg
import graphgrad.onnx as go
from graphgrad.onnx.exporter import EXPORTERS

RTOL, ATOL = 1e-5, 1e-6     # float32, as the issue asks


def ort_run(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


@pytest.fixture(scope="module")
def mnist():
    return gg.datasets.mnist()


@pytest.fixture(scope="module")
def trained_mlp(mnist):
    (X, y), _ = mnist
    model = gg.nn.Sequential(gg.nn.Dense(784, 64, activation="relu", kernel_init="he_normal", seed=0),
                             gg.nn.Dropout(0.2, seed=1),
                             gg.nn.Dense(64, 32, activation="tanh", seed=2),
                             gg.nn.Dense(32, 10, seed=3))
    gg.fit(model, X[:2000], y[:2000], loss="softmax_cross_entropy", optimizer=gg.optim.Adam(lr=1e-3), epochs=1,
           batch_size=32, seed=0, verbose=0)
    return model


# ---- export ---------------------------------------------------------------------------------------

def test_mlp_export_matches_onnxruntime_on_mnist(trained_mlp, mnist, tmp_path):
    _, (Xt, yt) = mnist
    path = tmp_path / "mlp.onnx"
    go.export(trained_mlp, path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == go.EXPORT_OPSET == 17
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert {i.name for i in model.graph.initializer} == {p.name for p in trained_mlp.parameters()}
    assert "Dropout" not in {n.op_type for n in model.graph.node}        # the inference graph
    expected = gg.predict(trained_mlp, Xt)
    (got,) = ort_run(model, {"input": Xt})
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    assert (got.argmax(1) == yt).mean() > 0.7      # one epoch on 2,000 digits


def test_mlp_float64_and_a_softmax_head(tmp_path):
    model = gg.nn.Sequential(gg.nn.Dense(5, 7, activation="sigmoid", seed=0, dtype="float64"),
                             gg.nn.Dense(7, 3, activation="softmax", seed=1, dtype="float64"))
    X = np.random.default_rng(0).normal(size=(9, 5))
    (got,) = ort_run(go.export(model), {"input": X})
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, gg.predict(model, X), rtol=1e-12, atol=1e-12)


def _every_exported_op(x, w):
    """One graph per exported graphgrad op, from x (None, 4) float32 and w (4, 4)."""
    pos = gg.abs(x) + 0.5
    return {
        "add": x + w[0], "sub": x - 1.5, "mul": x * w[1], "div": x / pos, "pow": pos ** (x * 0.1 + 1.0),
        "maximum": gg.maximum(x, w[2]), "minimum": gg.minimum(x, 0.25), "neg": -x, "abs": gg.abs(x),
        "sign": gg.ops.sign(x), "copy": gg.ops.make("copy", [x]), "exp": gg.exp(x), "log": gg.log(pos),
        "sqrt": gg.sqrt(pos), "pow_scalar": x ** 3, "clip": gg.clip(x, -0.5, 0.7), "relu": gg.relu(x),
        "sigmoid": gg.sigmoid(x), "tanh": gg.tanh(x), "softplus": gg.softplus(x),
        "leaky_relu": gg.leaky_relu(x, alpha=0.2), "elu": gg.elu(x, alpha=0.7),
        "gelu": gg.gelu(x) + gg.gelu(x, approximate="tanh"),
        "matmul": x @ w + gg.matmul(x, w, trans_b=True) + gg.transpose(gg.matmul(w, x, trans_a=True, trans_b=True)),
        "softmax": gg.softmax(x), "log_softmax": gg.log_softmax(x, axis=1),
        "sum": gg.sum(x, axis=1, keepdims=True) + gg.mean(x, axis=0) + gg.sum(x),
        "max": gg.max(x, axis=1, keepdims=True),
        "reshape": gg.reshape(x, (None, 2, 2)), "transpose": gg.transpose(gg.reshape(x, (None, 2, 2)), (0, 2, 1)),
        "broadcast_to": gg.broadcast_to(gg.reshape(x[:, 0:1], (None, 1, 1)), (None, 3, 4)),
        "slice": x[:, 3:0:-2] + x[:, 1:2] + gg.reshape(x[:, -1], (None, 1)),
        "concat": gg.concat([x, x * 2], axis=1),
    }


def test_every_exported_op_matches_onnxruntime():
    x = gg.placeholder((None, 4), name="x")
    w = gg.variable(np.random.default_rng(1).normal(size=(4, 4)), name="w")
    outputs = _every_exported_op(x, w)
    cnn_cases = set(_cnn_op_cases(gg.placeholder((None, 3, 9, 8), name="x")))
    assert set(outputs) | cnn_cases >= set(EXPORTERS), "every exporter needs a case here or in _cnn_op_cases"
    model = go.export(outputs)
    X = np.random.default_rng(2).normal(size=(6, 4)).astype(np.float32)
    expected = gg.compile(list(outputs.values()))(x=X)
    got = ort_run(model, {"x": X})
    for name, e, g in zip(outputs, expected, got):
        np.testing.assert_allclose(g, e, rtol=RTOL, atol=ATOL, err_msg=name)


def test_export_of_a_gradient_names_the_op_and_node():
    x = gg.placeholder((None, 3), name="x")
    w = gg.variable(np.ones((3, 2)), name="w")
    loss = gg.sum(gg.relu(x @ w))
    (dw,) = gg.grad(loss, [w])
    with pytest.raises(go.UnsupportedOpError, match=r'(expand|relu_backward) node "\w+".*no ONNX equivalent'):
        go.export(dw)
    with pytest.raises(go.UnsupportedOpError, match=r'mse node "the_loss"'):
        go.export(gg.mse(x @ w, gg.placeholder((None, 2), name="y"), name="the_loss"))


def test_failed_export_leaves_an_existing_file_alone(tmp_path, trained_mlp):
    path = tmp_path / "m.onnx"
    go.export(trained_mlp, path)
    before = path.read_bytes()
    x = gg.placeholder((None, 784), name="input")
    (g,) = gg.grad(gg.sum(trained_mlp(x) ** 2), [trained_mlp.parameters()[0]])
    with pytest.raises(go.UnsupportedOpError):
        go.export(g, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.onnx"]


def test_export_needs_an_input_shape_it_cannot_infer():
    with pytest.raises(go.OnnxError, match="input_shape"):
        go.export(gg.nn.Sequential(gg.nn.ReLU()))
    model = go.export(gg.nn.Sequential(gg.nn.ReLU()), input_shape=(3,))
    (got,) = ort_run(model, {"input": np.array([[-1, 0, 2]], np.float32)})
    np.testing.assert_array_equal(got, [[0, 0, 2]])


# ---- import ---------------------------------------------------------------------------------------

def test_roundtrip_import_compile_and_finetune(trained_mlp, mnist, tmp_path):
    (X, y), (Xt, yt) = mnist
    path = tmp_path / "mlp.onnx"
    go.export(trained_mlp, path)
    imported = go.load(path)
    assert list(imported.inputs) == ["input"] and imported.inputs["input"].shape == (None, 784)
    assert len(imported.parameters()) == 6 and all(p.trainable for p in imported.parameters())
    expected = gg.predict(trained_mlp, Xt)
    np.testing.assert_allclose(gg.compile(imported.outputs["output"])(input=Xt), expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(gg.predict(imported, Xt), expected, rtol=RTOL, atol=ATOL)
    # fine-tuning updates the imported variables, not the original model's
    before = [p.value for p in imported.parameters()]
    original = [p.value for p in trained_mlp.parameters()]
    loss0 = gg.evaluate(imported, Xt, yt, loss="softmax_cross_entropy")
    gg.fit(imported, X, y, loss="softmax_cross_entropy", optimizer=gg.optim.Adam(lr=1e-3), epochs=1, verbose=0,
           seed=0)
    loss1 = gg.evaluate(imported, Xt, yt, loss="softmax_cross_entropy")
    assert _loss(loss1) < _loss(loss0)
    assert all(not np.array_equal(b, p.value) for b, p in zip(before, imported.parameters()))
    assert all(np.array_equal(o, p.value) for o, p in zip(original, trained_mlp.parameters()))


def _loss(result):
    return result["loss"] if isinstance(result, dict) else float(np.ravel(result)[0])


def test_a_finetuned_imported_model_exports_again(trained_mlp, mnist):
    (X, y), (Xt, _) = mnist
    imported = go.load(go.export(trained_mlp))
    gg.fit(imported, X[:256], y[:256], loss="softmax_cross_entropy", optimizer=gg.optim.SGD(lr=0.1), epochs=1,
           verbose=0, seed=0)
    again = go.export(imported)                    # the input shape comes from the imported input
    (got,) = ort_run(again, {"input": Xt[:100]})
    np.testing.assert_allclose(got, gg.predict(imported, Xt[:100]), rtol=RTOL, atol=ATOL)
    assert not np.allclose(got, gg.predict(trained_mlp, Xt[:100]), rtol=RTOL, atol=ATOL)


@settings(max_examples=12)
@given(sizes=st.lists(st.integers(1, 9), min_size=2, max_size=4),
       activations=st.lists(st.sampled_from(["relu", "sigmoid", "tanh", "leaky_relu", "elu", "softplus", "gelu",
                                             "softmax", "log_softmax", "linear"]), min_size=3, max_size=3),
       batch=st.integers(1, 7), dtype=st.sampled_from(["float32", "float64"]))
def test_random_mlps_roundtrip_through_onnxruntime(sizes, activations, batch, dtype):
    layers = [gg.nn.Dense(a, b, activation=act, seed=k, dtype=dtype)
              for k, (a, b, act) in enumerate(zip(sizes, sizes[1:], activations))]
    used = set(activations[:len(layers)])
    # onnxruntime has no float64 Elu, Softplus or Erf kernels; the erf form of gelu exports as
    # Erf, which graphgrad (no erf op) does not import back
    runs_in_ort = dtype == "float32" or not used & {"elu", "softplus", "gelu"}
    imports_back = "gelu" not in used
    assume(runs_in_ort or imports_back)
    model = gg.nn.Sequential(*layers)
    X = np.random.default_rng(batch).normal(size=(batch, sizes[0])).astype(dtype)
    expected = gg.predict(model, X)
    exported = go.export(model)
    # float64: ONNX stores float attributes (leaky_relu's alpha) as float32
    tol = dict(rtol=RTOL, atol=ATOL) if dtype == "float32" else dict(rtol=1e-6, atol=1e-9)
    if runs_in_ort:
        (got,) = ort_run(exported, {"input": X})
        np.testing.assert_allclose(got, expected, **tol)
    if imports_back:
        np.testing.assert_allclose(gg.predict(go.load(exported), X), expected, **tol)


def test_imported_graph_takes_gradients_and_an_optimizer(trained_mlp):
    imported = go.load(go.export(trained_mlp))
    y = gg.placeholder((None,), name="y", dtype="int64")
    loss = gg.softmax_cross_entropy(imported.outputs["output"], y)
    grads = gg.grad(loss, imported.parameters())
    X = np.random.default_rng(0).random((8, 784), dtype=np.float32)
    Y = np.arange(8) % 10
    values = gg.compile([loss] + grads)(input=X, y=Y)
    assert all(np.isfinite(v).all() for v in values) and any(np.abs(v).sum() > 0 for v in values[1:])
    step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.5))
    first = step(input=X, y=Y)
    for _ in range(5):
        last = step(input=X, y=Y)
    assert last < first


def test_trainable_false_makes_constants(trained_mlp):
    imported = go.load(go.export(trained_mlp), trainable=False)
    assert imported.parameters() == []
    assert {t.op for t in gg.Graph([imported.outputs["output"]]).nodes} >= {"constant", "placeholder"}


def test_imported_graph_renders_and_summarises(trained_mlp, tmp_path):
    imported = go.load(go.export(trained_mlp))
    path = gg.render(imported.outputs["output"], str(tmp_path / "imported.png"))
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert "matmul" in gg.compile(imported.outputs["output"]).summary(batch_size=4, as_text=True)


def _model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _ref(model, feeds):
    from onnx.reference import ReferenceEvaluator
    return ReferenceEvaluator(model).run(None, feeds)


def test_pytorch_style_gemm_and_flatten_glue():
    """A torch.onnx export of Flatten + Linear(transB=1) + ReLU, with the Shape/Gather/Unsqueeze/
    Concat chain older exporters emit for x.view(x.size(0), -1)."""
    rng = np.random.default_rng(0)
    W = rng.normal(size=(5, 12)).astype(np.float32)
    b = rng.normal(size=(5,)).astype(np.float32)
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, np.int64))),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W", "b"], ["z"], transB=1, alpha=1.0, beta=1.0),
        helper.make_node("Relu", ["z"], ["y"]),
    ]
    inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(b, "b"),
             numpy_helper.from_array(np.array([0], np.int64), "axes0"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1")]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    imported = go.load(model)
    assert imported.outputs["y"].shape == (None, 5)
    assert {v.name for v in imported.parameters()} == {"W", "b"}          # the int shapes are not variables
    f = gg.compile(imported.outputs["y"])
    for n in (3, 5):
        X = rng.normal(size=(n, 3, 4)).astype(np.float32)
        np.testing.assert_allclose(f(x=X), _ref(model, {"x": X})[0], rtol=RTOL, atol=ATOL)


def test_keras_style_matmul_reshape_softmax():
    rng = np.random.default_rng(1)
    W = rng.normal(size=(6, 4)).astype(np.float32)
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "W"], ["z"]),
             helper.make_node("Add", ["z", "b"], ["zb"]),
             helper.make_node("LeakyRelu", ["zb"], ["a"], alpha=0.1),
             helper.make_node("Softmax", ["a"], ["p"], axis=-1),
             helper.make_node("Identity", ["p"], ["probs"])]
    inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(np.full(4, 0.1, np.float32), "b"),
             numpy_helper.from_array(np.array([-1, 6], np.int64), "shape")]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["unk__1", 2, 3])],
                   [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["unk__1", 4])], inits, opset=13)
    imported = go.load(model.SerializeToString())
    X = rng.normal(size=(7, 2, 3)).astype(np.float32)
    np.testing.assert_allclose(gg.compile(imported.outputs["probs"])(x=X), _ref(model, {"x": X})[0],
                               rtol=RTOL, atol=ATOL)


def test_importing_graphgrad_does_not_import_onnx():
    code = "import sys, graphgrad as gg; gg.onnx.EXPORT_OPSET; assert 'onnx' not in sys.modules, 'onnx imported'"
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ))


def test_missing_onnx_says_how_to_install():
    code = ("import sys; sys.modules['onnx'] = None\n"
            "import graphgrad as gg\n"
            "try:\n    gg.onnx.load('x.onnx')\n"
            "except gg.onnx.OnnxMissingError as err:\n    print(err)\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert "pip install graphgrad[onnx]" in out and "pip install onnx" in out


# ---- bad input ---------------------------------------------------------------------------------------

def test_truncated_and_foreign_files(tmp_path, trained_mlp):
    data = go.export(trained_mlp).SerializeToString()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(go.OnnxFormatError, match="truncated.onnx"):
        go.load(truncated)
    png = tmp_path / "picture.onnx"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(go.OnnxFormatError, match="picture.onnx"):
        go.load(png)
    text = tmp_path / "notes.onnx"
    text.write_text("just some text, not a model\n")
    with pytest.raises(go.OnnxFormatError):
        go.load(text)
    with pytest.raises(go.OnnxFormatError):
        go.load(b"")
    with pytest.raises(FileNotFoundError):
        go.load(tmp_path / "missing.onnx")


def _relu_model(op="Relu", opset=17, dims=("N", 3), **attrs):
    return _model([helper.make_node(op, ["x"], ["y"], name="the_node", **attrs)],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(dims))], opset=opset)


def test_unsupported_operator_names_op_and_node():
    with pytest.raises(go.UnsupportedOpError, match=r'Hardmax node "the_node" \(node 0\).*not supported'):
        go.load(_relu_model("Hardmax"))


def test_unsupported_attribute_value_names_it():
    with pytest.raises(go.UnsupportedOpError, match="approximate='fast'"):
        go.load(_relu_model("Gelu", opset=20, approximate="fast"))
    ratio = numpy_helper.from_array(np.array(0.5, np.float32), "r")
    mode = numpy_helper.from_array(np.array(True), "t")
    model = _model([helper.make_node("Dropout", ["x", "r", "t"], ["y"], name="drop")],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], [ratio, mode])
    with pytest.raises(go.UnsupportedOpError, match='Dropout node "drop".*training-mode'):
        go.load(model)


def test_opsets_outside_the_supported_range():
    with pytest.raises(go.OnnxOpsetError, match="opset 99"):
        go.load(_relu_model(opset=99), check=False)
    with pytest.raises(go.OnnxOpsetError, match="opset 5"):
        go.load(_relu_model(opset=5))
    with pytest.raises(go.OnnxOpsetError, match="export"):
        go.export(gg.relu(gg.placeholder((None, 2), name="x")), opset=18)


def test_dynamic_shapes_graphgrad_cannot_represent():
    with pytest.raises(go.OnnxShapeError, match=r'input "x".*axis 1.*"features"'):
        go.load(_relu_model(dims=("N", "features")))
    imported = go.load(_relu_model(dims=("N", "features")), input_shapes={"x": (None, 3)})
    assert imported.inputs["x"].shape == (None, 3)
    # a Reshape whose shape the graph computes from a float input
    model = _model([helper.make_node("Reshape", ["x", "s"], ["y"], name="r")],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
                    helper.make_tensor_value_info("s", TensorProto.INT64, [2])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2])])
    with pytest.raises(go.UnsupportedOpError, match='input "s".*static_inputs'):
        go.load(model)
    imported = go.load(model, static_inputs={"s": np.array([3, 2])})
    np.testing.assert_array_equal(gg.compile(imported.outputs["y"])(x=np.arange(6.0).reshape(2, 3)),
                                  np.arange(6.0).reshape(3, 2))


def test_a_node_reading_an_undefined_value():
    model = _model([helper.make_node("Add", ["x", "nowhere"], ["y"], name="adder")],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    with pytest.raises(go.OnnxError, match="nowhere"):
        go.load(model, check=False)
    with pytest.raises(go.OnnxFormatError):
        go.load(model)


def test_shape_errors_name_the_onnx_node():
    model = _model([helper.make_node("Add", ["x", "w"], ["y"], name="bad_add")],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                   [numpy_helper.from_array(np.ones(4, np.float32), "w")])
    with pytest.raises(go.OnnxShapeError, match='Add node "bad_add"'):
        go.load(model, check=False)


@settings(max_examples=30)
@given(data=st.data())
def test_corrupted_files_raise_typed_errors(data, tmp_path_factory):
    """Flipped, dropped or inserted bytes anywhere in a valid file: it loads, or the error is a
    GraphGradError (never another exception, never a crash)."""
    blob = bytearray(_CORRUPTION_BASE)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(blob) - 1))
        kind = data.draw(st.sampled_from(["flip", "drop", "insert"]))
        if kind == "flip":
            blob[at] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "drop":
            del blob[at]
        else:
            blob.insert(at, data.draw(st.integers(0, 255)))
    try:
        go.load(bytes(blob))
    except gg.GraphGradError:
        pass


def test_an_initializer_whose_data_do_not_fill_its_dims_raises_a_format_error():
    """The corruption the fuzz test above once found: one flipped bit in an initializer's dims
    (6 floats, dims (2,)); onnx's to_array raised a bare ValueError."""
    blob = bytearray(_CORRUPTION_BASE)
    blob[287] ^= 1 << 4
    with pytest.raises(go.OnnxFormatError, match='initializer "w" cannot be read'):
        go.load(bytes(blob))


def _small_model_bytes():
    x = gg.placeholder((None, 3), name="x")
    w = gg.variable(np.arange(6.0).reshape(3, 2), name="w")
    return go.export({"y": gg.softmax(gg.relu(x @ w) + 1.0)}).SerializeToString()


_CORRUPTION_BASE = _small_model_bytes()


# ---- convolutional models -------------------------------------------------------------------------

def _mnist_cnn(batch_norm: bool):
    """examples/mnist_cnn.py's network (and its BatchNorm variant)."""
    nn = gg.nn

    def block(c_in, c_out, k):
        if not batch_norm:
            return [nn.Conv2D(c_in, c_out, 3, activation="relu", seed=k), nn.MaxPool2D(2)]
        return [nn.Conv2D(c_in, c_out, 3, use_bias=False, seed=k), nn.BatchNorm(c_out), nn.ReLU(), nn.MaxPool2D(2)]
    return nn.Sequential(*block(1, 32, 1), *block(32, 64, 2), nn.Flatten(), nn.Dropout(0.5, seed=0),
                         nn.Dense(1600, 10, seed=3))


@pytest.fixture(scope="module", params=[False, True], ids=["cnn", "cnn_batchnorm"])
def trained_cnn(request, mnist):
    (X, y), _ = mnist
    model = _mnist_cnn(request.param)
    gg.fit(model, X[:512].reshape(-1, 1, 28, 28), y[:512], loss="softmax_cross_entropy",
           optimizer=gg.optim.Adam(lr=1e-3), epochs=1, batch_size=64, seed=0, verbose=0)
    return model


def test_cnn_export_matches_onnxruntime_on_mnist(trained_cnn, mnist, tmp_path):
    _, (Xt, _) = mnist
    Xt = Xt.reshape(-1, 1, 28, 28)
    path = tmp_path / "cnn.onnx"
    go.export(trained_cnn, path, input_shape=(1, 28, 28))
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert {"Conv", "MaxPool", "Reshape", "Gemm" if "Gemm" in ops else "MatMul"} <= ops and "Dropout" not in ops
    bns = [m for m in trained_cnn if isinstance(m, gg.nn.BatchNorm)]
    assert ("BatchNormalization" in ops) == bool(bns)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for bn in bns:                         # the running statistics travel as initializers
        np.testing.assert_array_equal(inits[bn.running_var.name], bn.running_var.value)
        assert not np.allclose(bn.running_var.value, 1.0)          # training moved them
    expected = gg.predict(trained_cnn, Xt)
    (got,) = ort_run(model, {"input": Xt})
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def _cnn_op_cases(x):
    """One graph per exported convolutional op, on x (None, 3, 9, 8)."""
    rng = np.random.default_rng(4)
    w = gg.variable(rng.normal(size=(4, 3, 3, 2)), name="cw")
    b = gg.variable(rng.normal(size=(4,)), name="cb")
    stats = [gg.variable(v, name=f"bn{k}", trainable=k < 2) for k, v in
             enumerate((rng.normal(size=3), rng.normal(size=3), rng.normal(size=3), rng.uniform(0.5, 2, size=3)))]
    return {
        "conv2d": gg.conv2d(x, w, b, stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
        "conv2d_same": gg.conv2d(x, w[:, :, :, :1], padding="same", dilation=2),
        "conv2d_nobias": gg.conv2d(x, w, stride=3, padding=1),
        "max_pool2d": gg.max_pool2d(x, 3, stride=2, padding=1),
        "avg_pool2d": gg.avg_pool2d(x, (2, 3), stride=(1, 2), padding=(1, 1)),
        "global_avg_pool2d": gg.global_avg_pool2d(x),
        "batch_norm_eval": gg.batch_norm(x, *stats, training=False, eps=1e-3),
        "batch_norm_eval_2d": gg.batch_norm(gg.flatten(x)[:, :3], *stats, training=False),
    }


def test_every_convolutional_op_matches_onnxruntime():
    x = gg.placeholder((None, 3, 9, 8), name="x")
    outputs = _cnn_op_cases(x)
    model = go.export(outputs)
    X = np.random.default_rng(5).normal(size=(5, 3, 9, 8)).astype(np.float32)
    expected = gg.compile(list(outputs.values()))(x=X)
    got = ort_run(model, {"x": X})
    for name, e, g in zip(outputs, expected, got):
        np.testing.assert_allclose(g, e, rtol=RTOL, atol=ATOL, err_msg=name)
    # and back: each imports as the same graphgrad op and computes the same
    imported = go.load(model)
    again = gg.compile([imported.outputs[k] for k in outputs])(x=X)
    for name, e, g in zip(outputs, expected, again):
        np.testing.assert_allclose(g, e, rtol=RTOL, atol=ATOL, err_msg=name)


def test_cnn_roundtrip_import_and_finetune(trained_cnn, mnist):
    (X, y), (Xt, yt) = mnist
    X, Xt = X.reshape(-1, 1, 28, 28), Xt[:1000].reshape(-1, 1, 28, 28)
    imported = go.load(go.export(trained_cnn, input_shape=(1, 28, 28)))
    assert imported.inputs["input"].shape == (None, 1, 28, 28)
    # the running statistics are variables that are never trained
    assert [p.name for p in imported.parameters()] == [p.name for p in trained_cnn.parameters()]
    np.testing.assert_allclose(gg.predict(imported, Xt), gg.predict(trained_cnn, Xt), rtol=RTOL, atol=ATOL)
    loss0 = gg.evaluate(imported, Xt, yt[:1000], loss="softmax_cross_entropy")
    gg.fit(imported, X[512:1536], y[512:1536], loss="softmax_cross_entropy", optimizer=gg.optim.Adam(lr=1e-3),
           epochs=1, batch_size=64, verbose=0, seed=0)
    assert _loss(gg.evaluate(imported, Xt, yt[:1000], loss="softmax_cross_entropy")) < _loss(loss0)


def _conv_node_model(op, x_shape, initializers=(), **attrs):
    inputs = ["x"] + [i.name for i in initializers]
    node = helper.make_node(op, inputs, ["y"], name="the_node", **attrs)
    return _model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [f"d{k}" for k in range(len(x_shape))])],
                  initializers)


def test_imported_conv_auto_pad_and_avg_pool_excluding_padding():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(2, 3, 7, 6)).astype(np.float32)
    w = numpy_helper.from_array(rng.normal(size=(2, 3, 3, 3)).astype(np.float32), "w")
    cases = [_conv_node_model("Conv", ["N", 3, 7, 6], [w], auto_pad="SAME_UPPER"),
             _conv_node_model("Conv", ["N", 3, 7, 6], [w], auto_pad="VALID", strides=[2, 2]),
             _conv_node_model("Conv", ["N", 3, 7, 6], [w], pads=[1, 2, 1, 2], dilations=[2, 1]),
             _conv_node_model("AveragePool", ["N", 3, 7, 6], kernel_shape=[3, 2], pads=[1, 1, 1, 1]),
             _conv_node_model("AveragePool", ["N", 3, 7, 6], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                              count_include_pad=1),
             _conv_node_model("MaxPool", ["N", 3, 7, 6], kernel_shape=[3, 2], strides=[2, 2], ceil_mode=1),
             _conv_node_model("GlobalAveragePool", ["N", 3, 7, 6])]
    for model in cases:
        (expected,) = ort_run(model, {"x": X})
        got = gg.compile(go.load(model).outputs["y"])(x=X)
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL, err_msg=str(model.graph.node[0]))


def test_imported_conv_and_pool_attributes_graphgrad_lacks():
    w = numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "w")
    bad = {
        "group=2": _conv_node_model("Conv", ["N", 2, 6, 6], [w], group=2),
        "padding": _conv_node_model("Conv", ["N", 1, 6, 6], [w], pads=[0, 0, 1, 1]),
        "padding ": _conv_node_model("Conv", ["N", 1, 6, 6], [w], auto_pad="SAME_UPPER", strides=[2, 2]),
        "ceil_mode": _conv_node_model("MaxPool", ["N", 1, 6, 6], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
        "dilations": _conv_node_model("MaxPool", ["N", 1, 6, 6], kernel_shape=[2, 2], dilations=[2, 2]),
        "a 1-D": _conv_node_model("MaxPool", ["N", 1, 6], kernel_shape=[2]),
        "training-mode": _conv_node_model("BatchNormalization", ["N", 2],
                                          [numpy_helper.from_array(np.ones(2, np.float32), k) for k in "sbmv"],
                                          training_mode=1),
    }
    for what, model in bad.items():
        with pytest.raises(go.UnsupportedOpError, match=rf'node "the_node".*{what.strip()}'):
            go.load(model, check=False)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_random_convolutions_and_pools_roundtrip_through_onnxruntime(data):
    """Random geometries: export to onnxruntime and import back agree with graphgrad."""
    c, o = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 4))
    kh, kw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    stride = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    dilation = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    padding = (data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2)))
    h = data.draw(st.integers(dilation[0] * (kh - 1) + 1, 9))
    w = data.draw(st.integers(dilation[1] * (kw - 1) + 1, 9))
    pk = (data.draw(st.integers(1, min(3, h))), data.draw(st.integers(1, min(3, w))))
    ppad = (data.draw(st.integers(0, pk[0] // 2)), data.draw(st.integers(0, pk[1] // 2)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = gg.placeholder((None, c, h, w), name="x")
    kernel = gg.variable(rng.normal(size=(o, c, kh, kw)), name="k")
    bias = gg.variable(rng.normal(size=(o,)), name="b") if data.draw(st.booleans()) else None
    outputs = {"conv": gg.conv2d(x, kernel, bias, stride=stride, padding=padding, dilation=dilation),
               "max": gg.max_pool2d(x, pk, padding=ppad), "avg": gg.avg_pool2d(x, pk, stride=1, padding=ppad)}
    X = rng.normal(size=(data.draw(st.integers(1, 3)), c, h, w)).astype(np.float32)
    expected = gg.compile(list(outputs.values()))(x=X)
    model = go.export(outputs)
    imported = go.load(model)
    again = gg.compile([imported.outputs[k] for k in outputs])(x=X)
    for name, e, g, a in zip(outputs, expected, ort_run(model, {"x": X}), again):
        np.testing.assert_allclose(g, e, rtol=RTOL, atol=ATOL, err_msg=name)
        np.testing.assert_array_equal(a, e, err_msg=name)
