"""Two more API key scopes: `agent` (read + ledger adjustments and manual tiers) and `marketer` (read +
rules, tiers, templates, journeys, previews, simulations); see service/core/auth.py. Going back fails while
a key has one of them: revoke or re-scope those keys first (nothing is narrowed silently)."""

from sql_migration import sql_migration

ID = "2026-12-03T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "API key scopes agent and marketer"

FORWARDS = (
    "ALTER TABLE api_key DROP CONSTRAINT api_key_scope",
    "ALTER TABLE api_key ADD CONSTRAINT api_key_scope"
    " CHECK (scope IN ('read', 'server', 'agent', 'marketer', 'admin'))",
)
BACKWARDS = (
    "ALTER TABLE api_key DROP CONSTRAINT api_key_scope",
    "ALTER TABLE api_key ADD CONSTRAINT api_key_scope CHECK (scope IN ('admin', 'server', 'read'))",
)

forwards = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
