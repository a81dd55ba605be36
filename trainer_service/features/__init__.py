"""Feature vectors of the dataset's items: kept in SQLite and in memory (`store`,
`bank`), the queue of what still needs embedding and its order (`order`), how one Embed
call is put together and failures retried (`embed_plan`), and the feature-service client
that works the queue (`extraction`, with its records in `records`)."""
