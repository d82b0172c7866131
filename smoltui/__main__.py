"""`python -m smoltui` runs the same CLI as the `smoltui` command."""

from smoltui.cli import main

main()
