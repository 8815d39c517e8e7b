"""The online path. Loggers here are children of `ray.serve` (`ray.serve.ragtune.*`): inside a replica, Serve's
handlers, with its JSON encoding and request-context filter, write them to the replica's log file with the
request id; outside Serve they propagate to the root logger as usual."""
