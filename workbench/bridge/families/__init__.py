"""One module per group of families, each with a list ``ADAPTERS`` of :class:`~workbench.bridge.adapters.Adapter`
records; :mod:`workbench.bridge.catalog` collects them (a new module here needs no other edit)."""
