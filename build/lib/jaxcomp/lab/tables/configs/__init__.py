"""The paper tables' configs, one ``get_config()`` per table; each docstring gives the
run command and the expected numbers."""
