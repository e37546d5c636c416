"""The ``metalcast`` command."""

import typer

app = typer.Typer(no_args_is_help=True, help="metalcast: precious-metal prices, end to end.")
