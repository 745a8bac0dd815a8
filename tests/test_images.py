"""Safe decoding of awkward and hostile image files. The writers here also build test_pack's corpus."""
import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from stages.images import ImageError, ImageSpec, load_image, prepare_image

RED, BLUE, WHITE, GREY = (255, 0, 0), (0, 0, 255), (255, 255, 255), (128, 128, 128)
SPEC = ImageSpec(image_size=32)


# ------------------------------------------------------------------ writers of awkward files


def write_rgb(path: Path, color=RED, size=(48, 40), fmt="JPEG") -> Path:
    Image.new("RGB", size, color).save(path, fmt)
    return path


def write_half_transparent_png(path: Path) -> Path:
    """Left half fully transparent (black underneath), right half opaque red."""
    im = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    im.paste((255, 0, 0, 255), (20, 0, 40, 40))
    im.save(path, "PNG")
    return path


def write_palette_png_with_transparency(path: Path) -> Path:
    im = Image.new("P", (40, 40), 0)
    im.putpalette([0, 0, 0, 0, 0, 255])  # index 0 black (transparent), index 1 blue
    im.paste(1, (20, 0, 40, 40))
    im.save(path, "PNG", transparency=0)
    return path


def write_cmyk_jpeg(path: Path) -> Path:
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(path, "JPEG", quality=95)  # red in CMYK
    return path


def write_16bit_png(path: Path) -> Path:
    Image.new("I;16", (40, 40), 32768).save(path, "PNG")  # mid-grey; a naive convert clips it to white
    return path


def write_animated_gif(path: Path) -> Path:
    frames = [Image.new("RGB", (40, 40), RED), Image.new("RGB", (40, 40), BLUE)]
    frames[0].save(path, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def write_exif_rotated_jpeg(path: Path) -> Path:
    """Stored as left half red / right half blue; EXIF orientation 6 = display rotated 90° clockwise,
    so the correctly oriented picture is red on top and blue at the bottom."""
    im = Image.new("RGB", (64, 32), BLUE)
    im.paste(RED, (0, 0, 32, 32))
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(path, "JPEG", quality=95, exif=exif)
    return path


def write_truncated_jpeg(path: Path) -> Path:
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 60).convert("RGB").save(buf, "JPEG", quality=90)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_huge_png(path: Path, side: int = 20000) -> Path:
    """A valid 1-bit side x side PNG of one colour, ~50 kB on disk (400 megapixels decoded)."""
    compressor, row = zlib.compressobj(9), b"\x00" * (1 + (side + 7) // 8)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data)
                     + _png_chunk(b"IEND", b""))
    return path


def pixel(data: bytes, xy) -> tuple:
    return Image.open(io.BytesIO(data)).convert("RGB").getpixel(xy)


def close_to(actual, expected, tol=12) -> bool:
    return all(abs(a - e) <= tol for a, e in zip(actual, expected))


# ------------------------------------------------------------------ tests


def test_plain_jpeg_is_squashed_to_the_target_size(tmp_path):
    out = prepare_image(write_rgb(tmp_path / "a.jpg", size=(80, 20)), ImageSpec(image_size=384))
    im = Image.open(io.BytesIO(out.data))
    assert (im.format, im.size, im.mode) == ("JPEG", (384, 384), "RGB")
    assert close_to(im.getpixel((10, 10)), RED) and out.source_mode == "RGB"


def test_png_output_and_letterbox_padding(tmp_path):
    spec = ImageSpec(image_size=32, resize="pad", image_format="png")
    out = prepare_image(write_rgb(tmp_path / "wide.png", size=(64, 32), fmt="PNG"), spec)
    im = Image.open(io.BytesIO(out.data))
    assert (im.format, im.size) == ("PNG", (32, 32))
    assert im.getpixel((16, 1)) == GREY and im.getpixel((16, 30)) == GREY  # letterbox bars
    assert im.getpixel((16, 16)) == RED


def test_alpha_is_composited_on_white(tmp_path):
    out = prepare_image(write_half_transparent_png(tmp_path / "a.png"), SPEC)
    assert close_to(pixel(out.data, (3, 16)), WHITE) and close_to(pixel(out.data, (28, 16)), RED)
    out = prepare_image(write_palette_png_with_transparency(tmp_path / "p.png"), SPEC)
    assert close_to(pixel(out.data, (3, 16)), WHITE) and close_to(pixel(out.data, (28, 16)), BLUE)
    assert out.source_mode == "P"


def test_cmyk_16bit_and_gif_become_the_right_rgb(tmp_path):
    cmyk = prepare_image(write_cmyk_jpeg(tmp_path / "c.jpg"), SPEC)
    assert cmyk.source_mode == "CMYK" and close_to(pixel(cmyk.data, (16, 16)), RED, tol=20)
    sixteen = prepare_image(write_16bit_png(tmp_path / "g.png"), SPEC)
    assert sixteen.source_mode.startswith("I") and close_to(pixel(sixteen.data, (16, 16)), GREY, tol=3)
    gif = prepare_image(write_animated_gif(tmp_path / "a.gif"), SPEC)
    assert close_to(pixel(gif.data, (16, 16)), RED)  # the first frame


def test_exif_orientation_is_applied(tmp_path):
    out = prepare_image(write_exif_rotated_jpeg(tmp_path / "r.jpg"), SPEC)
    assert close_to(pixel(out.data, (16, 4)), RED, tol=40) and close_to(pixel(out.data, (16, 28)), BLUE, tol=40)


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def make_dir(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize("make, reason", [
    (lambda p: p / "missing.jpg", "missing_image"),
    (lambda p: make_dir(p / "dir.jpg"), "not_a_file"),
    (lambda p: write_bytes(p / "empty.jpg", b""), "undecodable_image"),
    (lambda p: write_bytes(p / "text.jpg", b"not an image"), "undecodable_image"),
    (lambda p: write_truncated_jpeg(p / "cut.jpg"), "undecodable_image"),
])
def test_bad_files_raise_a_reasoned_error(tmp_path, make, reason):
    with pytest.raises(ImageError) as err:
        prepare_image(make(tmp_path), SPEC)
    assert err.value.reason == reason
    assert str(tmp_path) not in err.value.detail  # details stay free of machine paths


def test_decompression_bomb_is_rejected_from_the_header(tmp_path, monkeypatch):
    huge = write_huge_png(tmp_path / "huge.png")
    assert huge.stat().st_size < 200_000

    def no_decoding(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageError) as err:
        load_image(huge, ImageSpec())
    assert err.value.reason == "image_too_large"
    # our own limit (below Pillow's) is read from the header as well
    with pytest.raises(ImageError) as err:
        load_image(write_rgb(tmp_path / "big.png", size=(50, 40), fmt="PNG"), ImageSpec(max_image_pixels=1999))
    assert err.value.reason == "image_too_large" and "50x40" in err.value.detail


def test_encoding_is_deterministic(tmp_path):
    path = write_exif_rotated_jpeg(tmp_path / "r.jpg")
    first, second = prepare_image(path, ImageSpec()), prepare_image(path, ImageSpec())
    assert first.data == second.data and first.digest == second.digest and len(first.digest) == 8
