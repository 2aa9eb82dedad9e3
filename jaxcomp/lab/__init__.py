"""The lab: what is built on the library to run experiments — today the paper-table
reproductions (:mod:`jaxcomp.lab.tables`). The library never imports it, and it ships in
the package, so ``jaxcomp reproduce`` works from an installed wheel as from a checkout.

Example:
    >>> from jaxcomp.lab.tables import table_modules
    >>> sorted(table_modules(), key=lambda t: int(t[1:]))[:2]
    ['T1', 'T2']
"""
