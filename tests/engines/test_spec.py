import numpy as np
import pytest

from engines.spec import Signature, SignatureError, TensorSpec

TEXT = Signature(
    inputs=(TensorSpec(name="input_ids", dtype="int64", shape=("batch", "sequence")),
            TensorSpec(name="attention_mask", dtype="int64", shape=("batch", "sequence"))),
    outputs=(TensorSpec(name="embedding", dtype="float32", shape=("batch", 8)),),
)


def test_dynamic_axes_are_named() -> None:
    assert TEXT.inputs[0].dynamic_axes == {0: "batch", 1: "sequence"}
    assert TEXT.outputs[0].dynamic_axes == {0: "batch"}
    assert TEXT.inputs[0].concrete(batch=2, sequence=5) == (2, 5)


def test_valid_feeds_pass() -> None:
    ids = np.zeros((3, 7), np.int64)
    TEXT.check_feeds({"input_ids": ids, "attention_mask": ids})


@pytest.mark.parametrize(
    ("feeds", "message"),
    [
        ({"input_ids": np.zeros((1, 4), np.int64)}, "missing ['attention_mask']"),
        ({"input_ids": np.zeros((1, 4), np.int32), "attention_mask": np.zeros((1, 4), np.int64)},
         "'input_ids': dtype int32 given, int64 expected"),
        ({"input_ids": np.zeros((4,), np.int64), "attention_mask": np.zeros((1, 4), np.int64)},
         "'input_ids': 1 dims given"),
        ({"input_ids": np.zeros((2, 4), np.int64), "attention_mask": np.zeros((3, 4), np.int64)},
         "disagree on the batch axis"),
    ],
)
def test_bad_feeds_name_the_input(feeds: dict, message: str) -> None:
    with pytest.raises(SignatureError, match=message.replace("[", r"\[").replace("]", r"\]")):
        TEXT.check_feeds(feeds)


def test_fixed_axis_mismatch() -> None:
    spec = TensorSpec(name="pixels", dtype="float32", shape=("batch", 3, 224, 224))
    with pytest.raises(SignatureError, match="axis 2 is 100, must be 224"):
        spec.check(np.zeros((1, 3, 100, 224), np.float32))


def test_json_round_trip() -> None:
    assert Signature.model_validate_json(TEXT.model_dump_json(), strict=True) == TEXT
