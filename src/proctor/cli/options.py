"""Options shared by several commands, and how they turn into library objects."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from proctor.errors import UsageError
from proctor.ledger.ledger import SKEY_NAME, Ledger, load_signer
from proctor.ledger.note import Signer
from proctor.ledger.store import Durability

LedgerDir = Annotated[
    Path | None,
    typer.Option(
        "--ledger",
        envvar="PROCTOR_LEDGER",
        help="Ledger directory (or set PROCTOR_LEDGER).",
        show_default=False,
    ),
]
SignerKey = Annotated[
    Path | None,
    typer.Option(
        "--signer-key",
        envvar="PROCTOR_SIGNER_KEY",
        help="Signer key file (default: LEDGER/signer.key).",
        show_default=False,
    ),
]
DurabilityOpt = Annotated[
    str,
    typer.Option(
        "--durability",
        help="os: written to the OS before an index is returned; fsync: on disk.",
    ),
]


def ledger_dir(value: Path | None) -> Path:
    """The ledger directory from --ledger or PROCTOR_LEDGER."""
    if value is None:
        raise UsageError("no ledger given: pass --ledger DIR or set PROCTOR_LEDGER")
    return value


def durability(value: str) -> Durability:
    """Check a --durability value."""
    if value == "os":
        return "os"
    if value == "fsync":
        return "fsync"
    raise UsageError(f"--durability must be os or fsync, not {value!r}")


def signer_for(directory: Path, key: Path | None, *, required: bool) -> Signer | None:
    """The signer key from --signer-key, PROCTOR_SIGNER_KEY or the ledger directory."""
    path = key if key is not None else directory / SKEY_NAME
    if key is None and not path.exists():
        if required:
            raise UsageError(
                f"no signer key: pass --signer-key FILE, set PROCTOR_SIGNER_KEY, "
                f"or keep it at {path}"
            )
        return None
    return load_signer(path)


def open_ledger(
    directory: Path | None,
    key: Path | None = None,
    *,
    write: bool = False,
    durability_: Durability = "os",
) -> Ledger:
    """Open a ledger, with its writer when ``write`` (or when a signer key is at hand)."""
    d = ledger_dir(directory)
    signer = signer_for(d, key, required=write)
    return Ledger(d, signer=signer, durability=durability_)
