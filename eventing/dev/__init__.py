"""The local runner behind `victor dev`: embedded servers, supervisor, ping replay, dead letters."""
