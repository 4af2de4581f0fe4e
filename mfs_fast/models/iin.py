"""The Identity Injection Network (IIN): source identity -> IDN weights, once per source.

Depthwise kernels come from *weights prediction* on the identity feature map F_id (512x7x7);
pointwise kernels from StyleGAN2 *modulation/demodulation* of shared base kernels by the
identity embedding z_id. Module names follow the official checkpoint (``predictor.*``;
``EncoderModulation`` -> ``encoder_modulation``), see :mod:`mfs_fast.checkpoints`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .identity_weights import IdentityWeights, PointwiseModulation, modulate_demodulate
from .layers import DECODER_IN, DECODER_OUT, ENCODER_CHANNELS, LEAKY_SLOPE, STYLE_DIM


class PointwiseModulator(nn.Module):
    """A shared 1x1 kernel W (C_out x C_in x 1 x 1) modulated per identity by Linear(z_id)."""

    def __init__(self, c_in: int, c_out: int, style_dim: int = STYLE_DIM) -> None:
        super().__init__()
        self.style = nn.Linear(style_dim, c_in)
        self.weight = nn.Parameter(torch.empty(c_out, c_in, 1, 1))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def forward(self, embedding: Tensor) -> list[tuple[Tensor, PointwiseModulation]]:
        """N x style_dim embeddings -> per identity (fused W~, its unfused factors)."""
        base = self.weight.reshape(self.weight.shape[0], -1)
        out = []
        for style in self.style(embedding):
            fused, scale, demod = modulate_demodulate(self.weight, style)
            out.append((fused, PointwiseModulation(base=base, scale=scale, demod=demod)))
        return out


class KernelBlock(nn.Module):
    """conv3x3 -> BN -> LReLU = features; a second conv3x3 on them = predicted kernel."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm = nn.BatchNorm2d(c_out)
        self.weight = nn.Conv2d(c_out, c_out, 3, padding=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = F.leaky_relu(self.norm(self.conv(x)), LEAKY_SLOPE)
        return features, self.weight(features)


class WeightPredictor(nn.Module):
    """F_id (512x7x7) -> depthwise kernels: 4x4 for the encoder, 3x3 for the decoder."""

    def __init__(self, style_dim: int = STYLE_DIM) -> None:
        super().__init__()
        self.first = nn.Conv2d(style_dim, style_dim, 4)  # 7x7 -> 4x4
        self.norm = nn.BatchNorm2d(style_dim)
        self.first_decoder = nn.Conv2d(style_dim, style_dim, 2)  # 4x4 -> 3x3
        self.decoder_norm = nn.BatchNorm2d(style_dim)
        # Encoder kernels are predicted deepest first (512 -> 256 ... -> 3), then reversed.
        enc = (style_dim,) + tuple(reversed(ENCODER_CHANNELS[:-1]))
        self.encoder = nn.ModuleList(KernelBlock(a, b) for a, b in zip(enc[:-1], enc[1:]))
        dec = (style_dim,) + DECODER_IN
        self.decoder = nn.ModuleList(KernelBlock(a, b) for a, b in zip(dec[:-1], dec[1:]))

    @staticmethod
    def _run_chain(x: Tensor, blocks: nn.ModuleList) -> list[Tensor]:
        kernels = []
        for block in blocks:
            x, kernel = block(x)
            kernels.append(kernel.unsqueeze(2))  # N x C x k x k -> N x C x 1 x k x k (depthwise, per identity)
        return kernels

    def forward(self, feature_map: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """N x 512 x 7 x 7 -> (encoder, decoder) kernels, each N x C x 1 x k x k (row n: identity n)."""
        z = F.leaky_relu(self.norm(self.first(feature_map)), LEAKY_SLOPE)
        encoder = self._run_chain(z, self.encoder)[::-1]
        y = F.leaky_relu(self.decoder_norm(self.first_decoder(z)), LEAKY_SLOPE)
        return encoder, self._run_chain(y, self.decoder)


class IIN(nn.Module):
    """Identity Injection Network: ``(z_id, F_id) -> IdentityWeights`` for one source."""

    def __init__(self, style_dim: int = STYLE_DIM) -> None:
        super().__init__()
        enc_pairs = zip(ENCODER_CHANNELS[:-1], ENCODER_CHANNELS[1:])
        self.encoder_modulation = nn.ModuleList(PointwiseModulator(a, b, style_dim) for a, b in enc_pairs)
        self.decoder_modulation = nn.ModuleList(
            PointwiseModulator(a, b, style_dim) for a, b in zip(DECODER_IN, DECODER_OUT)
        )
        self.predictor = WeightPredictor(style_dim)

    def forward(self, embedding: Tensor, feature_map: Tensor) -> IdentityWeights:
        """``embedding``: 1 x 512 (L2-normalised z_id); ``feature_map``: 1 x 512 x 7 x 7."""
        if embedding.shape[0] != 1 or feature_map.shape[0] != 1:
            raise ValueError(
                "IIN builds the weights of one identity at a time (inject_many for several); got a batch of "
                f"{embedding.shape[0]} embeddings and {feature_map.shape[0]} feature maps"
            )
        return self.inject_many(embedding, feature_map)[0]

    def inject_many(self, embeddings: Tensor, feature_maps: Tensor) -> list[IdentityWeights]:
        """N identities at once (N x 512, N x 512 x 7 x 7): the predictor's convs run as one batch,
        which is what training wants (batch-1 convs with 512 x 512 x 4 x 4 weights spend most of
        their time reordering those weights, once per call). The IIN's batch norms must be in eval
        mode (as they always are: see :func:`mfs_fast.train.student.set_train_mode`), so row n
        depends on identity n only."""
        if embeddings.shape[0] != feature_maps.shape[0]:
            raise ValueError(f"{embeddings.shape[0]} embeddings but {feature_maps.shape[0]} feature maps")
        # plain layout: with a channels-last F_id every conv reorders its weights (measured 1.5x slower)
        enc_dw, dec_dw = self.predictor(feature_maps.contiguous())
        enc = [m(embeddings) for m in self.encoder_modulation]
        dec = [m(embeddings) for m in self.decoder_modulation]
        out = []
        for n in range(embeddings.shape[0]):
            enc_pw, enc_mod = zip(*(layer[n] for layer in enc))
            dec_pw, dec_mod = zip(*(layer[n] for layer in dec))
            out.append(IdentityWeights(
                embedding=embeddings[n],
                encoder_depthwise=tuple(k[n] for k in enc_dw),
                encoder_pointwise=tuple(enc_pw),
                decoder_depthwise=tuple(k[n] for k in dec_dw),
                decoder_pointwise=tuple(dec_pw),
                encoder_modulation=tuple(enc_mod),
                decoder_modulation=tuple(dec_mod),
            ))
        return out
