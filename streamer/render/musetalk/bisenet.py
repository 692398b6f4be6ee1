"""Face parsing (BiSeNet, 19 CelebAMask classes) for MuseTalk's blend masks.

The network matches the official `face-parse-bisent/79999_iter.pth` state dict (a ResNet-18
context path, attention refinement, feature fusion; only the main head is evaluated). The
mask rule is MuseTalk v1.5's "jaw" mode: the skin dilated downwards, narrowed at the cheeks,
without the nose, plus mouth and lips; then kept inside the face box, below the middle of the
blend box, with gaussian-blurred edges.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional

from streamer.avatar.masks import BLUR_RATIO, UPPER_BOUNDARY_RATIO, padded_crop
from streamer.errors import ModelError
from streamer.render.musetalk.layout import load_strict, read_state_dict
from streamer.units import CROP_SIZE

CLASSES = 19
SKIN, NOSE, MOUTH, UPPER_LIP, LOWER_LIP = 1, 10, 11, 12, 13
PARSE_SIZE = 512
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CHEEK_WIDTH = 90
"""Every official v1.5 entry point builds FaceParsing(left_cheek_width=90, right_cheek_width=90)."""


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if cin != cout or stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(functional.relu(self.bn1(self.conv1(x)))))
        return functional.relu(y + (x if self.downsample is None else self.downsample(x)))


def _layer(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1))


class ResNet18(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = _layer(64, 64, 1)
        self.layer2 = _layer(64, 128, 2)
        self.layer3 = _layer(128, 256, 2)
        self.layer4 = _layer(256, 512, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = functional.max_pool2d(functional.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        s8 = self.layer2(self.layer1(x))
        s16 = self.layer3(s8)
        return s8, s16, self.layer4(s16)


class AttentionRefinement(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        out: torch.Tensor = feat * torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean((2, 3), keepdim=True))))
        return out


class ContextPath(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.resnet = ResNet18()
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, kernel=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s8, s16, s32 = self.resnet(x)
        context = self.conv_avg(s32.mean((2, 3), keepdim=True))
        up32 = functional.interpolate(self.arm32(s32) + context, size=s16.shape[2:], mode="nearest")
        up32 = self.conv_head32(up32)
        up16 = functional.interpolate(self.arm16(s16) + up32, size=s8.shape[2:], mode="nearest")
        return s8, self.conv_head16(up16)


class FeatureFusion(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, kernel=1)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        atten = torch.sigmoid(self.conv2(functional.relu(self.conv1(feat.mean((2, 3), keepdim=True)))))
        out: torch.Tensor = feat * atten + feat
        return out


class Head(nn.Module):
    def __init__(self, cin: int, mid: int, classes: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, mid)
        self.conv_out = nn.Conv2d(mid, classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv_out(self.conv(x))
        return out


class BiSeNet(nn.Module):
    def __init__(self, classes: int = CLASSES) -> None:
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = Head(256, 256, classes)
        # Auxiliary training heads: in the checkpoint, never evaluated here.
        self.conv_out16 = Head(128, 64, classes)
        self.conv_out32 = Head(128, 64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, classes, H, W] logits of [B, 3, H, W] ImageNet-normalised RGB."""
        spatial, context = self.cp(x)
        logits = self.conv_out(self.ffm(spatial, context))
        return functional.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=True)


def load_bisenet(path: Path) -> BiSeNet:
    net = BiSeNet()
    state = read_state_dict(path)
    # Checkpoints from before PyTorch 0.4.1 lack the BatchNorm step counters; they are unused.
    for key, value in net.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state.setdefault(key, torch.zeros_like(value))
    load_strict(net, state, path)
    return net.eval().requires_grad_(False)


