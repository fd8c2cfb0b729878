#!/usr/bin/env python3
"""Writes tiny_lm.onnx: a one-block language model small enough to check by hand.

    tokens  int64 [batch, seq]
    embed   = E[tokens]                                  [batch, seq, 6]   node "embed"
    pre     = embed @ W_in + b_in                        [batch, seq, 16]
    act     = relu(pre)                                  [batch, seq, 16]  node "mlp.act"
    resid   = embed + act @ W_out + b_out                [batch, seq, 6]   node "resid"
    logits  = resid @ U                                  [batch, seq, 13]  the graph's output

Every weight is a small multiple of 1/8 given by a formula (see weight()), exact in float32, so a test can rebuild
the same computation without reading the file. Needs only Debian's python3-onnx:

    python3 tests/models/make_tiny_lm.py tests/models/tiny_lm.onnx
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

VOCAB, D_MODEL, D_MLP = 13, 6, 16


def weight(name, rows, cols=None):
    """The formulas the tests repeat (row i, column j): integers modulo small primes, centred, over 4 or 8."""
    i = np.arange(rows, dtype=np.int64)[:, None]
    j = np.arange(cols if cols else rows, dtype=np.int64)[None, :]
    formulas = {
        "E": lambda: ((3 * i + 5 * j) % 11 - 5) / 4,
        "W_in": lambda: ((7 * i + 3 * j + 1) % 13 - 6) / 8,
        "W_out": lambda: ((5 * i + 2 * j) % 9 - 4) / 8,
        "U": lambda: ((i + 2 * j) % 7 - 3) / 4,
        "b_in": lambda: ((j % 5) - 2) / 8,
        "b_out": lambda: ((j % 3) - 1) / 4,
    }
    value = formulas[name]().astype(np.float32)
    return numpy_helper.from_array(value if cols else value.reshape(-1), name)


def main(path):
    initializers = [
        weight("E", VOCAB, D_MODEL), weight("W_in", D_MODEL, D_MLP), weight("b_in", D_MLP),
        weight("W_out", D_MLP, D_MODEL), weight("b_out", D_MODEL), weight("U", D_MODEL, VOCAB),
    ]
    nodes = [
        helper.make_node("Gather", ["E", "tokens"], ["hook_embed"], name="embed", axis=0),
        helper.make_node("MatMul", ["hook_embed", "W_in"], ["mlp_in"], name="mlp.in"),
        helper.make_node("Add", ["mlp_in", "b_in"], ["mlp_pre"], name="mlp.in_bias"),
        helper.make_node("Relu", ["mlp_pre"], ["hook_mlp_act"], name="mlp.act"),
        helper.make_node("MatMul", ["hook_mlp_act", "W_out"], ["mlp_out"], name="mlp.out"),
        helper.make_node("Add", ["mlp_out", "b_out"], ["mlp_out_biased"], name="mlp.out_bias"),
        helper.make_node("Add", ["hook_embed", "mlp_out_biased"], ["hook_resid_post"], name="resid"),
        helper.make_node("MatMul", ["hook_resid_post", "U"], ["logits"], name="unembed"),
    ]
    graph = helper.make_graph(
        nodes, "tiny_lm",
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", VOCAB])],
        initializers)
    model = helper.make_model(graph, producer_name="nativeengine tests/models/make_tiny_lm.py",
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tiny_lm.onnx")
