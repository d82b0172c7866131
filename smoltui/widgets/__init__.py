"""Reusable Textual widgets of smoltui: the line chart, the run dashboard and its panels, the new-run form.

Each widget carries its own `DEFAULT_CSS` so it looks right on any screen and in dark and light themes.
"""
