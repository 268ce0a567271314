"""Write the API's OpenAPI document: ``python -m proctor.service.openapi [FILE]``.

The document does not depend on a ledger, so it is built from an app over placeholder state
that no request ever reaches. tests/service checks docs/openapi.json is current.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from proctor.service.app import ServiceState, create_app

__all__ = ["openapi_document", "openapi_text"]

DEFAULT_PATH = Path(__file__).parents[3] / "docs" / "openapi.json"


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the service."""
    state = ServiceState(ledger=None, tokens=None, instance="openapi")  # type: ignore[arg-type]
    return create_app(state).openapi()


def openapi_text() -> str:
    """The document as written to docs/openapi.json (sorted keys, two-space indent)."""
    return json.dumps(openapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> None:
    """Write the document to the path given, or docs/openapi.json."""
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PATH
    path.write_text(openapi_text(), encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
