#!/usr/bin/env python3
"""Writes scale.onnx: float activations in, doubled, out; a model whose outputs are as finite as its inputs.

    x       float32 [batch, 4]
    y       = 2 * x                                      [batch, 4]        node "scale"
    out     = relu(y)                                    [batch, 4]        the graph's output

A NaN in x stays NaN in y, and a value above half of float32's largest becomes infinity, so a test can put
non-finite values exactly where it wants them in a harvest. Needs only Debian's python3-onnx:

    python3 tests/models/make_scale.py tests/models/scale.onnx
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main(path):
    two = numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")
    nodes = [
        helper.make_node("Mul", ["x", "two"], ["hook_scaled"], name="scale"),
        helper.make_node("Relu", ["hook_scaled"], ["out"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes, "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 4])],
        [two])
    model = helper.make_model(graph, producer_name="nativeengine tests/models/make_scale.py",
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "scale.onnx")
