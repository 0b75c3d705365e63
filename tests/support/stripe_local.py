"""A local Stripe stand-in for trying the integration without a Stripe account (the README's "Stripe in five
minutes", `make stripe-stub`): the tests' stub (`stripe_stub.StripeStub`, Stripe's own fixtures) on a fixed
port, serving the Checkout Sessions of a JSON file, until Ctrl-C. Point Encore at it with
ENCORE_STRIPE_API_BASE=http://127.0.0.1:12111; it accepts any key but `sk_test_refused_by_the_stub`.

    python -m tests.support.stripe_local --port 12111 --sessions docs/stripe/sessions.json
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path

from tests.support.stripe_stub import StripeStub


def load_sessions(stub: StripeStub, sessions: Path) -> None:
    """Register the Checkout Sessions of `sessions` ({"sessions": [{"session", "line_items"}]}) in `stub`."""
    for entry in json.loads(sessions.read_text())["sessions"]:
        session = dict(entry["session"])
        stub.add_session(session.pop("id"), line_items=entry["line_items"], **session)


def serve(port: int, sessions: Path | None) -> StripeStub:
    stub = StripeStub(_port=port).start()
    if sessions is not None:
        load_sessions(stub, sessions)
    return stub


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument(
        "--sessions", type=Path, default=None, help="a JSON file: {sessions: [{session, line_items}]}"
    )
    args = parser.parse_args()
    stub = serve(args.port, args.sessions)
    print(
        f"a local Stripe API on {stub.url} ({len(stub.of('checkout.session'))} Checkout Sessions); Ctrl-C stops it"
    )
    stopped = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    stopped.wait()
    stub.stop()


if __name__ == "__main__":
    main()
