"""Layer 5, an edge: the admin, the dashboard, its charts and the status views.

May import every layer below it; nothing in the layers imports it.
"""
