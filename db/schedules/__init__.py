"""Standing orders: recurrence rules (`recurrence`), creating each due run once
(`service`) and the queries behind them (`repository`)."""
