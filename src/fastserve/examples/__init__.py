"""Small example applications (served by ``make run``)."""
