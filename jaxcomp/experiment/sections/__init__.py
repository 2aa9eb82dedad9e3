"""Each compression family's config section — defaults, allowed values and
``validate`` — in modules that import neither JAX nor the family itself, so the
command line refuses a bad value in a fraction of a second, before any work.

The family modules (``jaxcomp/<family>/family.py``) build their plans from these
sections; tests check that the names listed here match the libraries' registries.
"""

SECTIONS = {
    "decompose": "jaxcomp.experiment.sections.decompose",
    "prune": "jaxcomp.experiment.sections.prune",
    "quant": "jaxcomp.experiment.sections.quant",
    "distill": "jaxcomp.experiment.sections.distill",
}

#: The reference models ``model.name`` may name (``jaxcomp.models.MODELS``; a test
#: keeps the two equal).
MODEL_NAMES = ("mlp", "lenet300", "lenet5", "lenet5_caffe", "rescnn", "dscnn", "nnx_mlp",
               "nnx_cnn", "gpt", "vit")
