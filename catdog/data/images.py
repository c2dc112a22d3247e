"""Opening images safely and turning them into model input.

`load_model_input` is THE conversion from an image file to the model's input: preprocessing
and `catdog predict` both call it, so a photo is seen the same way in training and serving.

Resize policy: the default is `stretch` (resize both sides to the square, ignoring aspect
ratio). It keeps the whole animal in view (a center `crop` can cut off a head or tail on
wide photos) and adds no padding bars whose width would tell the model the photo's aspect
ratio; it is also what `keras.utils.image_dataset_from_directory` does by default. `pad`
(letterbox on mid-gray) and `crop` (center square) are available in params.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, ImageStat

RESIZE_POLICIES = ("stretch", "pad", "crop")
_SIXTEEN_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}

# We check dimensions ourselves, before decoding (see `open_image`); Pillow's own limit
# would raise for some and only warn for others.
Image.MAX_IMAGE_PIXELS = None
warnings.simplefilter("ignore", Image.DecompressionBombWarning)


class ImageError(Exception):
    """An image that cannot be used; the message says why."""


@dataclass(frozen=True)
class ImageFacts:
    format: str | None
    mode: str | None
    width: int | None
    height: int | None
    error: str | None = None
    brightness: float | None = None  # mean and standard deviation of the grayscale pixels, 0-255
    contrast: float | None = None


def open_image(source: Path | str | bytes, *, max_pixels: int, min_side: int = 1) -> Image.Image:
    """Open an image lazily and reject bad dimensions from the header alone (no decoding)."""
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except FileNotFoundError:
        raise ImageError("file not found") from None
    except Image.UnidentifiedImageError:
        raise ImageError("not an image (unknown or unsupported format)") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageError(f"unreadable header: {error}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(f"too large: {width}x{height} is over {max_pixels:,} pixels (decompression bomb?)")
    if min(width, height) < min_side:
        raise ImageError(f"too small: {width}x{height}, the smallest side must be at least {min_side}")
    return image


def decode(image: Image.Image) -> Image.Image:
    """Fully decode (first frame of animations) and apply the EXIF orientation."""
    try:
        image.load()
        return ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as error:
        raise ImageError(f"cannot decode {image.format or 'image'}: {error}") from None


def inspect(path: Path, *, max_pixels: int, min_side: int) -> ImageFacts:
    """Facts about one file for validation, decoding it fully; errors become `error`."""
    image = None
    try:
        image = open_image(path, max_pixels=max_pixels, min_side=1)
        facts = ImageFacts(image.format, image.mode, image.width, image.height)
        gray = to_grayscale(decode(image))
        if min(image.size) < min_side:
            return replace(
                facts, error=f"too small: {image.width}x{image.height}, the smallest side must be at least {min_side}"
            )
        return with_tone(facts, gray)
    except ImageError as error:
        if image is None:
            return ImageFacts(None, None, None, None, str(error))
        return ImageFacts(image.format, image.mode, image.width, image.height, str(error))
    finally:
        if image is not None:
            image.close()


def with_tone(facts: ImageFacts, gray: Image.Image) -> ImageFacts:
    """The facts with brightness and contrast: mean and standard deviation of the grayscale pixels."""
    stat = ImageStat.Stat(gray)
    return replace(facts, brightness=round(stat.mean[0], 2), contrast=round(stat.stddev[0], 2))


def to_grayscale(image: Image.Image) -> Image.Image:
    """8-bit grayscale of any Pillow mode: alpha is composited on white, 16-bit is scaled."""
    if image.mode == "L":
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if values.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.clip(values * (255.0 / top) + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("L")
    if image.mode not in ("RGB", "1", "P"):
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV ...
    return image.convert("L")


def to_square(image: Image.Image, size: int, resize: str = "stretch") -> Image.Image:
    if resize not in RESIZE_POLICIES:
        raise ValueError(f"resize must be one of {RESIZE_POLICIES}, got {resize!r}")
    width, height = image.size
    if resize == "crop":
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    elif resize == "pad":
        side = max(width, height)
        canvas = Image.new("L", (side, side), 128)
        canvas.paste(image, ((side - width) // 2, (side - height) // 2))
        image = canvas
    if image.size == (size, size):
        return image
    return image.resize((size, size), Image.Resampling.BILINEAR)


def load_model_input(source: Path | str | bytes, size: int, resize: str = "stretch", *, max_pixels: int) -> np.ndarray:
    """Any image file -> (size, size) uint8 grayscale array, 0-255: what the model takes. Larger than
    `max_pixels` (validate.max_pixels, for every caller) is refused before it is decoded."""
    return load_model_input_and_facts(source, size, resize, max_pixels=max_pixels, facts=False)[0]


def load_model_input_and_facts(
    source: Path | str | bytes, size: int, resize: str = "stretch", *, max_pixels: int, facts: bool = True
) -> tuple[np.ndarray, ImageFacts | None]:
    """The model input, and (with `facts`) the image's facts from the same decode: what serving logs.
    Brightness and contrast are the decoded grayscale's, as validate's; a JPEG whose short side is
    512 px or more is decoded at a reduced scale, which smooths its contrast a little."""
    image = open_image(source, max_pixels=max_pixels)
    try:
        header = ImageFacts(image.format, image.mode, image.width, image.height)
        if image.format == "JPEG":
            # libjpeg decodes at a reduced scale that keeps both sides >= size: ~2x faster.
            image.draft("L", (size, size))
        gray = to_grayscale(decode(image))
        pixels = np.asarray(to_square(gray, size, resize), dtype=np.uint8)
        return pixels, with_tone(header, gray) if facts else None
    finally:
        image.close()
