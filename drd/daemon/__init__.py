"""The daemon: scheduling, leader election, HTTP endpoints and the status page."""
