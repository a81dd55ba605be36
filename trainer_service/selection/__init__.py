"""What to serve next: the ranked queues over the embedded pool (`ranking`), the sampling
mix and the leases that keep annotators from sharing an item (`leasing`), what one
request may hold and the detector's box on each item (`serving`), and the near-duplicates
that are never served twice (`near_duplicates`). A query strategy is a queue in
`ranking` plus its entry in `leasing`."""