def _cone_kernel() -> np.ndarray:
    """33×33: a widening cone (rows 10–20, widths 1…21) over a 21-wide stem (rows 21–32)."""
    cone, stem = 21, 12
    size, centre = cone + stem, (cone + stem) // 2
    kernel = np.zeros((size, size), np.uint8)
    for row in range(cone // 2, size):
        half = min(row - cone // 2, cone // 2)
        kernel[row, centre - half : centre + half + 1] = 1
    return kernel


_CONE = _cone_kernel()
_CHEEK = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (35, 3))
_CHEEKS = np.full((PARSE_SIZE, PARSE_SIZE), 255, np.uint8)
_CHEEKS[:, PARSE_SIZE // 2 - CHEEK_WIDTH + 1 : PARSE_SIZE // 2 + CHEEK_WIDTH] = 0


def jaw_region(labels: np.ndarray) -> np.ndarray:
    """[512, 512] uint8 (0/255) "jaw" region of a [512, 512] label map."""
    skin = np.where(labels == SKIN, 255, 0).astype(np.uint8)
    dilated: np.ndarray = cv2.dilate(skin, _CONE, iterations=1)
    narrowed: np.ndarray = cv2.erode(dilated, _CHEEK, iterations=2)
    region = (narrowed & _CHEEKS) | (dilated & ~_CHEEKS)
    keep = ((region == 255) & (labels != NOSE)) | np.isin(labels, (MOUTH, UPPER_LIP, LOWER_LIP))
    return np.where(keep, 255, 0).astype(np.uint8)


def blend_mask(region: np.ndarray, face_box: np.ndarray, blend_box: np.ndarray) -> np.ndarray:
    """[256, 256] uint8 blend weight over `blend_box` (the padded square) from its 512×512 jaw
    region: kept inside the face box, below the middle of the square, blurred by its width."""
    bx1, by1, bx2, by2 = (int(v) for v in blend_box)
    width, height = bx2 - bx1, by2 - by1
    full = cv2.resize(region, (width, height), interpolation=cv2.INTER_CUBIC)
    mask = np.zeros_like(full)
    fx1, fy1 = max(0, int(face_box[0]) - bx1), max(0, int(face_box[1]) - by1)
    fx2, fy2 = min(width, int(face_box[2]) - bx1), min(height, int(face_box[3]) - by1)
    top = max(fy1, int(height * UPPER_BOUNDARY_RATIO))
    mask[top:fy2, fx1:fx2] = full[top:fy2, fx1:fx2]
    k = int(BLUR_RATIO * width // 2 * 2) + 1
    mask = cv2.GaussianBlur(mask, (k, k), 0)
    return cv2.resize(mask, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA)


class FaceParser:
    """BiSeNet on a device; `masks` gives the blend masks of a template's frames."""

    def __init__(self, path: Path, device: torch.device) -> None:
        self.device = device
        self.net = load_bisenet(path).to(device)
        self.mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(STD, device=device).view(1, 3, 1, 1)

    @torch.inference_mode()
    def labels(self, crops: np.ndarray) -> np.ndarray:
        """[B, 512, 512] uint8 class of each pixel of [B, 512, 512, 3] BGR crops."""
        x = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device)
        x = (x.flip(-1).permute(0, 3, 1, 2).float() / 255.0 - self.mean) / self.std
        out: np.ndarray = self.net(x.contiguous()).argmax(1).to(torch.uint8).cpu().numpy()
        return out

    def masks(self, frames: np.ndarray, face_boxes: np.ndarray, blend_boxes: np.ndarray, batch: int = 8) -> np.ndarray:
        """[N, 256, 256] uint8 blend masks, one per frame."""
        out = np.empty((len(frames), CROP_SIZE, CROP_SIZE), np.uint8)
        for start in range(0, len(frames), batch):
            index = range(start, min(len(frames), start + batch))
            crops = []
            for i in index:
                x1, y1, x2, y2 = (int(v) for v in blend_boxes[i])
                if x2 - x1 < 2 or y2 - y1 < 2:
                    raise ModelError(f"empty blend box {tuple(blend_boxes[i])} of frame {i}")
                crops.append(
                    cv2.resize(
                        padded_crop(frames[i], blend_boxes[i]), (PARSE_SIZE, PARSE_SIZE), interpolation=cv2.INTER_LINEAR
                    )
                )
            for i, labels in zip(index, self.labels(np.stack(crops)), strict=True):
                out[i] = blend_mask(jaw_region(labels), face_boxes[i], blend_boxes[i])
        return out
