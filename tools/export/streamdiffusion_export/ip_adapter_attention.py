"""IP-Adapter cross-attention for export, with per-batch-entry, per-layer scales as a model input.

diffusers' ``IPAdapterAttnProcessor2_0`` computes, for each cross-attention layer ``l``::

    hidden = attention(q, to_k(text), to_v(text)) + scale_l * attention(q, to_k_ip(image), to_v_ip(image))

with ``scale_l`` a Python float fixed on the processor. The exported UNet takes the scales as the
input ``ip_adapter_scale`` [batch, L] instead (L = the cross-attention layers in scale order), so
they change per frame, per layer and per batch entry (e.g. conditional and unconditional rows)
without touching the model. With equal rows the result is diffusers' with ``processor.scale =
[ip_adapter_scale[0, l]]``; diffusers skips a layer at scale 0, here it adds 0 × the image attention,
which is the same for finite values.

``encoder_hidden_states`` [batch, 77 + N, D] carries the 77 text tokens followed by the N image
tokens: the split is at 77, not at a fixed N, so one exported UNet takes the regular adapter's 4
tokens and a Plus adapter's 16 (same to_k_ip/to_v_ip, as a shared attention id guarantees).

Plain attention is PyTorch's scaled dot-product attention (exported as MatMul/Softmax); fused
attention is one onnxruntime ``com.microsoft.MultiHeadAttention`` node for the text and one for the
image tokens (:mod:`fused_attention`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from .fused_attention import ExportAttentionProcessor, FusedAttentionProcessor, _MultiHeadAttention
from .ip_adapter import TEXT_TOKENS, ip_processors


class IPAdapterScales:
    """Holds the ``ip_adapter_scale`` tensor [batch, L] while the UNet runs; every IP layer reads its column."""

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None

    @contextlib.contextmanager
    def use(self, scales: torch.Tensor) -> Iterator[None]:
        """Makes ``scales`` the current scales for the duration of one UNet call."""
        previous, self.value = self.value, scales
        try:
            yield
        finally:
            self.value = previous

    def column(self, layer: int, dtype: torch.dtype) -> torch.Tensor:
        """Layer ``layer``'s scale per batch entry, shaped [batch, 1, 1] to scale [batch, tokens, width]."""
        if self.value is None:
            raise RuntimeError("the IP-Adapter UNet was called without ip_adapter_scale")
        return self.value[:, layer].to(dtype).reshape(-1, 1, 1)


def _attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads: int, fused: bool) -> torch.Tensor:
    """softmax(q·kᵀ/sqrt(head width))·v over [batch, tokens, heads·head width], as diffusers' IP processor."""
    batch, tokens, width = query.shape
    head_dim = width // heads
    scale = head_dim**-0.5
    if fused:
        return _MultiHeadAttention.apply(query, key, value, heads, float(scale))

    def split(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.reshape(batch, -1, heads, head_dim).transpose(1, 2)

    out = F.scaled_dot_product_attention(split(query), split(key), split(value), scale=scale)
    return out.transpose(1, 2).reshape(batch, tokens, width)


class IPAdapterExportProcessor(ExportAttentionProcessor, torch.nn.Module):
    """Cross-attention with IP-Adapter image tokens and the scale read from :class:`IPAdapterScales`.

    Takes over diffusers' processor's ``to_k_ip``/``to_v_ip`` (one adapter). The steps around the
    attention are :class:`~.fused_attention.ExportAttentionProcessor`'s, which are
    ``IPAdapterAttnProcessor2_0``'s; masks are refused. (That base comes first, so its ``__call__`` is
    the processor call, not ``torch.nn.Module``'s; the module only holds the weights.)
    """

    what = "IP-Adapter export"

    def __init__(self, source: Any, layer: int, scales: IPAdapterScales, fused: bool) -> None:
        super().__init__()
        if len(source.to_k_ip) != 1:
            raise ValueError("one IP-Adapter at a time: this processor holds several")
        self.to_k_ip = source.to_k_ip
        self.to_v_ip = source.to_v_ip
        self.layer = layer
        self.fused = fused
        #: Shared by every layer (a plain attribute: it holds no weights).
        self.scales = scales

    def attend(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None) -> torch.Tensor:
        """Text attention plus the layer's scale times the image-token attention."""
        if encoder_hidden_states is None:
            raise ValueError("an IP-Adapter layer needs encoder_hidden_states (77 text tokens + the image tokens)")
        query = attn.to_q(hidden_states)
        text = encoder_hidden_states[:, :TEXT_TOKENS]
        image = encoder_hidden_states[:, TEXT_TOKENS:]
        if attn.norm_cross:
            text = attn.norm_encoder_hidden_states(text)
        hidden_states = _attention(query, attn.to_k(text), attn.to_v(text), attn.heads, self.fused)
        image_states = _attention(query, self.to_k_ip[0](image), self.to_v_ip[0](image), attn.heads, self.fused)
        return hidden_states + self.scales.column(self.layer, image_states.dtype) * image_states


def use_ip_adapter_export_processors(unet: torch.nn.Module, attention: str) -> tuple[IPAdapterScales, list[str]]:
    """Prepares a UNet holding diffusers' IP-Adapter processors for export; returns the scales and layer names.

    Detaches the image projection (``encoder_hid_proj``: the exported UNet takes the projected tokens
    in ``encoder_hidden_states``; the projection is exported on its own), gives every IP layer an
    :class:`IPAdapterExportProcessor` and, with ``attention="fused"``, every other attention the fused
    processor.
    """
    fused = attention == "fused"
    unet.encoder_hid_proj = None
    ip_layers = dict(ip_processors(unet))
    if not ip_layers:
        raise ValueError("the UNet has no IP-Adapter layers; install an adapter first")
    scales = IPAdapterScales()
    processors: dict[str, Any] = {}
    names: list[str] = []
    for name, processor in unet.attn_processors.items():
        layer_name = name[: -len(".processor")]
        if layer_name in ip_layers:
            processors[name] = IPAdapterExportProcessor(processor, len(names), scales, fused)
            names.append(layer_name)
        else:
            processors[name] = FusedAttentionProcessor() if fused else processor
    unet.set_attn_processor(processors)
    return scales, names
