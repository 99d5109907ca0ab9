"""Fused attention for export: each attention of the UNet becomes one onnxruntime
``com.microsoft.MultiHeadAttention`` node instead of ~10 MatMul/Softmax/Transpose nodes.

Why: at 512x512 the first UNet level attends over 4096 tokens; unfused, every layer writes a
[heads, 4096, 4096] score matrix to memory and reads it back. onnxruntime's WebGPU and CUDA
providers run MultiHeadAttention as one (flash-style) kernel. The CPU provider runs it for fp32
only, so a fused fp16 model needs a GPU device; ``--attention plain`` keeps standard ONNX ops.

In PyTorch the processor computes exactly what diffusers' default processor computes (scaled
dot-product attention), so goldens and the reference pipeline are unchanged; only the ONNX graph
differs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

#: Values of ``--attention``.
ATTENTION_KINDS = ("plain", "fused")

#: onnxruntime's contrib-op domain and the opset version of MultiHeadAttention in it.
MS_DOMAIN = "com.microsoft"
MS_OPSET = 1


class _MultiHeadAttention(torch.autograd.Function):
    """softmax(q·kᵀ·scale)·v over [batch, tokens, heads·head_dim] inputs; exported as one node."""

    @staticmethod
    def forward(ctx: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads: int, scale: float) -> torch.Tensor:
        batch, tokens, width = query.shape
        head_dim = width // heads

        def split(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.reshape(batch, -1, heads, head_dim).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(query), split(key), split(value), scale=scale)
        return out.transpose(1, 2).reshape(batch, tokens, width)

    @staticmethod
    def symbolic(g: Any, query: Any, key: Any, value: Any, heads: int, scale: float) -> Any:
        out = g.op(f"{MS_DOMAIN}::MultiHeadAttention", query, key, value, num_heads_i=heads, scale_f=scale)
        out.setType(query.type())
        return out


class ExportAttentionProcessor:
    """What every export processor does around its attention, as diffusers' default processor does.

    Spatial and group norm, the image layout in and out, the output projection, the residual and
    the rescale; subclasses give :meth:`attend` (query, keys, values and the attention itself).
    Masks and q/k norms (not used by SD 1.5/2.1 UNets) are refused rather than silently dropped.
    """

    #: Who refuses what it does not support, for the error messages.
    what = "attention export"
    #: What to do instead, appended to those messages.
    instead = ""

    def attend(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None) -> torch.Tensor:
        """The attention of normalised ``hidden_states`` [batch, tokens, width], before the output projection."""
        raise NotImplementedError

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        """diffusers' processor signature."""
        if attention_mask is not None:
            raise ValueError(f"{self.what} does not support attention masks{self.instead}")
        if getattr(attn, "norm_q", None) is not None or getattr(attn, "norm_k", None) is not None:
            raise ValueError(f"{self.what} does not support q/k norms{self.instead}")
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        image_layout = hidden_states.ndim == 4
        if image_layout:
            batch, channels, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channels, height * width).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        hidden_states = self.attend(attn, hidden_states, encoder_hidden_states)

        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if image_layout:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channels, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


class FusedAttentionProcessor(ExportAttentionProcessor):
    """A diffusers attention processor for export (self- and cross-attention without masks): the
    attention is one MultiHeadAttention node."""

    what = "fused attention export"
    instead = "; use --attention plain"

    def attend(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None) -> torch.Tensor:
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        return _MultiHeadAttention.apply(query, key, value, attn.heads, float(attn.scale))


def use_fused_attention(module: torch.nn.Module) -> int:
    """Gives every diffusers ``Attention`` in ``module`` the fused processor; returns how many."""
    count = 0
    for child in module.modules():
        if hasattr(child, "set_processor") and hasattr(child, "to_q"):
            child.set_processor(FusedAttentionProcessor())
            count += 1
    return count
