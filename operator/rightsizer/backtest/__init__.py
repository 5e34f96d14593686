"""``rightsizer backtest``: replay a policy over the past and score what it would have done."""
