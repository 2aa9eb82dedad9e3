"""Quantization: uniform affine and fp8 quantizers with straight-through
gradients, observers, LSQ, activation fake-quant, BatchNorm folding, PTQ / QAT /
AdaRound pipelines, Deep Compression weight sharing with Huffman coding,
mixed-precision allocation, integer export + inference, and a registry of number
formats (int, fp8, MX, NVFP4, NF4) with exact packed export (:mod:`.formats`).

Example:
    >>> import jax.numpy as jnp
    >>> import jaxcomp.quant as jq
    >>> q, scale, zp = jq.quantize(jnp.array([-1.0, 0.5, 1.0]), 8)
    >>> q.tolist()
    [-127, 64, 127]
"""

__all__ = [
    "ActQuant", "FORMATS", "Folded", "OBSERVERS", "PTQResult", "QuantStat", "SUPPORTED_BITS",
    "act_quant", "act_quant_nnx", "adaround", "add_lsq_scales", "calib", "compress",
    "decompress", "deep_compression", "dequantize", "dequantize_tree", "export_int",
    "fake_quant", "fake_quant_fp8", "fake_quant_params", "fold_batchnorm", "format_quant",
    "formats", "get_format", "huffman", "int_bytes", "int_model", "kmeans1d", "lsq",
    "lsq_fake_quant", "minmax", "mixed_precision", "observe", "pack_int4", "ptq", "qparams",
    "qrange", "quantize", "quantize_module", "quantize_with", "register_format", "restore_int",
    "save_int", "ste_fake_quant", "unpack_int4", "weight_quant", "weight_sharing",
]

from jaxcomp.quant import calib, deep_compression, formats, huffman, mixed_precision
from jaxcomp.quant.act import ActQuant, act_quant, act_quant_nnx
from jaxcomp.quant.adaround import adaround
from jaxcomp.quant.bnfold import Folded, fold_batchnorm
from jaxcomp.quant.deep_compression import compress, decompress
from jaxcomp.quant.dropin import QuantStat, quantize_module
from jaxcomp.quant.export import dequantize_tree, export_int, int_bytes, pack_int4, unpack_int4
from jaxcomp.quant.export import restore as restore_int
from jaxcomp.quant.export import save as save_int
from jaxcomp.quant.formats import FORMATS, format_quant, get_format, register_format
from jaxcomp.quant.fp8 import fake_quant_fp8
from jaxcomp.quant.intinfer import int_model
from jaxcomp.quant.kmeans import kmeans1d
from jaxcomp.quant.lsq import add_lsq_scales, lsq, lsq_fake_quant
from jaxcomp.quant.observers import OBSERVERS, observe
from jaxcomp.quant.ptq import PTQResult, ptq
from jaxcomp.quant.sharing import weight_sharing
from jaxcomp.quant.transform import fake_quant_params, weight_quant
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
