"""The earning pipeline: an order, a refund or an event happened -> the facts are recorded (orders,
rules' event log) -> the rules decide -> the ledger credits or reverses -> the tier may move -> the
events go to the outbox; after the commit, the rules' run-time problems are recorded.

Everything that earns calls this package — the API, and later a Stripe checkout and the importer — with
the plain inputs of `inputs.py`, never an HTTP struct. A later feature joins the path with one explicit
call in `pipeline.py` (a reward code used at checkout, a surprise gift at order time, a referral paid on
a first order). The features below keep their own: orders the facts, rules the decisions, ledger the
points, tiers the tiers, outbox the events; they do not call each other's pipelines.
"""
