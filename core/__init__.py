"""Canvas Studio core: everything the pages, the API, the CLI and the batch runner share.

Nothing in this package imports streamlit except `core/ui/`.
"""

__version__ = "0.1.0"
