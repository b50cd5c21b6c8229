"""The dashboard's pages (registered by ``app.py`` with ``st.navigation``) and their shared helpers.

Not named ``pages/``: Streamlit treats a ``pages/`` folder next to the main script as a
version-1 multipage app until ``st.navigation`` first runs, so a shared link that opens a page
directly on a fresh server would run the page without ``app.py`` (and without its sidebar).
"""
