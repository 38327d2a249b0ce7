"""Streamlit widgets the pages share. Only this package imports streamlit.

Each module is one widget or one piece of page furniture; none holds image logic (that is in
`core/`), they only turn widgets into core calls and core results into widgets.
"""
