"""What the Stripe integration publishes to features above it, as SQL (no imports of theirs)."""

from __future__ import annotations


def held_for_stripe(event: str) -> str:
    """A condition on an outbox row `event` (a `redemption.created`): its code goes to Stripe first (the
    program was connected when it was issued; whatever its kind: the sync decides whether Stripe can take
    it), so it is announced by the `redemption.synced` that follows once Stripe has it (or once it is
    known to stay Encore-only). The same condition as the outbound queue's (`outbound._QUEUE`): a code is
    held exactly when it is queued, whichever of the two consumers sees it first."""
    return (
        f"EXISTS (SELECT 1 FROM stripe_connection sc WHERE sc.program_id = {event}.program_id"
        f" AND sc.connected_at <= {event}.created_at)"
    )
