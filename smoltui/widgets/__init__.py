"""Reusable Textual widgets of smoltui: the line chart, heatmap, token view, lens grid and form pieces.

Each widget carries its own `DEFAULT_CSS` so it looks right on any screen and in dark and light themes.
"""
