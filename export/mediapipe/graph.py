"""Edits that turn a converted (batch-1) MediaPipe graph into a batched, standard ONNX engine.

tf2onnx converts MediaPipe's TFLite models faithfully, batch of 1 included: the inputs and
outputs say 1, Reshape constants spell out a leading 1, and Slices that pad channels end at
1 on axis 0. It also leaves MediaPipe's custom ops in the graph and still exits 0. The
functions here fix what they can and refuse the rest:

- :func:`reject_custom_ops` raises when any node is not a standard ONNX operator (such a
  graph loads nowhere but in MediaPipe).
- :func:`make_batch_dynamic` names dim 0 ``batch`` on every input and output, gives each
  Reshape that bakes a leading 1 its *own* shape constant with 0 there (ONNX Reshape's "copy
  this dim from the input"; tf2onnx shares constants between nodes, so editing one in place
  would edit others), opens Slice ends of 1 on axis 0, and drops stale ``value_info``.
- :func:`expand_depth_to_space` spells DCR DepthToSpace with standard Reshape/Transpose
  (onnx2torch, the torch path, knows only CRD).
- :func:`select_outputs` keeps the outputs an adapter reads, under names that say what they
  are, and prunes the nodes that fed only the dropped ones (``pose_landmark``'s
  segmentation mask and heatmap are half its time).

The edit is checked by the parity gate, not trusted: batch N must give batch 1's results.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import numpy as np
import onnx
from onnx import numpy_helper

BATCH_AXIS = "batch"
SLICE_END_MAX = np.iinfo(np.int64).max
STANDARD_DOMAINS = ("", "ai.onnx")


class CustomOpsError(ValueError):
    """The converted graph holds operators that no standard ONNX runtime has."""


def _all_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    nodes = []
    for node in graph.node:
        nodes.append(node)
        for attribute in node.attribute:
            if attribute.g is not None and attribute.type == onnx.AttributeProto.GRAPH:
                nodes.extend(_all_nodes(attribute.g))
            for sub in attribute.graphs:
                nodes.extend(_all_nodes(sub))
    return nodes


def custom_ops(model: onnx.ModelProto) -> Counter[str]:
    """Operator types (with their domain when not standard) that ONNX does not define."""
    found: Counter[str] = Counter()
    for node in _all_nodes(model.graph):
        standard = node.domain in STANDARD_DOMAINS and onnx.defs.has(node.op_type)
        if not standard:
            found[f"{node.domain}:{node.op_type}" if node.domain else node.op_type] += 1
    return found


def reject_custom_ops(model: onnx.ModelProto, what: str) -> None:
    """Raise :class:`CustomOpsError` naming each non-standard operator of ``model``."""
    found = custom_ops(model)
    if found:
        listed = ", ".join(f"{op} x{count}" for op, count in sorted(found.items()))
        raise CustomOpsError(
            f"{what}: the converted graph keeps operators that are not standard ONNX ({listed}); "
            "the converter passed them through, and no ONNX runtime can run them. Use a model "
            "without them (face_landmark + iris_landmark instead of "
            "face_landmark_with_attention), or express them with standard operators.")


def _set_batch_dim(value: onnx.ValueInfoProto) -> None:
    dims = value.type.tensor_type.shape.dim
    if dims:
        dims[0].Clear()
        dims[0].dim_param = BATCH_AXIS


def make_batch_dynamic(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` that takes any batch size (see the module docstring)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    for value in (*graph.input, *graph.output):
        _set_batch_dim(value)
    constants = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Reshape" and node.input[1] in constants:
            shape = numpy_helper.to_array(constants[node.input[1]])
            if shape.ndim == 1 and shape.size and shape[0] == 1:
                node.input[1] = _own_constant(graph, node, 1, _with_first(shape, 0))
        elif node.op_type == "Slice" and len(node.input) >= 3:
            _open_batch_slice(graph, node, constants)
    del graph.value_info[:]
    _drop_unused_initializers(graph)
    onnx.checker.check_model(model)
    return model


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def expand_depth_to_space(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with each DCR-mode DepthToSpace spelled as Reshape, Transpose,
    Reshape (the operator's own definition). Same results; but onnx2torch, the torch path
    of these engines, implements only CRD mode, and ``pose_detection`` uses DCR.

    Needs static shapes: run before :func:`make_batch_dynamic` (whose Reshape edit then
    turns the leading 1s into "copy the batch")."""
    model = onnx.shape_inference.infer_shapes(model)
    shapes = {value.name: [d.dim_value for d in value.type.tensor_type.shape.dim]
              for value in (*model.graph.value_info, *model.graph.input)}
    graph = model.graph
    rewritten: list[onnx.NodeProto] = []
    for node in graph.node:
        mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "DCR")
        if node.op_type != "DepthToSpace" or mode != "DCR":
            rewritten.append(node)
            continue
        block = next(a.i for a in node.attribute if a.name == "blocksize")
        batch, channels, height, width = shapes[node.input[0]]
        if not all((batch, channels, height, width)):
            raise ValueError(f"DepthToSpace {node.name}: input shape unknown, cannot expand")
        stem = node.name or node.output[0]
        first = numpy_helper.from_array(np.array(
            [batch, block, block, channels // block**2, height, width], np.int64),
            f"{stem}__d2s_shape1")
        second = numpy_helper.from_array(np.array(
            [batch, channels // block**2, height * block, width * block], np.int64),
            f"{stem}__d2s_shape2")
        graph.initializer.extend([first, second])
        rewritten += [
            onnx.helper.make_node("Reshape", [node.input[0], first.name],
                                  [f"{stem}__d2s_split"], name=f"{stem}__d2s_reshape1"),
            onnx.helper.make_node("Transpose", [f"{stem}__d2s_split"],
                                  [f"{stem}__d2s_moved"], perm=[0, 3, 4, 1, 5, 2],
                                  name=f"{stem}__d2s_transpose"),
            onnx.helper.make_node("Reshape", [f"{stem}__d2s_moved", second.name],
                                  list(node.output), name=f"{stem}__d2s_reshape2"),
        ]
    del graph.node[:]
    graph.node.extend(rewritten)
    del graph.value_info[:]
    onnx.checker.check_model(model)
    return model


def _with_first(array: np.ndarray, value: int) -> np.ndarray:
    edited = array.copy()
    edited[0] = value
    return edited


def _own_constant(graph: onnx.GraphProto, node: onnx.NodeProto, slot: int,
                  value: np.ndarray) -> str:
    """Add ``value`` as a new initializer used only by ``node`` (input ``slot``)."""
    name = f"{node.input[slot]}__{node.name or node.output[0]}__batch"
    graph.initializer.append(numpy_helper.from_array(value, name))
    return name


def _open_batch_slice(graph: onnx.GraphProto, node: onnx.NodeProto,
                      constants: Mapping[str, onnx.TensorProto]) -> None:
    """A Slice that takes [0:1] of axis 0 takes all of it instead."""
    names = list(node.input)
    if any(name not in constants for name in names[1:4] if name):
        return
    starts = numpy_helper.to_array(constants[names[1]])
    ends = numpy_helper.to_array(constants[names[2]])
    axes = (numpy_helper.to_array(constants[names[3]]) if len(names) > 3 and names[3]
            else np.arange(len(starts)))
    for position, axis in enumerate(axes.tolist()):
        if axis == 0 and starts[position] == 0 and ends[position] == 1:
            node.input[2] = _own_constant(graph, node, 2,
                                          _replace(ends, position, SLICE_END_MAX))


def _replace(array: np.ndarray, position: int, value: int) -> np.ndarray:
    edited = array.copy()
    edited[position] = value
    return edited


def select_outputs(model: onnx.ModelProto, keep: Mapping[str, str]) -> onnx.ModelProto:
    """A copy of ``model`` with only the outputs in ``keep`` (old name -> new name), renamed,
    and without the nodes that fed nothing else."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    present = [output.name for output in graph.output]
    missing = sorted(set(keep) - set(present))
    if missing:
        raise ValueError(f"the converted graph has no output(s) {missing}; it has {present}")
    kept = [output for output in graph.output if output.name in keep]
    del graph.output[:]
    graph.output.extend(kept)
    _prune(graph)
    for old, new in keep.items():
        _rename(graph, old, new)
    onnx.checker.check_model(model)
    return model


def _prune(graph: onnx.GraphProto) -> None:
    needed = {output.name for output in graph.output}
    live = []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            live.append(node)
            needed.update(name for name in node.input if name)
    live.reverse()
    del graph.node[:]
    graph.node.extend(live)
    used = [init for init in graph.initializer if init.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(used)


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    if old == new:
        return
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name == old:
                node.input[index] = new
        for index, name in enumerate(node.output):
            if name == old:
                node.output[index] = new
    for value in (*graph.input, *graph.output):
        if value.name == old:
            value.name = new


def rename_input(model: onnx.ModelProto, new: str) -> onnx.ModelProto:
    """Give the graph's single image input the name ``new`` (in place; returns ``model``)."""
    if len(model.graph.input) != 1:
        raise ValueError(f"expected one input, found {[i.name for i in model.graph.input]}")
    _rename(model.graph, model.graph.input[0].name, new)
    return model
