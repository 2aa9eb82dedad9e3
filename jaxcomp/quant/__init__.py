"""Quantization: uniform affine and fp8 quantizers with straight-through
gradients, observers, LSQ, activation fake-quant, BatchNorm folding, PTQ / QAT /
AdaRound pipelines and integer export + inference."""

from jaxcomp.quant.fp8 import fake_quant_fp8
from jaxcomp.quant.uniform import (
    SUPPORTED_BITS,
    dequantize,
    fake_quant,
    minmax,
    qparams,
    qrange,
    quantize,
    quantize_with,
    ste_fake_quant,
)

__all__ = [
    "SUPPORTED_BITS", "dequantize", "fake_quant", "fake_quant_fp8", "minmax", "qparams",
    "qrange", "quantize", "quantize_with", "ste_fake_quant",
]
