"""The STiCA embedding model (or a video classifier) in pure PyTorch, from a stica_jax export.

Needs only torch, torchvision and safetensors (no JAX): copy this file into a PyTorch project.

    model = load_export("export_dir")             # eval mode, strict load of every file
    z_video = model.embed_video(video)            # video [B, 3, T, H, W], normalised
    z_audio = model.embed_audio(audio)            # audio [B, 1, F, T] log-mel

The backbones are torchvision's own modules: `r2plus1d_18` and `ResNet(BasicBlock, [1, 1, 1, 1])`
with a 1-channel `conv1`, both with `fc = nn.Identity()` (the export has no `fc` for them, so
they load with `strict=True`).
"""

import json
import pathlib

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet
from torchvision.models.video import r2plus1d_18
from torchvision.models.video.resnet import VideoResNet


def video_backbone(num_classes: int | None = None) -> VideoResNet:
    """torchvision r2plus1d_18; with `num_classes=None` its `fc` is an `nn.Identity`."""
    model = r2plus1d_18(weights=None, num_classes=num_classes or 400)
    if num_classes is None:
        model.fc = nn.Identity()
    return model


def audio_backbone() -> ResNet:
    """torchvision ResNet(BasicBlock, [1, 1, 1, 1]) with a 1-channel conv1 and no fc."""
    model = ResNet(BasicBlock, [1, 1, 1, 1])
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    model.fc = nn.Identity()
    return model


def video_map(backbone: VideoResNet, video: torch.Tensor) -> torch.Tensor:
    """video `[B, 3, T, H, W]` → res5 map `[B, 512, T', H', W']` (before avgpool and fc)."""
    x = backbone.stem(video)
    for layer in (backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4):
        x = layer(x)
    return x


def audio_map(backbone: ResNet, audio: torch.Tensor) -> torch.Tensor:
    """audio `[B, 1, F, T]` → map `[B, 512, F', T']` (before avgpool)."""
    x = backbone.maxpool(backbone.relu(backbone.bn1(backbone.conv1(audio))))
    for layer in (backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4):
        x = layer(x)
    return x


class AvgPool(nn.Module):
    """Mean over the token axis: `[N, T, D]` → `[N, D]`."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.mean(dim=1)


class TransformerPool(nn.Module):
    """Learned positions + post-norm encoder layers; output = mean of the output tokens."""

    def __init__(self, width: int, num_layers: int, num_heads: int, mlp_width: int, max_len: int):
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.zeros(max_len, width))
        self.layers = nn.ModuleList(
            [
                nn.TransformerEncoderLayer(
                    width,
                    num_heads,
                    mlp_width,
                    dropout=0.0,
                    activation="gelu",
                    layer_norm_eps=1e-5,
                    batch_first=True,
                    norm_first=False,
                )
                for _ in range(num_layers)
            ]
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens `[N, T, D]`, T up to max_len → `[N, D]`."""
        t = tokens.shape[1]
        if t > self.pos_embedding.shape[0]:
            raise ValueError(f"{t} tokens, more than {self.pos_embedding.shape[0]} positions")
        x = tokens + self.pos_embedding[:t]
        for layer in self.layers:
            x = layer(x)
        return x.mean(dim=1)


def temporal_pooling(arch: dict) -> nn.Module:
    """The pooling described by a manifest's `architecture.video_pooling`."""
    if arch["kind"] == "avg":
        return AvgPool()
    return TransformerPool(
        arch["width"], arch["num_layers"], arch["num_heads"], arch["mlp_width"], arch["max_len"]
    )


class ProjectionHead(nn.Module):
    """Dropout → Linear (no bias) → BN → ReLU → Dropout → Linear → L2 normalise."""

    def __init__(self, in_features: int, hidden: int, out_features: int, dropout: float):
        super().__init__()
        self.dropout1 = nn.Dropout(dropout)
        self.fc1 = nn.Linear(in_features, hidden, bias=False)
        self.bn = nn.BatchNorm1d(hidden, eps=1e-5, momentum=0.1)
        self.dropout2 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.fc1(self.dropout1(x))))
        return F.normalize(self.fc2(self.dropout2(x)), dim=-1, eps=1e-12)


