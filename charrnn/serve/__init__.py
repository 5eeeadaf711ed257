"""`charrnn serve`: the ASGI app and the server that runs it."""
