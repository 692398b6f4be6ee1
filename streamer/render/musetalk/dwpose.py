"""DWPose (RTMPose-l wholebody 384×288): a CSPNeXt backbone and a SimCC head with a gated
attention unit, matching the official `dwpose/dw-ll_ucoco_384.pth` state dict.

Written from the published architecture (mmpose's CSPNeXt P5 arch, widen 1.0 / deepen 1.0,
channel attention, SyncBN (eps 1e-5; plain BatchNorm at inference) + SiLU; RTMCCHead with a 7×7 final conv,
ScaleNorm + linear to 256, one self-attention GAU with s = 128, SimCC split ratio 2). Only inference is implemented.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional

from streamer.errors import ModelError
from streamer.render.musetalk.layout import load_strict, read_state_dict

log = logging.getLogger(__name__)

KEYPOINTS = 133
INPUT_W, INPUT_H = 288, 384
SPLIT_RATIO = 2.0
STAGES = (
    (64, 128, 3, True, False),
    (128, 256, 6, True, False),
    (256, 512, 6, True, False),
    (512, 1024, 3, False, True),
)
"""CSPNeXt P5: (in, out, blocks, identity shortcut in blocks, SPP) per stage."""


@dataclass(frozen=True)
class DWPoseConfig:
    widen: float = 1.0
    deepen: float = 1.0
    hidden: int = 256
    """The head's token width (GAU in/out dims)."""
    s: int = 128
    """The GAU's shared query/key width."""
    expansion: int = 2


class ConvModule(nn.Module):
    """conv (no bias) → BatchNorm → SiLU, named as mmcv names them. The config's `SyncBN` has
    the default eps 1e-5 (not CSPNeXt's own default of 1e-3)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional.silu(self.bn(self.conv(x)))


class DepthwiseSeparable(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__()
        self.depthwise_conv = ConvModule(cin, cin, kernel, groups=cin)
        self.pointwise_conv = ConvModule(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.pointwise_conv(self.depthwise_conv(x))
        return out


class CSPNeXtBlock(nn.Module):
    def __init__(self, channels: int, identity: bool) -> None:
        super().__init__()
        self.conv1 = ConvModule(channels, channels, 3)
        self.conv2 = DepthwiseSeparable(channels, channels, 5)
        self.identity = identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        result: torch.Tensor = out + x if self.identity else out
        return result


class ChannelAttention(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * functional.hardsigmoid(self.fc(x.mean((2, 3), keepdim=True)))


class CSPLayer(nn.Module):
    def __init__(self, cin: int, cout: int, blocks: int, identity: bool) -> None:
        super().__init__()
        mid = cout // 2
        self.main_conv = ConvModule(cin, mid, 1)
        self.short_conv = ConvModule(cin, mid, 1)
        self.final_conv = ConvModule(2 * mid, cout, 1)
        self.blocks = nn.Sequential(*(CSPNeXtBlock(mid, identity) for _ in range(blocks)))
        self.attention = ChannelAttention(2 * mid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        both = torch.cat([self.blocks(self.main_conv(x)), self.short_conv(x)], dim=1)
        out: torch.Tensor = self.final_conv(self.attention(both))
        return out


class SPPBottleneck(nn.Module):
    def __init__(self, channels: int, kernels: tuple[int, ...] = (5, 9, 13)) -> None:
        super().__init__()
        mid = channels // 2
        self.kernels = kernels
        self.conv1 = ConvModule(channels, mid, 1)
        self.conv2 = ConvModule(mid * (len(kernels) + 1), channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        pooled = [functional.max_pool2d(x, k, 1, k // 2) for k in self.kernels]
        out: torch.Tensor = self.conv2(torch.cat([x, *pooled], dim=1))
        return out


class CSPNeXt(nn.Module):
    def __init__(self, config: DWPoseConfig) -> None:
        super().__init__()
        w = config.widen
        first = int(STAGES[0][0] * w)
        self.stem = nn.Sequential(
            ConvModule(3, first // 2, 3, 2), ConvModule(first // 2, first // 2, 3), ConvModule(first // 2, first, 3)
        )
        for i, (cin, cout, blocks, identity, spp) in enumerate(STAGES, start=1):
            cin, cout = int(cin * w), int(cout * w)
            layers: list[nn.Module] = [ConvModule(cin, cout, 3, 2)]
            if spp:
                layers.append(SPPBottleneck(cout))
            layers.append(CSPLayer(cout, cout, max(round(blocks * config.deepen), 1), identity))
            self.add_module(f"stage{i}", nn.Sequential(*layers))
        self.out_channels = int(STAGES[-1][1] * w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The stride-32 feature map (the head uses only the last stage)."""
        x = self.stem(x)
        for i in range(1, len(STAGES) + 1):
            x = getattr(self, f"stage{i}")(x)
        return x


class ScaleNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.scale, self.eps = dim**-0.5, eps
        self.g = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True) * self.scale
        out: torch.Tensor = x / norm.clamp(min=self.eps) * self.g
        return out


class Scale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class GAU(nn.Module):
    """RTMCCBlock, self-attention, no relative bias, no rotary positions (the RTMPose config)."""

    def __init__(self, dim: int, s: int, expansion: int) -> None:
        super().__init__()
        self.e, self.s = dim * expansion, s
        self.ln = ScaleNorm(dim)
        self.uv = nn.Linear(dim, 2 * self.e + s, bias=False)
        self.gamma = nn.Parameter(torch.ones(2, s))
        self.beta = nn.Parameter(torch.zeros(2, s))
        self.o = nn.Linear(self.e, dim, bias=False)
        self.res_scale = Scale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v, base = torch.split(functional.silu(self.uv(self.ln(x))), [self.e, self.e, self.s], dim=2)
        q, k = torch.unbind(base.unsqueeze(2) * self.gamma + self.beta, dim=2)
        kernel = torch.square(functional.relu(torch.bmm(q, k.transpose(1, 2)) / math.sqrt(self.s)))
        out: torch.Tensor = self.res_scale(x) + self.o(u * torch.bmm(kernel, v))
        return out


class RTMCCHead(nn.Module):
    def __init__(self, cin: int, config: DWPoseConfig) -> None:
        super().__init__()
        tokens = (INPUT_W // 32) * (INPUT_H // 32)
        self.final_layer = nn.Conv2d(cin, KEYPOINTS, 7, padding=3)
        self.mlp = nn.Sequential(ScaleNorm(tokens), nn.Linear(tokens, config.hidden, bias=False))
        self.gau = GAU(config.hidden, config.s, config.expansion)
        self.cls_x = nn.Linear(config.hidden, int(INPUT_W * SPLIT_RATIO), bias=False)
        self.cls_y = nn.Linear(config.hidden, int(INPUT_H * SPLIT_RATIO), bias=False)

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.gau(self.mlp(self.final_layer(feats).flatten(2)))
        return self.cls_x(tokens), self.cls_y(tokens)


class DWPose(nn.Module):
    def __init__(self, config: DWPoseConfig = DWPoseConfig()) -> None:
        super().__init__()
        self.backbone = CSPNeXt(config)
        self.head = RTMCCHead(self.backbone.out_channels, config)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """SimCC logits [B, 133, 576] (x) and [B, 133, 768] (y) of [B, 3, 384, 288] inputs."""
        out: tuple[torch.Tensor, torch.Tensor] = self.head(self.backbone(x))
        return out


OFFICIAL = DWPoseConfig()


def config_of(state: dict[str, torch.Tensor]) -> DWPoseConfig:
    """The sizes a checkpoint was built with (the official file gives `OFFICIAL`; the tests'
    tiny weights share the structure with fewer channels). The strict load checks the rest."""
    try:
        blocks = len({k.split(".")[4] for k in state if k.startswith("backbone.stage2.1.blocks.")})
        hidden, expanded = state["head.gau.o.weight"].shape
        return DWPoseConfig(
            widen=state["backbone.stem.0.conv.weight"].shape[0] * 2 / STAGES[0][0],
            deepen=blocks / STAGES[1][2],
            hidden=int(hidden),
            s=int(state["head.gau.gamma"].shape[1]),
            expansion=int(expanded) // int(hidden),
        )
    except (KeyError, IndexError, ZeroDivisionError) as exc:
        raise ModelError(f"not an RTMPose wholebody state dict (no {exc})") from None


def load_dwpose(path: Path) -> DWPose:
    """The network of `path` (mmpose checkpoint or bare state dict), loaded strictly."""
    state = read_state_dict(path, nested=True)
    config = config_of(state)
    if config != OFFICIAL:
        log.warning("%s is not the official RTMPose-l size (%s)", path, config)
    net = DWPose(config)
    load_strict(net, state, path)
    return net.eval().requires_grad_(False)
