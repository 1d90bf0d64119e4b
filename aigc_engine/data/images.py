"""The reader of image folders: PNG/JPEG files, one sub-folder per class (or none)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..errors import InputError
from .dataset import Dataset

__all__ = ["read_folder", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()


def _images_below(folder: Path) -> list[Path]:
    found = []
    for p in folder.rglob("*"):
        if not any(part.startswith(".") for part in p.relative_to(folder).parts) and _is_image_file(p):
            found.append(p)
    return sorted(found)


def read_folder(path: Path, size: int | None = None, channels: Literal["auto", 1, 3] = "auto") -> Dataset:
    """A folder of PNG/JPEG images: one sub-folder per class, or the images themselves.

    With class sub-folders (the ImageFolder convention) class ids go by sorted folder name, the
    names kept in ``class_names``, and images are found at any depth below each class folder;
    images directly in the folder are unlabelled. ``size=None`` requires every image to share
    one size; ``size=S`` scales the shorter side to S and centre-crops S x S. ``channels="auto"``
    gives 1 channel when every image is greyscale, else 3 (palette and alpha images become RGB,
    alpha dropped); 1 or 3 forces it. Pixels 0..255 map to [-1, 1] by ``x / 127.5 - 1``."""
    if size is not None and size <= 0:
        raise InputError(f"dataset option size must be > 0, got {size}")
    class_names, files, labels = _class_files(path)
    headers = [_read_image(f, lambda im: (im.mode, im.size)) for f in files]  # without decoding pixels
    if size is None:
        w, h = headers[0][1]
        for f, (_, other) in zip(files, headers):
            if other != (w, h):
                raise InputError(f"images differ in size: {str(files[0])} is {w}x{h}, {str(f)} is "
                                 f"{other[0]}x{other[1]}; set dataset.size=N to resize them")
    n_channels = channels
    if channels == "auto":
        n_channels = 1 if all(mode in _GREY_MODES for mode, _ in headers) else 3
    height, width = (size, size) if size is not None else headers[0][1][::-1]
    out = np.empty((len(files), n_channels, height, width), dtype=np.uint8)
    for i, f in enumerate(files):
        out[i] = _read_image(f, lambda im: _pixels(im, n_channels, size), decode=True)
    x = torch.from_numpy(out).float().div_(127.5).sub_(1.0).clamp_(-1.0, 1.0)
    y = torch.from_numpy(labels) if labels is not None else None
    options = {"size": size, "channels": channels}
    return Dataset(x, y, len(class_names) if class_names else 0, path.resolve().name, options, class_names)


def _class_files(root: Path) -> tuple[list[str] | None, list[Path], np.ndarray | None]:
    """``(class_names, files, labels)`` of an image folder (names and labels None when unlabelled)."""
    label = str(root)
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    top = [p for p in entries if _is_image_file(p)]
    folders = [p for p in entries if p.is_dir()]
    per_class = {d.name: _images_below(d) for d in folders}
    if any(per_class.values()):
        if top:
            raise InputError(f"image folder {label} mixes images ({top[0].name}) with class sub-folders: "
                             f"put every image in a class folder, or none")
        empty = [k for k, files in per_class.items() if not files]
        if empty:
            raise InputError(f"class folder {str(root / empty[0])} has no PNG/JPEG images")
        class_names = sorted(per_class)
        files = [f for k in class_names for f in per_class[k]]
        labels = np.concatenate([np.full(len(per_class[k]), i, dtype=np.int64)
                                 for i, k in enumerate(class_names)])
        return class_names, files, labels
    if top:
        return None, top, None
    raise InputError(f"image folder {label} holds no PNG/JPEG images (expected one sub-folder of "
                     f"images per class, or the images themselves)")


def _read_image(path: Path, read, decode: bool = False):
    """``read(image)`` of the opened file; a file Pillow cannot read is one InputError naming it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if decode:
                im.load()  # a truncated or corrupt file fails here
            return read(im)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"cannot read image {str(path)}: {text}") from None


def _pixels(im, channels: int, size: int | None) -> np.ndarray:
    """One image as ``C x H x W`` uint8: converted to L or RGB, then resized and centre-cropped."""
    from PIL import Image

    if im.mode.startswith("I") or im.mode == "F":  # 16-bit (or 32-bit) greyscale: keep the high byte
        raw = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if raw.max() > 255 or im.mode.startswith("I;16") else 255.0
        im = Image.fromarray(np.clip(np.round(raw * (255.0 / peak)), 0, 255).astype(np.uint8), mode="L")
    im = im.convert("L" if channels == 1 else "RGB")
    if size is not None and im.size != (size, size):
        w, h = im.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        im = im.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
    arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)

