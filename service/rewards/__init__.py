"""Rewards: the catalogue, redemption (points spent for a code, or a code given at no cost), codes
validated and used at checkout, cancellation that gives the points back to the lots they came from."""
