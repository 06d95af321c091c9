"""The benchmark's items, as `kvstore.eval.Item`s for the assembled model (`model.Reader`):

- **photo**: a sample photograph that scikit-image ships, as a 14 x 14 vision span;
- **video**: a clip of 4 frames panning across one of those photos (a slow camera move, each
  frame 14 x 14), held as LLaVA holds several images: consecutive image spans;
- **page**: a prose document (`documents.DOCUMENTS`) as a text-dense vision span;
- **text**: the same document as plain text in the user turn, followed by a photo (the vision
  span a policy reduces); its first two questions, about the text.

Each item is asked every one of its questions in one chat (ChatML, SmolLM2's template):

    <|im_start|>system\\n{SYSTEM}<|im_end|>\\n<|im_start|>user\\n{label}:\\n[196 placeholders]\\n{question}<|im_end|>\\n<|im_start|>assistant\\n

so every question about an item shares the prefix up to the end of its span, and the first
question is the one the snapshot is captured (and compressed) with.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..eval import Item
from .documents import DOCUMENTS, Document
from .model import IMAGE_SIZE, TOKENS, Reader

SYSTEM = "You are a helpful AI assistant."
#: Sample photographs scikit-image ships (skimage/data), with questions about them.
PHOTOS = (
    ("astronaut.png", ("Describe this picture in one sentence.", "What is the person in the picture wearing?")),
    ("chelsea.png", ("What animal is shown in the picture?", "Describe the colors in this picture.")),
    ("coffee.png", ("What is on the table in this picture?", "Is this picture taken indoors or outdoors?")),
    ("rocket.jpg", ("What is happening in this picture?", "What is the weather like in the picture?")),
    ("motorcycle_left.png", ("Describe this picture in one sentence.", "What vehicle can you see?")),
    ("hubble_deep_field.jpg", ("What does this picture show?", "How many objects can you count?")),
    ("coins.png", ("What objects are in this picture?", "What material are they made of?")),
    ("retina.jpg", ("What kind of image is this?", "What colors are in this image?")),
)
#: Clips: a photo panned across in FRAMES frames (`clip_pixels`), with questions about them.
VIDEOS = (
    ("rocket.jpg", ("What happens in this video?", "What is the weather like in the video?")),
    ("motorcycle_left.png", ("Describe this video in one sentence.", "What vehicle can you see?")),
    ("chelsea.png", ("What animal is shown in the video?", "Describe the colors in this video.")),
    ("coffee.png", ("What is on the table in this video?", "Is this video taken indoors or outdoors?")),
)
FRAMES = 4
KINDS = ("photo", "video", "page", "text")


@dataclass(frozen=True)
class Case:
    """One item before tokenization: `kind` (KINDS), `name`, and its questions."""

    kind: str
    name: str
    questions: tuple[str, ...]


def cases(photos: int = len(PHOTOS), videos: int = len(VIDEOS), pages: int = len(DOCUMENTS), texts: int = 4) -> list[Case]:
    """The benchmark's items: photos, clips, then documents as pages, then documents as text."""
    out = [Case("photo", name, q) for name, q in PHOTOS[:photos]]
    out += [Case("video", name, q) for name, q in VIDEOS[:videos]]
    out += [Case("page", d.name, d.questions) for d in DOCUMENTS[:pages]]
    out += [Case("text", d.name, d.questions[:2]) for d in DOCUMENTS[:texts]]
    return out


def photo_folder() -> str:
    """skimage/data of the installed scikit-image (found without importing it)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the photos come from the PyPI package scikit-image, which is not installed "
                          "(bash scripts/python-env.sh answers)")
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


def photo_pixels(path: str) -> torch.Tensor:
    """[1, 3, 448, 448]: the photo's centre square, resized, RGB in [-1, 1]."""
    from PIL import Image
    image = Image.open(path).convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return _square(image, left, top, side)


