"""The Typer application, its consoles and the error-to-exit-code mapping."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from proctor.errors import (
    InputError,
    ProctorError,
    StorageError,
    UsageError,
    VerificationError,
)

__all__ = ["app", "err", "exit_code", "handled", "out", "plain"]

EXIT_FAILED, EXIT_USAGE, EXIT_INPUT, EXIT_STORAGE, EXIT_INTERNAL = 1, 2, 3, 4, 70

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

app = typer.Typer(
    name="proctor",
    help="Proctor: risk-based access decisions recorded in a verifiable Merkle ledger.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

P = ParamSpec("P")
R = TypeVar("R")


def exit_code(exc: ProctorError) -> int:
    """The exit code for an error of Proctor's tree."""
    if isinstance(exc, VerificationError):
        return EXIT_FAILED
    if isinstance(exc, UsageError):
        return EXIT_USAGE
    if isinstance(exc, InputError):
        return EXIT_INPUT
    if isinstance(exc, StorageError):
        return EXIT_STORAGE
    return EXIT_FAILED


def handled(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn Proctor errors into a message and an exit code; never show a traceback."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ProctorError as exc:
            err.print(f"[bold red]error:[/] {plain(str(exc))}")
            raise typer.Exit(exit_code(exc)) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def plain(text: str) -> str:
    """Escape Rich markup in messages that carry user input."""
    return text.replace("[", r"\[")
