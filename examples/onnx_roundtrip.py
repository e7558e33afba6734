"""ONNX round trip: train the MNIST MLP and CNN, export them to ONNX (opset 17), run the files in
onnxruntime and compare their predictions with graphgrad's, import them back as graphs, fine-tune
each one more epoch with gg.fit, and render the imported graphs to PNG. Needs `pip install onnx
onnxruntime` (make test installs both)."""
import argparse
import os

import numpy as np

import graphgrad as gg


def mnist_cnn() -> gg.nn.Sequential:
    """examples/mnist_cnn.py's network: (batch, 1, 28, 28) images -> (batch, 10) logits."""
    nn = gg.nn
    return nn.Sequential(nn.Conv2D(1, 32, 3, activation="relu", seed=3), nn.MaxPool2D(2),
                         nn.Conv2D(32, 64, 3, activation="relu", seed=4), nn.MaxPool2D(2),
                         nn.Flatten(), nn.Dropout(0.5, seed=5), nn.Dense(1600, 10, seed=6))


def roundtrip(name, model, data, epochs, args, ort, input_shape=None) -> dict:
    """Train `model`, export it, compare onnxruntime with graphgrad, import, fine-tune, render."""
    (X, y), (Xt, yt) = data
    gg.fit(model, X, y, loss="softmax_cross_entropy", optimizer=gg.optim.Adam(lr=1e-3), epochs=epochs,
           batch_size=32, seed=0, verbose=args.verbose)
    ours = gg.predict(model, Xt)

    # export (checked with onnx.checker, full_check, before it is written), and run it in onnxruntime
    path = os.path.join(args.out, f"mnist_{name}.onnx")
    gg.onnx.export(model, path, input_shape=input_shape)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    theirs = session.run(None, {"input": Xt})[0]
    max_diff = float(np.abs(theirs - ours).max())
    agree = bool(np.allclose(theirs, ours, rtol=1e-5, atol=1e-6))
    same_class = float((theirs.argmax(1) == ours.argmax(1)).mean())
    accuracy = float((ours.argmax(1) == yt).mean())
    print(f"exported {path}: onnxruntime vs graphgrad on {len(Xt)} test digits: max |difference| {max_diff:.2e}, "
          f"same predicted class {same_class:.1%}, test accuracy {accuracy:.2%}")

    # import it back: a graph with trainable variables, and a gg.nn module for gg.fit
    imported = gg.onnx.load(path)
    print(imported)
    imported_accuracy = float((gg.predict(imported, Xt).argmax(1) == yt).mean())
    history = gg.fit(imported, X, y, loss="softmax_cross_entropy", optimizer=gg.optim.Adam(lr=5e-4), epochs=1,
                     batch_size=32, seed=1, validation_data=(Xt, yt), metrics=["accuracy"], verbose=args.verbose)
    tuned_accuracy = history.history["val_accuracy"][-1]
    print(f"imported {name}: test accuracy {imported_accuracy:.2%}; after one more epoch of gg.fit "
          f"{tuned_accuracy:.2%}")

    # the imported graph as a picture
    png = gg.render(imported.outputs["output"], os.path.join(args.out, f"onnx_imported_{name}.png"))
    print(f"wrote {png}")
    return {"max_diff": max_diff, "allclose": agree, "same_class": same_class, "accuracy": accuracy,
            "imported_accuracy": imported_accuracy, "tuned_accuracy": tuned_accuracy, "png": png,
            "history": history.history}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--quick", action="store_true",
                        help="1 epoch on 2,000 digits (the CNN: 1,000), for the tests")
    parser.add_argument("--verbose", type=int, default=0)
    args = parser.parse_args(argv)
    import onnxruntime as ort

    (X, y), (Xt, yt) = gg.datasets.mnist()
    epochs = 1 if args.quick else args.epochs
    os.makedirs(args.out, exist_ok=True)

    mlp = gg.nn.Sequential(gg.nn.Dense(784, 128, activation="relu", kernel_init="he_normal", seed=0),
                           gg.nn.Dropout(0.1, seed=1),
                           gg.nn.Dense(128, 10, seed=2))
    train = (X[:2000], y[:2000]) if args.quick else (X, y)
    result = roundtrip("mlp", mlp, (train, (Xt, yt)), epochs, args, ort)

    # the CNN reads NCHW images; it has no Dense first layer to tell its input shape
    images, test_images = X.reshape(-1, 1, 28, 28), Xt.reshape(-1, 1, 28, 28)
    train = (images[:1000], y[:1000]) if args.quick else (images, y)
    result["cnn"] = roundtrip("cnn", mnist_cnn(), (train, (test_images, yt)), epochs, args, ort,
                              input_shape=(1, 28, 28))
    return result


if __name__ == "__main__":
    main()
