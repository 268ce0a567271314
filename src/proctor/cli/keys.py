"""``proctor keygen``: a signer key and its verifier key in signed-note form."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from proctor.cli._app import app, handled, out
from proctor.ledger.ledger import write_key_pair
from proctor.ledger.note import Signer


@app.command()
@handled
def keygen(
    name: Annotated[str, typer.Argument(help="Key name; also the ledger's origin.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the two key files.")],
) -> None:
    """Create NAME.key (signer, mode 0600) and NAME.vkey (verifier: NAME+KEYID+BASE64)."""
    signer = Signer.generate(name)
    skey, vkey = write_key_pair(signer, out_dir)
    out.print(f"signer key:   {skey} (keep secret)")
    out.print(f"verifier key: {vkey}")
    out.print(signer.verifier.vkey)
