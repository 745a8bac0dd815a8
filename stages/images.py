"""Safe image preparation: open -> size check (header only) -> decode -> RGB -> resize -> encode.

Any bad file becomes an ImageError with a reason the pack stats count:
  unsafe_path        the path, symlinks resolved, lies outside the allowed image folders
  missing_image      the path does not exist
  not_a_file         a directory (or a FIFO, socket, ...) where an image should be
  unreadable_image   the file exists but cannot be opened (permissions)
  image_too_large    width x height above the decompression-bomb limit (read from the header)
  undecodable_image  empty, truncated, corrupt or not an image format Pillow knows
"""
from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from stages.config import MAX_IMAGE_SIZE, check_fields, knob
from stages.records import outside_roots

RESIZE_MODES = ("squash", "pad")
FORMATS = {"jpg": "JPEG", "png": "PNG"}
# Letterbox fill: mid-grey is 0 after SigLIP's (x - 0.5) / 0.5 normalisation.
PAD_COLOR = (128, 128, 128)
BACKGROUND = (255, 255, 255)  # alpha is composited onto white
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageError(Exception):
    def __init__(self, reason: str, detail: str):
        self.reason, self.detail = reason, detail
        super().__init__(reason, detail)

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


@dataclass(frozen=True)
class ImageSpec:
    """How pack prepares images; its fields are keys of the `pack` params group."""
    image_size: int = knob(384, "side of the square output image (at most 4096)", min=1, max=MAX_IMAGE_SIZE)
    resize: str = knob("squash", "squash (SigLIP) | pad (letterbox)", choices=RESIZE_MODES)
    image_format: str = knob("jpg", "jpg | png (lossless, slower and larger)", choices=tuple(FORMATS))
    jpeg_quality: int = knob(95, "JPEG quality", min=1, max=100)
    max_image_pixels: int = knob(100_000_000, "decompression-bomb limit (width x height), checked before decoding",
                                 min=1)

    def __post_init__(self):
        check_fields(self, "pack")


@dataclass(frozen=True)
class PreparedImage:
    data: bytes          # the encoded image, as written to the shard
    digest: bytes        # first 8 bytes of sha256(data): same source pixels -> same digest
    source_mode: str     # Pillow mode of the file before conversion (RGB, RGBA, CMYK, P, I;16, ...)


def load_image(path: Path, spec: ImageSpec, image_dirs: list[Path] | None = None) -> tuple[Image.Image, str]:
    """Decode `path` into (RGB image with EXIF orientation applied, the file's Pillow mode).

    Raises ImageError. With `image_dirs`, a path that resolves (symlinks, `..`) outside all of them
    is refused before it is opened. JPEGs are decoded at the smallest DCT scale that keeps both
    sides >= the target size (Pillow's draft mode, as Image.thumbnail does), which halves decode time.
    """
    problem = image_dirs is not None and outside_roots(path, image_dirs)
    if problem:
        raise ImageError("unsafe_path", f"{problem} (add its folder to releases.image_dirs if you trust it)")
    if not path.exists():
        raise ImageError("missing_image", "file does not exist")
    if not path.is_file():
        raise ImageError("not_a_file", "a directory or special file, not a regular file")
    try:
        f = open(path, "rb")
    except OSError as e:
        raise ImageError("unreadable_image", e.strerror or type(e).__name__) from None
    with f:
        return _decode(f, spec)


def _decode(f, spec: ImageSpec) -> tuple[Image.Image, str]:
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own limit; ours (spec.max_image_pixels) is checked just below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(f)  # reads the header only
    except Image.DecompressionBombError as e:
        raise ImageError("image_too_large", str(e)) from None
    except UnidentifiedImageError:
        raise ImageError("undecodable_image", "not a recognised image format (or an empty file)") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError("undecodable_image", f"{type(e).__name__}: {e}") from None
    width, height = im.size
    if width * height > spec.max_image_pixels:
        raise ImageError("image_too_large", f"{width}x{height} = {width * height} pixels > {spec.max_image_pixels}")
    if width == 0 or height == 0:
        raise ImageError("undecodable_image", f"empty image {width}x{height}")
    try:
        if im.format == "JPEG":
            im.draft("RGB", (spec.image_size, spec.image_size))
        im.load()  # first frame only for GIF/APNG/TIFF
        source_mode = im.mode
        ImageOps.exif_transpose(im, in_place=True)  # in place: no copy when there is nothing to turn
        return _to_rgb(im), source_mode
    except MemoryError:
        raise
    except Exception as e:  # Pillow raises many types on corrupt data (OSError, struct.error, ...)
        raise ImageError("undecodable_image", f"{type(e).__name__}: {e}") from None


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in SIXTEEN_BIT_MODES:  # scale 16-bit to 8-bit (a plain convert would clip to white)
        im = im.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        background = Image.new("RGB", im.size, BACKGROUND)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return im if im.mode == "RGB" else im.convert("RGB")


def resize(im: Image.Image, spec: ImageSpec) -> Image.Image:
    target = (spec.image_size, spec.image_size)
    if spec.resize == "pad":
        return ImageOps.pad(im, target, method=Image.Resampling.BICUBIC, color=PAD_COLOR)
    return im.resize(target, Image.Resampling.BICUBIC)


def encode(im: Image.Image, spec: ImageSpec) -> bytes:
    out = io.BytesIO()
    if spec.image_format == "jpg":
        im.save(out, "JPEG", quality=spec.jpeg_quality)
    else:
        im.save(out, "PNG")
    return out.getvalue()


def prepare_image(path: Path, spec: ImageSpec, image_dirs: list[Path] | None = None) -> PreparedImage:
    """The whole per-image job: safe decode, resize, encode. Raises ImageError."""
    im, source_mode = load_image(path, spec, image_dirs)
    data = encode(resize(im, spec), spec)
    return PreparedImage(data=data, digest=hashlib.sha256(data).digest()[:8], source_mode=source_mode)
