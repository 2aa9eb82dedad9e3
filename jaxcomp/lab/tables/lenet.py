"""The LeNet-300-100 tables' (T1-T5) common start: the config's Fashion-MNIST subset and
LeNet-300-100 for it.

Example:
    >>> from jaxcomp.data import synthetic
    >>> kit = LeNet300Kit("T1", "t1_han")
    >>> m = kit.model_for(synthetic(num_train=8, num_test=8, shape=(28, 28, 1)))
    >>> m.name, kit.load_config(quick=True).epochs
    ('lenet300', 2)
"""

from __future__ import annotations

from typing import Any

from jaxcomp.data.dataset import Dataset
from jaxcomp.experiment.paper_table import TableKit
from jaxcomp.flax.model import Model
from jaxcomp.models import get_model


class LeNet300Kit(TableKit):
    """:class:`~jaxcomp.experiment.paper_table.TableKit` of a table that trains
    LeNet-300-100 on Fashion-MNIST."""

    def model_for(self, ds: Dataset) -> Model:
        """LeNet-300-100 for ``ds``'s input shape and classes."""
        return get_model("lenet300", input_shape=ds.input_shape, num_classes=ds.num_classes)

    def data_and_model(self, cfg: Any) -> tuple[Dataset, Model]:
        """:meth:`data` (the config's subset) and :meth:`model_for` it."""
        ds = self.data(cfg)
        return ds, self.model_for(ds)


__all__ = ["LeNet300Kit"]