class STiCAEmbedding(nn.Module):
    """Video: R(2+1)D-18 → spatial mean → temporal pooling → head; audio: ResNet-9 → mean → head."""

    def __init__(self, arch: dict):
        super().__init__()
        self.video_backbone = video_backbone()
        self.audio_backbone = audio_backbone()
        self.video_pooling = temporal_pooling(arch["video_pooling"])
        self.video_head = ProjectionHead(*_head_sizes(arch["video_head"]))
        self.audio_head = ProjectionHead(*_head_sizes(arch["audio_head"]))

    def video_map(self, video: torch.Tensor) -> torch.Tensor:
        """video `[B, 3, T, H, W]` → `[B, 512, T', H', W']`."""
        return video_map(self.video_backbone, video)

    def embed_video_map(self, fmap: torch.Tensor) -> torch.Tensor:
        """map `[N, C, t, h, w]` (e.g. a feature crop) → unit embeddings `[N, E]`."""
        tokens = fmap.mean(dim=(3, 4)).transpose(1, 2)  # [N, t, C]
        return self.video_head(self.video_pooling(tokens))

    def embed_video(self, video: torch.Tensor) -> torch.Tensor:
        """video `[B, 3, T, H, W]` → `[B, E]`."""
        return self.embed_video_map(self.video_map(video))

    def audio_map(self, audio: torch.Tensor) -> torch.Tensor:
        """audio `[B, 1, F, T]` → `[B, 512, F', T']`."""
        return audio_map(self.audio_backbone, audio)

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """audio `[B, 1, F, T]` → `[B, E]`."""
        return self.audio_head(self.audio_map(audio).mean(dim=(2, 3)))

    def forward(
        self, video: torch.Tensor, audio: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.embed_video(video), self.embed_audio(audio)


class VideoClassifier(nn.Module):
    """R(2+1)D-18 → spatial mean → temporal pooling → fc (logits)."""

    def __init__(self, arch: dict):
        super().__init__()
        self.video_backbone = video_backbone()
        self.video_pooling = temporal_pooling(arch["video_pooling"])
        fc = arch.get("fc") or {
            "in_features": 512,
            "out_features": arch["video_backbone"]["num_classes"],
        }
        self.fc = nn.Linear(fc["in_features"], fc["out_features"])

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video `[B, 3, T, H, W]` → logits `[B, num_classes]`."""
        tokens = video_map(self.video_backbone, video).mean(dim=(3, 4)).transpose(1, 2)
        return self.fc(self.video_pooling(tokens))


def _head_sizes(arch: dict) -> tuple[int, int, int, float]:
    return arch["in_features"], arch["hidden"], arch["out_features"], arch["dropout"]


def load_export(export_dir: str | pathlib.Path, device: str = "cpu") -> nn.Module:
    """`STiCAEmbedding` or `VideoClassifier` from an export directory, strict load, eval mode."""
    d = pathlib.Path(export_dir)
    manifest = json.loads((d / "manifest.json").read_text())
    arch = manifest["architecture"]
    model = STiCAEmbedding(arch) if arch["model_type"] == "stica" else VideoClassifier(arch)
    state = {}
    for key, value in load_file(d / arch["video_backbone"]["file"], device=device).items():
        state[key if key.startswith("fc.") else f"video_backbone.{key}"] = value
    if "audio_backbone" in arch:
        for key, value in load_file(d / arch["audio_backbone"]["file"], device=device).items():
            state[f"audio_backbone.{key}"] = value
    if "heads_file" in arch:
        state.update(load_file(d / arch["heads_file"], device=device))
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()
