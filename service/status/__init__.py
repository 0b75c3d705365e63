"""The customer's status view: it reads across customers, ledger, orders, tiers and messaging, so it
sits above them (customers itself depends on none of them)."""