def clip_pixels(path: str, frames: int = FRAMES) -> torch.Tensor:
    """[frames, 3, 448, 448]: a square of 80% of the photo's shorter side moving from its top
    left to its bottom right in equal steps (a slow pan: neighbouring frames share most of what
    they show), each resized, RGB in [-1, 1]."""
    from PIL import Image
    image = Image.open(path).convert("RGB")
    return torch.cat([_square(image, *box) for box in pan_boxes(image.width, image.height, frames)])


def pan_boxes(width: int, height: int, frames: int = FRAMES) -> list[tuple[int, int, int]]:
    """(left, top, side) of each frame of `clip_pixels`: a square of 80% of the shorter side,
    from the top left corner to the bottom right one in equal steps."""
    side = int(0.8 * min(width, height))
    dx, dy = width - side, height - side
    return [(dx * f // (frames - 1), dy * f // (frames - 1), side) for f in range(frames)]


def _square(image: Any, left: int, top: int, side: int) -> torch.Tensor:
    from PIL import Image
    image = image.crop((left, top, left + side, top + side)).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC)
    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE, 3)
    return (data.permute(2, 0, 1).float() / 127.5 - 1.0)[None]


def page_ids(reader: Reader, text: str) -> list[int]:
    """A document's tokens, padded with line breaks to one span (ValueError when too long)."""
    ids = reader.tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) > TOKENS:
        raise ValueError(f"a page holds {TOKENS} tokens; this document has {len(ids)}")
    newline = reader.tokenizer("\n", add_special_tokens=False)["input_ids"]
    return ids + newline * (TOKENS - len(ids)) if len(newline) == 1 else ids + [ids[-1]] * (TOKENS - len(ids))


def _document(name: str) -> Document:
    return next(d for d in DOCUMENTS if d.name == name)


def build(reader: Reader, case: Case, photos: str | None = None) -> Item:
    """`case` as an Item: the first question captured, the others new questions on its prefix."""
    tok = reader.tokenizer

    def encode(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"]

    head = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n"
    media: bytes | str | list[bytes]
    if case.kind == "page":
        document = _document(case.name)
        pixels: Any = torch.tensor([page_ids(reader, document.text)], dtype=torch.float32)
        media, label = document.text.encode(), "Document"
    elif case.kind == "video":
        pixels, label = clip_pixels(os.path.join(photos or photo_folder(), case.name)), "Video"
        media = [frame.numpy().tobytes() for frame in pixels]  # each frame its own source
    else:
        photo = case.name if case.kind == "photo" else PHOTOS[DOCUMENTS.index(_document(case.name)) % len(PHOTOS)][0]
        media = os.path.join(photos or photo_folder(), photo)
        pixels, label = photo_pixels(media), "Picture"
        if case.kind == "text":
            head += f"Document:\n{_document(case.name).text}\n"
    frames = pixels.shape[0] if case.kind == "video" else 1
    prefix = encode(head + f"{label}:\n") + [reader.image_token_id] * (TOKENS * frames)

    def ask(question: str) -> dict[str, Any]:
        ids = prefix + encode(f"\n{question}<|im_end|>\n<|im_start|>assistant\n")
        return {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
                "pixel_values": pixels}

    asked = [ask(q) for q in case.questions]
    return Item(asked[0], media if isinstance(media, list) else [media], asked[1:])


def span_keys(reader: Reader, case: Case) -> list[torch.Tensor]:
    """Per layer, the keys `[kv heads, entries, head dim]` of `case`'s vision entries once its
    first question is prefilled: what the key-similarity scripts in scripts/ measure."""
    item = build(reader, case)
    ids = item.inputs["input_ids"][0]
    with torch.no_grad():
        cache = reader.model(**item.inputs, use_cache=True).past_key_values
    span = (ids == reader.image_token_id).nonzero().flatten()
    a, b = int(span[0]), int(span[-1]) + 1
    return [layer.keys[0][:, a:b].float() for layer in cache.layers]


__all__ = ["FRAMES", "KINDS", "PHOTOS", "VIDEOS", "Case", "build", "cases", "clip_pixels", "page_ids", "pan_boxes", "photo_folder",
           "photo_pixels", "span_keys"]
